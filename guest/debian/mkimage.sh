#!/usr/bin/env bash
# Run by build.sh under fakeroot: unpacks the verified .debs into STAGE with dpkg-deb -x, does
# by hand what their maintainer scripts would have done that the guest needs (users and groups,
# directories and their owners, busybox applet links, /etc), fixes every timestamp and writes
# the ext4 image with mkfs.ext4 -d. Nothing from the packages runs: no riscv64 code executes
# on the build host. fakeroot records the ownership and device nodes mkfs.ext4 stores, so no
# real root is needed.
#
#   mkimage.sh STAGE IMAGE SIZE_MIB EPOCH DEB...
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
stage="$1" image="$2" size_mib="$3" epoch="$4"
shift 4

rm -rf "$stage"
mkdir -p "$stage"
for deb in "$@"; do
  dpkg-deb -x "$deb" "$stage"
done
cd "$stage"

# Merged /usr (Debian since bookworm): the aliases base-files would create.
for d in bin sbin lib; do
  [ ! -e "$d" ] || { echo "debian-guest: a package ships /$d as a directory" >&2; exit 1; }
  mkdir -p "usr/$d"
  ln -s "usr/$d" "$d"
done
# Not needed on a console-only guest: manual pages, info, translations.
rm -rf usr/share/man usr/share/info usr/share/locale usr/share/lintian

# busybox: one link per applet it was built with (its sorted, NUL-separated name table), in
# /usr/bin unless a package ships that name; /sbin/init is the Tandem init script.
python3 - usr/bin/busybox > "$stage.applets" <<'PY'
import sys
data = open(sys.argv[1], 'rb').read()
start = data.find(b'[\x00[[\x00')
if start < 0:
    sys.exit("debian-guest: no applet table in busybox")
names, pos = [], start
while True:
    end = data.index(b'\x00', pos)
    if end == pos:
        break
    names.append(data[pos:end].decode())
    pos = end + 1
if names != sorted(names) or len(names) < 100:
    sys.exit("debian-guest: busybox applet table not recognised (%d names)" % len(names))
print("\n".join(names))
PY
while read -r applet; do
  case "$applet" in init|linuxrc|busybox) continue ;; esac
  [ -e "usr/bin/$applet" ] || [ -e "usr/sbin/$applet" ] || ln -s busybox "usr/bin/$applet"
done < "$stage.applets"
rm -f "$stage.applets"

# The Tandem files: init, the service scripts, poweroff/reboot, /etc.
cp -a "$here/rootfs/." .

# Users and groups: base-passwd's masters (its postinst copies them) plus the redis system
# user redis-tools' postinst adds with adduser --system --group.
cp usr/share/base-passwd/passwd.master etc/passwd
cp usr/share/base-passwd/group.master etc/group
echo "redis:x:101:101::/var/lib/redis:/usr/sbin/nologin" >> etc/passwd
echo "redis:x:101:" >> etc/group
awk -F: '{print $1 ":" ($1 == "root" ? "" : "*") ":20454:0:99999:7:::"}' etc/passwd > etc/shadow
awk -F: '{print $1 ":*::"}' etc/group > etc/gshadow
chmod 644 etc/passwd etc/group
chmod 640 etc/shadow etc/gshadow
echo /usr/bin/sh > etc/shells

# Directories the packages' scripts (or base-files) create.
mkdir -p proc sys dev run tmp root mnt var/tmp var/log var/lib var/cache etc/tandem usr/local/bin
chmod 1777 tmp var/tmp
chmod 700 root
mknod -m 600 dev/console c 5 1
mknod -m 666 dev/null c 1 3
ln -sfn /run var/run
mkdir -p var/lib/redis var/log/redis etc/redis
chown -R 0:0 .
chown 101:101 var/lib/redis etc/redis etc/redis/redis.conf
chmod 750 var/lib/redis
chown 101:4 var/log/redis
chmod 2750 var/log/redis
chmod 2770 etc/redis
chmod 640 etc/redis/redis.conf
shadow_gid="$(awk -F: '$1 == "shadow" {print $3}' etc/group)"
chgrp "${shadow_gid:-42}" etc/shadow etc/gshadow

# Fixed timestamps: mkfs.ext4 copies each file's times from the stage.
find . -exec touch -h -d "@$epoch" {} +

cd - >/dev/null
rm -f "$image.tmp"
truncate -s "${size_mib}M" "$image.tmp"
# The fixed UUID, hash seed, time and our own mke2fs.conf make the image a pure function of
# the stage: two builds are byte-identical.
uuid=5d9c1f3e-7a2b-4c6d-8e0f-1a2b3c4d5e6f
MKE2FS_CONFIG="$here/mke2fs.conf" E2FSPROGS_FAKE_TIME="$epoch" \
  mkfs.ext4 -q -F -t ext4 -T default -b 4096 -I 256 -L tandem-debian -U "$uuid" \
    -E "hash_seed=$uuid,root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard" \
    -d "$stage" "$image.tmp"
# mkfs.ext4 -d takes each inode's ctime from the stage (the time of unpacking, which no
# tool can set): rewrite them all to the epoch with debugfs, addressed by path.
if find "$stage" -name '*"*' -o -name "*\\*" | grep -q .; then
  echo "debian-guest: a path in the stage contains a quote or backslash" >&2; exit 1
fi
ctime="$(date -u -d "@$epoch" +%Y%m%d%H%M%S)"
(cd "$stage" && find . -printf '%P\n') |
  awk -v t="$ctime" '{print "sif \"/" $0 "\" ctime " t}' > "$stage.debugfs"
E2FSPROGS_FAKE_TIME="$epoch" debugfs -w -f "$stage.debugfs" "$image.tmp" > "$stage.debugfs.log" 2>&1
if grep -v '^debugfs' "$stage.debugfs.log" | grep -q .; then
  echo "debian-guest: debugfs could not set every ctime:" >&2
  grep -v '^debugfs' "$stage.debugfs.log" | head >&2; exit 1
fi
rm -f "$stage.debugfs" "$stage.debugfs.log"
mv "$image.tmp" "$image"
