// Raw Linux system calls for a libc-free static riscv64 program, and the few constants and
// structures /init needs (generic syscall ABI: number in a7, arguments in a0..a5, result or
// -errno in a0).
#pragma once
#include <stddef.h>
#include <stdint.h>

#define SYS_ioctl 29
#define SYS_ppoll 73
#define SYS_socket 198
#define SYS_bind 200
#define SYS_listen 201
#define SYS_accept 202
#define SYS_setsockopt 208
#define SYS_mkdirat 34
#define SYS_mount 40
#define SYS_openat 56
#define SYS_close 57
#define SYS_read 63
#define SYS_write 64
#define SYS_pread64 67
#define SYS_pwrite64 68
#define SYS_sync 81
#define SYS_fsync 82
#define SYS_exit 93
#define SYS_syslog 116
#define SYS_reboot 142

#define AT_FDCWD (-100)
#define O_RDWR 02
#define O_NOCTTY 0400
#define O_SYNC 04010000
#define EINTR 4
#define EAGAIN 11
#define EBUSY 16

// ioctls on the console (asm-generic/ioctls.h) and on a block device (linux/fs.h).
#define TCGETS 0x5401
#define TCSETS 0x5402
#define BLKGETSIZE64 0x80081272UL

// struct termios as the TCGETS/TCSETS ioctls see it (asm-generic/termbits.h).
#define NCCS 19
struct kernel_termios {
  uint32_t c_iflag, c_oflag, c_cflag, c_lflag;
  uint8_t c_line;
  uint8_t c_cc[NCCS];
};
#define IGNBRK 0000001
#define BRKINT 0000002
#define PARMRK 0000010
#define ISTRIP 0000040
#define INLCR 0000100
#define IGNCR 0000200
#define ICRNL 0000400
#define IXON 0002000
#define OPOST 0000001
#define CSIZE 0000060
#define CS8 0000060
#define PARENB 0000400
#define ISIG 0000001
#define ICANON 0000002
#define ECHO 0000010
#define ECHONL 0000100
#define IEXTEN 0100000
#define VTIME 5
#define VMIN 6

#define SYSLOG_ACTION_CONSOLE_LEVEL 8

// Sockets (the kv service's TCP listener) and ppoll.
#define AF_INET 2
#define SOCK_STREAM 1
#define SOCK_CLOEXEC 02000000
#define SOL_SOCKET 1
#define SO_REUSEADDR 2
struct sockaddr_in {
  uint16_t sin_family;
  uint16_t sin_port;  // network byte order
  uint32_t sin_addr;  // network byte order
  uint8_t sin_zero[8];
};
struct pollfd {
  int fd;
  short events, revents;
};
#define POLLIN 0x001
#define POLLERR 0x008
#define POLLHUP 0x010

#define LINUX_REBOOT_MAGIC1 0xfee1deadUL
#define LINUX_REBOOT_MAGIC2 672274793UL
#define LINUX_REBOOT_CMD_RESTART 0x01234567UL
#define LINUX_REBOOT_CMD_POWER_OFF 0x4321fedcUL

static inline long syscall6(long n, long a, long b, long c, long d, long e, long f) {
  register long a7 __asm__("a7") = n;
  register long a0 __asm__("a0") = a;
  register long a1 __asm__("a1") = b;
  register long a2 __asm__("a2") = c;
  register long a3 __asm__("a3") = d;
  register long a4 __asm__("a4") = e;
  register long a5 __asm__("a5") = f;
  __asm__ volatile("ecall"
                   : "+r"(a0)
                   : "r"(a7), "r"(a1), "r"(a2), "r"(a3), "r"(a4), "r"(a5)
                   : "memory");
  return a0;
}
#define syscall3(n, a, b, c) syscall6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

static inline long sys_read(int fd, void *buf, size_t n) { return syscall3(SYS_read, fd, buf, n); }
static inline long sys_write(int fd, const void *buf, size_t n) {
  return syscall3(SYS_write, fd, buf, n);
}
static inline long sys_open(const char *path, int flags) {
  return syscall3(SYS_openat, AT_FDCWD, path, flags);
}
static inline long sys_close(int fd) { return syscall3(SYS_close, fd, 0, 0); }
static inline long sys_ioctl(int fd, unsigned long request, void *arg) {
  return syscall3(SYS_ioctl, fd, request, arg);
}
static inline long sys_pread(int fd, void *buf, size_t n, uint64_t offset) {
  return syscall6(SYS_pread64, fd, (long)buf, (long)n, (long)offset, 0, 0);
}
static inline long sys_pwrite(int fd, const void *buf, size_t n, uint64_t offset) {
  return syscall6(SYS_pwrite64, fd, (long)buf, (long)n, (long)offset, 0, 0);
}
static inline long sys_fsync(int fd) { return syscall3(SYS_fsync, fd, 0, 0); }
static inline void sys_sync(void) { syscall3(SYS_sync, 0, 0, 0); }
static inline long sys_mkdir(const char *path, int mode) {
  return syscall3(SYS_mkdirat, AT_FDCWD, path, mode);
}
static inline long sys_mount(const char *source, const char *target, const char *type) {
  return syscall6(SYS_mount, (long)source, (long)target, (long)type, 0, 0, 0);
}
static inline long sys_socket(int domain, int type) { return syscall3(SYS_socket, domain, type, 0); }
static inline long sys_bind(int fd, const void *addr, size_t len) { return syscall3(SYS_bind, fd, addr, len); }
static inline long sys_listen(int fd, int backlog) { return syscall3(SYS_listen, fd, backlog, 0); }
static inline long sys_accept(int fd) { return syscall3(SYS_accept, fd, 0, 0); }
static inline long sys_setsockopt(int fd, int level, int name, const void *value, size_t len) {
  return syscall6(SYS_setsockopt, fd, level, name, (long)value, (long)len, 0);
}
// ppoll without a timeout or signal mask: waits until a descriptor is ready.
static inline long sys_poll(struct pollfd *fds, unsigned n) {
  return syscall6(SYS_ppoll, (long)fds, (long)n, 0, 0, 0, 0);
}
static inline long sys_syslog(int type, int level) { return syscall3(SYS_syslog, type, 0, level); }
static inline long sys_reboot(unsigned long cmd) {
  return syscall6(SYS_reboot, (long)LINUX_REBOOT_MAGIC1, (long)LINUX_REBOOT_MAGIC2, (long)cmd, 0,
                  0, 0);
}
