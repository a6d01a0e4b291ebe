// tandemd's configuration: every value read, defaults, flag overrides, and every class of
// bad input refused with a message naming the file, the line and the key.
#include "replicator/config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>

namespace {

using namespace tandem::replicator;
namespace fs = std::filesystem;

class ConfigTest : public ::testing::Test {
 protected:
  ConfigTest() {
    dir = fs::temp_directory_path() / ("tandem_config_test_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    write("psk", "0123456789abcdef0123456789abcdef\n");
    ::chmod(path("psk").c_str(), 0600);
    write("guest.bin", "not really a guest, the config only checks it exists");
  }
  ~ConfigTest() override { fs::remove_all(dir); }

  std::string path(const std::string& name) const { return (dir / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name), std::ios::binary) << text;
    return path(name);
  }

  NodeConfig load(const std::string& text, const ConfigOverrides& overrides = {}) {
    warnings.clear();
    return load_config(write("host.toml", text), overrides, &warnings);
  }

  // Loading must fail with a message holding every fragment.
  void expect_error(const std::string& text, std::initializer_list<std::string> fragments,
                    const ConfigOverrides& overrides = {}) {
    try {
      load(text, overrides);
      ADD_FAILURE() << "accepted:\n" << text;
    } catch (const ConfigError& e) {
      const std::string message = e.what();
      EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
      for (const auto& f : fragments) EXPECT_NE(message.find(f), std::string::npos) << "'" << f << "' not in: " << message;
    }
  }

  // A valid primary config; tests replace or append lines.
  static std::string primary() {
    return "[node]\n"                            // 1
           "name = \"a\"\n"                      // 2
           "[vm]\n"                              // 3
           "guest = \"guest.bin\"\n"             // 4
           "[pair]\n"                            // 5
           "role = \"primary\"\n"                // 6
           "listen = \"127.0.0.1:7100\"\n"       // 7
           "psk_file = \"psk\"\n";               // 8
  }

  fs::path dir;
  std::vector<std::string> warnings;
};

TEST_F(ConfigTest, FullFileIsReadWithRelativePathsAnchoredAtTheFile) {
  write("disk.img", std::string(4096, '\0'));
  const NodeConfig c = load(
      "[node]\nname = \"node-a\"\nstate_dir = \"state\"\nlog_level = \"debug\"\n"
      "[vm]\nguest = \"guest.bin\"\nmem_mib = 256\ndisk = \"disk.img\"\nid = \"kv-1\"\n"
      "[pair]\nrole = \"primary\"\nlisten = \"127.0.0.1:7100\"\npeer = \"[::1]:7200\"\npsk_file = \"psk\"\n"
      "heartbeat_ms = 50\nheartbeat_misses = 3\nmax_lag_ms = 20\n"
      "[console]\nlisten = \"127.0.0.1:7300\"\n"
      "[control]\nsocket = \"a.sock\"\n");
  EXPECT_EQ(c.node_name, "node-a");
  EXPECT_EQ(c.state_dir, path("state"));
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.guest, path("guest.bin"));
  EXPECT_EQ(c.mem_mib, 256u);
  EXPECT_EQ(c.disk, path("disk.img"));
  EXPECT_EQ(c.vm_id, "kv-1");
  EXPECT_EQ(c.role, Role::Primary);
  EXPECT_EQ(c.listen, "127.0.0.1:7100");
  EXPECT_EQ(c.peer, "[::1]:7200");
  EXPECT_EQ(c.psk_file, path("psk"));
  EXPECT_EQ(c.psk, "0123456789abcdef0123456789abcdef");  // trailing newline dropped
  EXPECT_EQ(c.heartbeat_ms, 50u);
  EXPECT_EQ(c.heartbeat_misses, 3u);
  EXPECT_EQ(c.max_lag_ms, 20u);
  EXPECT_EQ(c.console_listen, "127.0.0.1:7300");
  EXPECT_EQ(c.control_socket, path("a.sock"));
  EXPECT_TRUE(warnings.empty());
}

TEST_F(ConfigTest, DefaultsFillWhatTheFileLeavesOut) {
  const NodeConfig c = load(primary());
  EXPECT_EQ(c.vm_id, "guest.bin");  // the guest's file name
  EXPECT_EQ(c.mem_mib, 128u);
  EXPECT_EQ(c.heartbeat_ms, 100u);
  EXPECT_EQ(c.heartbeat_misses, 5u);
  EXPECT_EQ(c.max_lag_ms, 100u);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.state_dir, "/var/lib/tandem/a");
  EXPECT_EQ(c.control_socket, "/run/tandem/a.sock");
  EXPECT_EQ(c.peer, "");
  EXPECT_EQ(c.console_listen, "");
  EXPECT_TRUE(c.link_encryption) << "the link is encrypted unless the file says otherwise";
}

TEST_F(ConfigTest, LinkEncryptionCanBeTurnedOffForBenchmarksOnly) {
  const std::string secondary = "[node]\nname = \"b\"\n[vm]\nid = \"kv-1\"\n[pair]\nrole = \"secondary\"\n"
                                "listen = \"127.0.0.1:7200\"\npsk_file = \"psk\"\n";
  EXPECT_FALSE(load(secondary + "encryption = false\n").link_encryption);
  EXPECT_TRUE(load(secondary + "encryption = true\n").link_encryption);
  expect_error(secondary + "encryption = \"no\"\n", {"host.toml:9:", "[pair] encryption", "expected true or false"});
}

TEST_F(ConfigTest, SecondaryNeedsNoGuestButAnIdAndAListenAddress) {
  const NodeConfig c = load(
      "[node]\nname = \"b\"\n[vm]\nid = \"kv-1\"\n"
      "[pair]\nrole = \"secondary\"\nlisten = \"127.0.0.1:7200\"\npsk_file = \"psk\"\n");
  EXPECT_EQ(c.role, Role::Secondary);
  EXPECT_EQ(c.vm_id, "kv-1");
  EXPECT_EQ(c.guest, "");
  expect_error("[node]\nname = \"b\"\n[vm]\nid = \"kv-1\"\n[pair]\nrole = \"secondary\"\npsk_file = \"psk\"\n",
               {"host.toml:5:", "[pair] listen", "secondary"});
  expect_error("[node]\nname = \"b\"\n[vm]\n\n[pair]\nrole = \"secondary\"\nlisten = \"127.0.0.1:7200\"\n"
               "psk_file = \"psk\"\n",
               {"host.toml:3:", "[vm] id"});
}

// A firmware boot (Linux): bios + kernel + initrd + append instead of a bare guest image.
TEST_F(ConfigTest, FirmwareBootIsReadWithPathsAnchoredAndTheKernelAsVmId) {
  write("fw.bin", "firmware");
  write("Image", "kernel");
  write("initramfs.cpio", "initrd");
  const std::string firmware = "[node]\nname = \"a\"\n[vm]\nbios = \"fw.bin\"\nkernel = \"Image\"\n"
                               "initrd = \"initramfs.cpio\"\nappend = \"console=ttyS0 quiet\"\n"
                               "[pair]\nrole = \"primary\"\npsk_file = \"psk\"\n";
  const NodeConfig c = load(firmware);
  EXPECT_EQ(c.guest, "");
  EXPECT_EQ(c.bios, path("fw.bin"));
  EXPECT_EQ(c.kernel, path("Image"));
  EXPECT_EQ(c.initrd, path("initramfs.cpio"));
  EXPECT_EQ(c.bootargs, "console=ttyS0 quiet");
  EXPECT_EQ(c.vm_id, "Image");
  // bios alone is a valid primary (the firmware is the whole guest).
  const NodeConfig bios_only = load("[node]\nname = \"a\"\n[vm]\nbios = \"fw.bin\"\n[pair]\npsk_file = \"psk\"\n");
  EXPECT_EQ(bios_only.vm_id, "fw.bin");
  EXPECT_EQ(bios_only.kernel, "");
  // Flags: a bare-guest file switched to a firmware boot is refused (guest and bios exclusive);
  // flags on a file without guest work and are relative to the working directory.
  ConfigOverrides o;
  o.bios = path("fw.bin");
  o.kernel = path("Image");
  o.append = "console=hvc0";
  expect_error(primary(), {"--bios", "exclusive", "host.toml:4: [vm] guest"}, o);
  const NodeConfig flagged = load("[node]\nname = \"a\"\n[pair]\npsk_file = \"psk\"\n", o);
  EXPECT_EQ(flagged.bios, path("fw.bin"));
  EXPECT_EQ(flagged.kernel, path("Image"));
  EXPECT_EQ(flagged.bootargs, "console=hvc0");
}

TEST_F(ConfigTest, FirmwareBootDependenciesAndMissingFilesNameFileLineAndKey) {
  write("fw.bin", "firmware");
  write("Image", "kernel");
  const std::string head = "[node]\nname = \"a\"\n[pair]\npsk_file = \"psk\"\n[vm]\n";  // [vm] on line 5
  expect_error(head + "guest = \"guest.bin\"\nbios = \"fw.bin\"\n", {"host.toml:7: [vm] bios", "exclusive"});
  expect_error(head + "kernel = \"Image\"\n", {"host.toml:6: [vm] kernel", "needs [vm] bios"});
  expect_error(head + "bios = \"fw.bin\"\ninitrd = \"Image\"\n", {"host.toml:7: [vm] initrd", "needs [vm] kernel"});
  expect_error(head + "bios = \"fw.bin\"\nappend = \"console=ttyS0\"\n",
               {"host.toml:7: [vm] append", "needs [vm] kernel"});
  expect_error(head + "bios = \"nope.bin\"\n", {"host.toml:6: [vm] bios", "no such file", "nope.bin"});
  expect_error(head + "bios = \"fw.bin\"\nkernel = \"Nope\"\n", {"host.toml:7: [vm] kernel", "no such file"});
  expect_error(head + "bios = \"fw.bin\"\nkernel = \"Image\"\ninitrd = \"none.cpio\"\n",
               {"host.toml:8: [vm] initrd", "no such file"});
  expect_error(head + "bios = 7\n", {"host.toml:6: [vm] bios", "expected a string"});
  expect_error(head + "bios = \"\"\n", {"host.toml:6: [vm] bios", "empty"});
  // Neither guest nor bios on a primary: the hint names both.
  expect_error(head, {"host.toml:5: [vm] guest", "--bios"});
}

TEST_F(ConfigTest, FlagsOverrideTheFileAndAreValidatedByName) {
  ConfigOverrides o;
  o.node_name = "c";
  o.role = "secondary";
  o.listen = "127.0.0.1:9100";
  o.peer = "127.0.0.1:9200";
  o.console_listen = "127.0.0.1:9300";
  o.control_socket = "/tmp/c.sock";
  o.mem_mib = 512;
  o.state_dir = "/tmp/c-state";
  o.log_level = "warn";
  const NodeConfig c = load(primary(), o);
  EXPECT_EQ(c.node_name, "c");
  EXPECT_EQ(c.role, Role::Secondary);
  EXPECT_EQ(c.listen, "127.0.0.1:9100");
  EXPECT_EQ(c.peer, "127.0.0.1:9200");
  EXPECT_EQ(c.console_listen, "127.0.0.1:9300");
  EXPECT_EQ(c.control_socket, "/tmp/c.sock");
  EXPECT_EQ(c.mem_mib, 512u);
  EXPECT_EQ(c.state_dir, "/tmp/c-state");
  EXPECT_EQ(c.log_level, "warn");

  ConfigOverrides bad_listen;
  bad_listen.listen = "localhost:7100";
  expect_error(primary(), {"--listen", "numeric host"}, bad_listen);
  ConfigOverrides bad_role;
  bad_role.role = "leader";
  expect_error(primary(), {"--role", "\"leader\""}, bad_role);
  ConfigOverrides bad_mem;
  bad_mem.mem_mib = 0;
  expect_error(primary(), {"--mem", "positive integer"}, bad_mem);
  ConfigOverrides missing_guest;
  missing_guest.guest = path("nope.elf");
  expect_error(primary(), {"--guest", "nope.elf"}, missing_guest);
}

TEST_F(ConfigTest, WrongTypeNamesFileLineKeyAndValue) {
  expect_error(primary() + "heartbeat_ms = \"fast\"\n",
               {"host.toml:9: [pair] heartbeat_ms: expected a positive integer, got \"fast\""});
  expect_error(primary() + "listen_x = 1\n", {"host.toml:9:", "[pair] listen_x"});
  expect_error("[node]\nname = 7\n", {"host.toml:2:", "[node] name", "expected a string, got 7"});
  expect_error(primary() + "max_lag_ms = 1.5\n", {"host.toml:9:", "[pair] max_lag_ms", "1.5"});
  expect_error(primary() + "heartbeat_misses = true\n", {"host.toml:9:", "[pair] heartbeat_misses", "true"});
  expect_error("pair = 3\n", {"host.toml:1:", "[pair]", "expected a section"});
}

TEST_F(ConfigTest, NegativeZeroAndHugeNumbersAreRefused) {
  expect_error(primary() + "max_lag_ms = -5\n", {"host.toml:9:", "[pair] max_lag_ms", "-5"});
  expect_error(primary() + "heartbeat_ms = 0\n", {"host.toml:9:", "[pair] heartbeat_ms", "got 0"});
  expect_error(primary() + "heartbeat_ms = 600000\n", {"host.toml:9:", "[pair] heartbeat_ms", "600000"});
  expect_error("[vm]\nmem_mib = 100000\n", {"host.toml:2:", "[vm] mem_mib", "100000"});
}

// [pair] allow: the peer addresses the replication link and the second heartbeat path admit.
TEST_F(ConfigTest, PairAllowListsNumericPeerAddresses) {
  const NodeConfig c = load(primary() + "allow = [\"10.0.0.2\", \"fd00::2\"]\n");
  EXPECT_EQ(c.allow, (std::vector<std::string>{"10.0.0.2", "fd00::2"}));
  EXPECT_EQ(c.second_path.admission.allow, c.allow);
  EXPECT_TRUE(load(primary()).allow.empty());
  expect_error(primary() + "allow = [\"peer.example\"]\n", {"host.toml:9:", "[pair] allow", "\"peer.example\""});
  expect_error(primary() + "allow = \"10.0.0.2\"\n", {"host.toml:9:", "[pair] allow", "array"});
}

TEST_F(ConfigTest, UnknownKeysAndSectionsAreErrorsNotIgnored) {
  expect_error(primary() + "hearbeat_ms = 100\n", {"host.toml:9:", "[pair] hearbeat_ms", "unknown key"});
  expect_error(primary() + "[consle]\nlisten = \"127.0.0.1:1\"\n", {"host.toml:9:", "[consle]", "unknown section"});
  expect_error("[vm]\nguest = \"guest.bin\"\nmemory = 64\n", {"host.toml:3:", "[vm] memory", "unknown key"});
}

TEST_F(ConfigTest, MissingRequiredKeysNameTheirSection) {
  // No psk_file: points at the [pair] header (line 5).
  expect_error("[node]\nname = \"a\"\n[vm]\nguest = \"guest.bin\"\n[pair]\nrole = \"primary\"\n",
               {"host.toml:5:", "[pair] psk_file", "required"});
  // No guest on a primary: points at the [vm] header.
  expect_error("[node]\nname = \"a\"\n[vm]\nmem_mib = 64\n[pair]\npsk_file = \"psk\"\n",
               {"host.toml:3:", "[vm] guest", "required"});
  // No [pair] section at all: line 1.
  expect_error("[node]\nname = \"a\"\n[vm]\nguest = \"guest.bin\"\n", {"host.toml:1:", "[pair] psk_file"});
}

TEST_F(ConfigTest, AddressesMustBeNumericHostAndValidPort) {
  const std::string base = "[node]\nname = \"a\"\n[vm]\nguest = \"guest.bin\"\n[pair]\npsk_file = \"psk\"\n";
  expect_error(base + "listen = \"localhost:7100\"\n", {"host.toml:7:", "[pair] listen", "numeric host"});
  expect_error(base + "listen = \"127.0.0.1\"\n", {"host.toml:7:", "[pair] listen", "no port"});
  expect_error(base + "peer = \"127.0.0.1:70000\"\n", {"host.toml:7:", "[pair] peer", "port"});
  expect_error(base + "peer = \"127.0.0.1:0\"\n", {"host.toml:7:", "[pair] peer", "port 0"});
  expect_error(base + "peer = \"::1:7200\"\n", {"host.toml:7:", "[pair] peer", "brackets"});
  expect_error(base + "peer = \"127.0.0.1:72x\"\n", {"host.toml:7:", "[pair] peer"});
  expect_error(base + "[console]\nlisten = \"300.1.1.1:7300\"\n", {"host.toml:8:", "[console] listen"});
  expect_error(base + "listen = \"127.0.0.1:7100\"\n[console]\nlisten = \"127.0.0.1:7100\"\n",
               {"host.toml:9:", "[console] listen", "also the replication listen address"});
  // Port 0 is fine for listening (the system picks one).
  EXPECT_EQ(load(base + "listen = \"127.0.0.1:0\"\n").listen, "127.0.0.1:0");
}

TEST_F(ConfigTest, PskFileMustExistAndBeLongEnough) {
  const std::string head = "[node]\nname = \"a\"\n[vm]\nguest = \"guest.bin\"\n[pair]\n";
  expect_error(head + "psk_file = \"missing.key\"\n", {"host.toml:6:", "[pair] psk_file", "missing.key", "No such file"});
  write("short.key", "tooshort\n");
  expect_error(head + "psk_file = \"short.key\"\n", {"host.toml:6:", "[pair] psk_file", "8 bytes", "at least 16"});
  fs::create_directories(dir / "keydir");
  expect_error(head + "psk_file = \"keydir\"\n", {"host.toml:6:", "[pair] psk_file", "not a regular file"});
}

TEST_F(ConfigTest, GroupOrWorldReadablePskIsRefused) {
  for (mode_t mode : {0644, 0640}) {
    ::chmod(path("psk").c_str(), mode);
    expect_error(primary(), {"host.toml:8:", "[pair] psk_file", "readable by its group or others", "chmod 600"});
  }
  ::chmod(path("psk").c_str(), 0600);
  EXPECT_EQ(load(primary()).psk.size(), 32u);
  EXPECT_TRUE(warnings.empty());
}

TEST_F(ConfigTest, SyntaxErrorNamesFileLineAndColumn) {
  expect_error("[node]\nname = \"a\"\n[pair]\nheartbeat_ms = = 3\n", {"host.toml:4:", "TOML syntax error"});
  try {
    load("[node]\nname = \"a\"\n[pair]\nheartbeat_ms = = 3\n");
  } catch (const ConfigError& e) {
    // file:line:column
    EXPECT_NE(std::string(e.what()).find("host.toml:4:1"), std::string::npos) << e.what();
  }
  expect_error("[node\n", {"host.toml:1:", "TOML syntax error"});
}

TEST_F(ConfigTest, OtherBadValuesAreRefusedWithTheirKey) {
  expect_error("[node]\nname = \"a/b\"\n", {"host.toml:2:", "[node] name"});
  expect_error(primary() + "[node]\n", {"host.toml:9:", "TOML syntax error"});  // a section defined twice
  expect_error("[node]\nlog_level = \"loud\"\n", {"host.toml:2:", "[node] log_level", "\"loud\""});
  std::string leader = primary();
  leader.replace(leader.find("\"primary\""), 9, "\"leader\"");
  expect_error(leader, {"host.toml:6:", "[pair] role", "\"leader\""});
  expect_error("[vm]\nguest = \"missing.elf\"\n", {"host.toml:2:", "[vm] guest", "missing.elf"});
  expect_error("[vm]\nguest = \"guest.bin\"\ndisk = \"none.img\"\n", {"host.toml:3:", "[vm] disk", "none.img"});
  expect_error("[control]\nsocket = \"/" + std::string(200, 's') + "\"\n", {"host.toml:2:", "[control] socket", "107"});
}

TEST_F(ConfigTest, FencingDefaultsToNoArbiterAndNoSecondPath) {
  const NodeConfig c = load(primary());
  EXPECT_EQ(c.fencing.kind, "none");
  EXPECT_EQ(c.fencing.vm_id, "guest.bin");
  EXPECT_EQ(c.fencing.psk, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(c.fencing.lease, std::chrono::milliseconds(2000));
  EXPECT_EQ(c.fencing.timeout, std::chrono::milliseconds(500));
  EXPECT_FALSE(c.second_path.enabled());
}

TEST_F(ConfigTest, FencingSectionIsReadIntoTheArbiterConfigAndTheSecondPath) {
  const NodeConfig c = load(primary() +
                            "[fencing]\n"                                   // 9
                            "arbiter = \"witness\"\n"                      // 10
                            "witness = \"127.0.0.1:7400\"\n"               // 11
                            "lease_ms = 3000\n"                             // 12
                            "arbiter_timeout_ms = 200\n"                    // 13
                            "heartbeat_listen = \"127.0.0.1:7110\"\n"      // 14
                            "heartbeat_peer = \"127.0.0.1:7210\"\n"        // 15
                            "heartbeat_ms = 50\n"                           // 16
                            "heartbeat_misses = 4\n");                      // 17
  EXPECT_EQ(c.fencing.kind, "witness");
  EXPECT_EQ(c.fencing.witness, "127.0.0.1:7400");
  EXPECT_EQ(c.fencing.lease, std::chrono::milliseconds(3000));
  EXPECT_EQ(c.fencing.timeout, std::chrono::milliseconds(200));
  EXPECT_EQ(c.fencing.vm_id, c.vm_id);
  EXPECT_EQ(c.fencing.psk, c.psk);
  EXPECT_EQ(c.second_path.listen, "127.0.0.1:7110");
  EXPECT_EQ(c.second_path.peer, "127.0.0.1:7210");
  EXPECT_EQ(c.second_path.timing.interval, std::chrono::milliseconds(50));
  EXPECT_EQ(c.second_path.timing.misses, 4u);
  // The link keeps its own [pair] timing.
  EXPECT_EQ(c.heartbeat_ms, 100u);

  const NodeConfig d = load(primary() + "[fencing]\narbiter = \"disk\"\ndisk_path = \"leases/kv.lease\"\n");
  EXPECT_EQ(d.fencing.disk_path, path("leases/kv.lease"));  // relative to the file
  const NodeConfig e = load(primary() + "[fencing]\narbiter = \"etcd\"\netcd = \"http://127.0.0.1:2379\"\n");
  EXPECT_EQ(e.fencing.etcd, "http://127.0.0.1:2379");
  const NodeConfig f = load(primary() + "[fencing]\narbiter = \"command\"\nfence_command = \"ssh root@b poweroff\"\n");
  EXPECT_EQ(f.fencing.fence_command, "ssh root@b poweroff");
}

TEST_F(ConfigTest, BadFencingSettingsNameFileLineAndKey) {
  const std::string p = primary() + "[fencing]\n";  // line 9
  expect_error(p + "arbiter = \"zookeeper\"\n", {"host.toml:10:", "[fencing] arbiter", "\"zookeeper\"", "witness"});
  expect_error(p + "arbiter = 3\n", {"host.toml:10:", "[fencing] arbiter", "expected a string"});
  // Each kind needs its own setting ...
  expect_error(p + "arbiter = \"witness\"\n", {"host.toml:9:", "[fencing] witness", "required", "\"witness\""});
  expect_error(p + "arbiter = \"disk\"\n", {"host.toml:9:", "[fencing] disk_path", "required"});
  expect_error(p + "arbiter = \"command\"\n", {"host.toml:9:", "[fencing] fence_command", "required"});
  expect_error(p + "arbiter = \"etcd\"\n", {"host.toml:9:", "[fencing] etcd", "required"});
  // ... and no other kind's.
  expect_error(p + "witness = \"127.0.0.1:7400\"\n", {"host.toml:10:", "[fencing] witness", "only used with arbiter = \"witness\""});
  expect_error(p + "arbiter = \"disk\"\ndisk_path = \"x\"\netcd = \"http://h:1\"\n",
               {"host.toml:12:", "[fencing] etcd", "arbiter is \"disk\""});
  expect_error(p + "arbiter = \"witness\"\nwitness = \"localhost:7400\"\n", {"host.toml:11:", "[fencing] witness", "numeric"});
  expect_error(p + "arbiter = \"witness\"\nwitness = \"127.0.0.1:0\"\n", {"host.toml:11:", "[fencing] witness", "port 0"});
  expect_error(p + "arbiter = \"etcd\"\netcd = \"https://h:2379\"\n", {"host.toml:11:", "[fencing] etcd", "http://"});
  expect_error(p + "arbiter = \"command\"\nfence_command = \"  \"\n", {"host.toml:11:", "[fencing] fence_command", "empty"});
  expect_error(p + "lease_ms = 0\n", {"host.toml:10:", "[fencing] lease_ms", "positive"});
  expect_error(p + "lease_ms = \"2s\"\n", {"host.toml:10:", "[fencing] lease_ms", "\"2s\""});
  // A lease too short for two arbiter timeouts could never release output.
  expect_error(p + "arbiter = \"disk\"\ndisk_path = \"x\"\nlease_ms = 1000\narbiter_timeout_ms = 500\n",
               {"host.toml:13:", "[fencing] arbiter_timeout_ms", "lease_ms 1000", "1053 ms"});
  // The second path needs both ends, distinct from the other listeners.
  expect_error(p + "heartbeat_listen = \"127.0.0.1:7110\"\n", {"host.toml:10:", "[fencing] heartbeat_listen", "heartbeat_peer"});
  expect_error(p + "heartbeat_peer = \"127.0.0.1:7210\"\n", {"host.toml:10:", "[fencing] heartbeat_peer", "heartbeat_listen"});
  expect_error(p + "heartbeat_listen = \"127.0.0.1:7100\"\nheartbeat_peer = \"127.0.0.1:7210\"\n",
               {"host.toml:10:", "[fencing] heartbeat_listen", "already used"});
  expect_error(p + "heartbeat_listen = \"127.0.0.1:7110\"\nheartbeat_peer = \"127.0.0.1:0\"\n",
               {"host.toml:11:", "[fencing] heartbeat_peer", "port 0"});
  expect_error(p + "heartbeat_ms = 50\n", {"host.toml:10:", "[fencing] heartbeat_ms", "heartbeat_listen"});
  expect_error(p + "heartbeat_listen = \"127.0.0.1:7110\"\nheartbeat_peer = \"127.0.0.1:7210\"\nheartbeat_misses = 0\n",
               {"host.toml:12:", "[fencing] heartbeat_misses", "positive"});
  expect_error(p + "lease = 5\n", {"host.toml:10:", "[fencing] lease", "unknown key", "lease_ms"});
  expect_error(primary() + "[fence]\n", {"host.toml:9:", "unknown section", "[fencing]"});
}

TEST_F(ConfigTest, UnreadableFileIsOneLineNamingIt) {
  try {
    load_config(path("absent.toml"));
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("absent.toml"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_config(dir.string()), ConfigError);
}

TEST_F(ConfigTest, DeployExamplesAreValidAndAgree) {
  for (const char* name : {"primary.toml", "secondary.toml"})
    fs::copy_file(fs::path(TANDEM_SOURCE_DIR) / "deploy" / "examples" / name, dir / name,
                  fs::copy_options::overwrite_existing);
  write("pair.psk", "fedcba9876543210fedcba9876543210\n");
  ::chmod(path("pair.psk").c_str(), 0600);
  write("disk.img", std::string(4096, '\0'));
  // Only the host paths of the VM images differ on this machine.
  ConfigOverrides on_primary;
  on_primary.guest = path("guest.bin");
  on_primary.disk = path("disk.img");
  const NodeConfig a = load_config(path("primary.toml"), on_primary, &warnings);
  ConfigOverrides on_secondary;
  on_secondary.disk = path("b.disk");
  const NodeConfig b = load_config(path("secondary.toml"), on_secondary, &warnings);
  EXPECT_TRUE(warnings.empty());
  EXPECT_EQ(a.role, Role::Primary);
  EXPECT_EQ(b.role, Role::Secondary);
  EXPECT_EQ(a.peer, b.listen);
  EXPECT_EQ(a.vm_id, b.vm_id);
  EXPECT_EQ(a.psk, b.psk);
  EXPECT_EQ(a.mem_mib, b.mem_mib);
  EXPECT_NE(a.console_listen, b.console_listen);
  EXPECT_NE(a.control_socket, b.control_socket);
  // One arbiter for both; each second-path listener is the other's peer.
  EXPECT_EQ(a.fencing.kind, b.fencing.kind);
  EXPECT_EQ(a.fencing.witness, b.fencing.witness);
  EXPECT_EQ(a.fencing.lease, b.fencing.lease);
  EXPECT_EQ(a.second_path.peer, b.second_path.listen);
  EXPECT_EQ(b.second_path.peer, a.second_path.listen);
}

// The [net] blocks the examples carry commented out are valid once uncommented, and agree.
TEST_F(ConfigTest, DeployExamplesNetBlocksAreValidAndAgree) {
  auto with_net = [&](const char* name) {
    std::ifstream in(fs::path(TANDEM_SOURCE_DIR) / "deploy" / "examples" / name);
    std::string line, text;
    bool in_net = false;
    while (std::getline(in, line)) {
      if (line == "#[net]") in_net = true;
      // Uncomment "#[net]" and "#key = value" lines of the block, not prose ("# ...", "#   ...").
      if (in_net && line.size() > 1 && line[0] == '#' && line[1] != ' ') line.erase(0, 1);
      text += line + "\n";
    }
    EXPECT_TRUE(in_net) << name << " has no #[net] block";
    return write(std::string("net-") + name, text);
  };
  write("pair.psk", "fedcba9876543210fedcba9876543210\n");
  ::chmod(path("pair.psk").c_str(), 0600);
  ConfigOverrides on_primary;
  on_primary.guest = path("guest.bin");
  on_primary.disk = path("disk.img");
  write("disk.img", std::string(4096, '\0'));
  ConfigOverrides on_secondary;
  on_secondary.disk = path("b.disk");
  const NodeConfig a = load_config(with_net("primary.toml"), on_primary, &warnings);
  const NodeConfig b = load_config(with_net("secondary.toml"), on_secondary, &warnings);
  ASSERT_TRUE(a.net && b.net);
  EXPECT_EQ(a.net->kind, tandem::hostnet::NetSpec::Kind::Tap);
  EXPECT_EQ(b.net->kind, tandem::hostnet::NetSpec::Kind::Tap);
  EXPECT_EQ(a.net->mac, b.net->mac);
  EXPECT_EQ(a.net->ifname, "tap-kv");
}

TEST_F(ConfigTest, NetSectionIsReadIntoTheNicAndBackend) {
  EXPECT_FALSE(load(primary()).net) << "no [net]: no NIC";
  const NodeConfig tap = load(primary() +
                              "[net]\nbackend = \"tap\"\nifname = \"tap-kv\"\nmac = \"52:54:00:aa:bb:0c\"\n"
                              "mtu = 9000\nlink = \"down\"\n");
  ASSERT_TRUE(tap.net);
  EXPECT_EQ(tap.net->kind, tandem::hostnet::NetSpec::Kind::Tap);
  EXPECT_EQ(tap.net->ifname, "tap-kv");
  EXPECT_EQ(tap.net->mac, (std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0xaa, 0xbb, 0x0c}));
  EXPECT_EQ(tap.net->mtu, 9000);
  EXPECT_FALSE(tap.net->link_up);
  EXPECT_TRUE(warnings.empty());

  const NodeConfig user = load(primary() + "[net]\nbackend = \"user\"\n"
                                           "hostfwd = [\"tcp:127.0.0.1:8080-:5555\", \"udp::5353-10.0.2.15:53\"]\n");
  ASSERT_TRUE(user.net);
  EXPECT_EQ(user.net->kind, tandem::hostnet::NetSpec::Kind::User);
  ASSERT_EQ(user.net->forwards.size(), 2u);
  EXPECT_EQ(user.net->forwards[0].host_port, 8080);
  EXPECT_EQ(user.net->forwards[0].guest_port, 5555);
  EXPECT_TRUE(user.net->forwards[1].udp);
  EXPECT_EQ(user.net->forwards[1].guest_addr, "10.0.2.15");
  EXPECT_EQ(user.net->mac, (std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0x12, 0x34, 0x56})) << "QEMU's default";
  // The user backend's NAT state lives in the process: said once, not refused.
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("do not survive a failover"), std::string::npos) << warnings[0];
}

TEST_F(ConfigTest, NetFlagReplacesTheSection) {
  ConfigOverrides o;
  o.net = "tap,ifname=tap9,mac=52:54:00:00:00:09";
  const NodeConfig c = load(primary() + "[net]\nbackend = \"user\"\n", o);
  ASSERT_TRUE(c.net);
  EXPECT_EQ(c.net->kind, tandem::hostnet::NetSpec::Kind::Tap);
  EXPECT_EQ(c.net->ifname, "tap9");
  o.net = "tap";
  expect_error(primary(), {"--net", "tap needs ifname"}, o);
  o.net = "slirp";
  expect_error(primary(), {"--net", "'slirp' is not 'user' or 'tap'"}, o);
}

TEST_F(ConfigTest, BadNetSectionsNameTheLineAndKey) {
  // primary() has 8 lines; [net] is line 9, its first key line 10.
  expect_error(primary() + "[net]\nmac = \"52:54:00:12:34:56\"\n", {"host.toml:9: [net] backend", "not set"});
  expect_error(primary() + "[net]\nbackend = \"slirp\"\n", {"host.toml:10: [net] backend", "'slirp' is not 'user' or 'tap'"});
  expect_error(primary() + "[net]\nbackend = 1\n", {"host.toml:10: [net] backend", "expected a string, got 1"});
  expect_error(primary() + "[net]\nbackend = \"tap\"\n", {"host.toml:9: [net] ifname", "required with backend = \"tap\""});
  expect_error(primary() + "[net]\nbackend = \"tap\"\nifname = \"a-very-long-tap-name\"\n",
               {"host.toml:11: [net] ifname", "not an interface name"});
  expect_error(primary() + "[net]\nbackend = \"tap\"\nifname = \"t\"\nhostfwd = [\"tcp::80-:80\"]\n",
               {"host.toml:12: [net] hostfwd", "only used with backend = \"user\""});
  expect_error(primary() + "[net]\nbackend = \"user\"\nifname = \"t\"\n",
               {"host.toml:11: [net] ifname", "only used with backend = \"tap\""});
  expect_error(primary() + "[net]\nbackend = \"user\"\nmac = \"01:00:5e:00:00:01\"\n",
               {"host.toml:11: [net] mac", "multicast"});
  expect_error(primary() + "[net]\nbackend = \"user\"\nmac = \"52:54:00:12:34\"\n",
               {"host.toml:11: [net] mac", "not six hex bytes"});
  expect_error(primary() + "[net]\nbackend = \"user\"\nmtu = 20\n", {"host.toml:11: [net] mtu", "68..9000"});
  expect_error(primary() + "[net]\nbackend = \"user\"\nmtu = \"1500\"\n", {"host.toml:11: [net] mtu", "expected an integer"});
  expect_error(primary() + "[net]\nbackend = \"user\"\nlink = \"sideways\"\n", {"host.toml:11: [net] link", "up or down"});
  expect_error(primary() + "[net]\nbackend = \"user\"\nhostfwd = \"tcp::80-:80\"\n",
               {"host.toml:11: [net] hostfwd", "expected an array of strings"});
  expect_error(primary() + "[net]\nbackend = \"user\"\nhostfwd = [\"tcp::80\"]\n",
               {"host.toml:11: [net] hostfwd", "PROTO:[HOST]:PORT-[GUEST]:PORT"});
  expect_error(primary() + "[net]\nbackend = \"user\"\nhostfwd = [\"tcp::0-:80\"]\n", {"host.toml:11: [net] hostfwd", "port number"});
  expect_error(primary() + "[net]\nbackend = \"user\"\nvlan = 3\n", {"host.toml:11: [net] vlan", "unknown key"});
  expect_error(primary() + "[net]\nbackend = \"user\"\n[net.extra]\n", {"host.toml", "[net] extra"});
}

TEST(ParseEndpoint, SplitsHostAndPort) {
  const Endpoint v4 = parse_endpoint("127.0.0.1:7100");
  EXPECT_EQ(v4.host, "127.0.0.1");
  EXPECT_EQ(v4.port, 7100);
  const Endpoint v6 = parse_endpoint("[::1]:7200");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, 7200);
  EXPECT_THROW(parse_endpoint("[127.0.0.1]:1"), std::invalid_argument);
  EXPECT_THROW(parse_endpoint(":1"), std::invalid_argument);
  EXPECT_THROW(parse_endpoint("127.0.0.1:"), std::invalid_argument);
  EXPECT_THROW(parse_endpoint("127.0.0.1:-1"), std::invalid_argument);
  EXPECT_EQ(parse_endpoint("127.0.0.1:0", /*allow_any_port=*/true).port, 0);
}

}  // namespace
