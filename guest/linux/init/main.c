// /init of the Tandem Linux guest: sets up the console, then serves the kv line protocol
// of the bare-metal guest byte for byte (guest/kv/protocol.c, compiled into both), so the
// same clients talk to both: SET, GET, DEL, SYNC, COUNT, QUIT (BYE, then power off), plus
// two Linux-only commands, POWEROFF (as QUIT) and REBOOT (BYE, then restart(2)).
// The readiness line is the kv banner, "tandem-kv ready keys=N[ note]".
//
// Waiting for input is a blocking read(2): the kernel idles the hart in WFI meanwhile.
#include "console.h"
#include "guest.h"
#include "kv.h"
#include "sys.h"

static int console_fd = 0;

// Raw console, like the bare-metal UART: bytes in as sent (no echo, no line editing, no
// CR/NL translation, no signals) and out as written ('\n' stays a lone LF).
static long set_raw(int fd) {
  struct kernel_termios t;
  long err = sys_ioctl(fd, TCGETS, &t);
  if (err < 0) return err;
  t.c_iflag &= ~(uint32_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
  t.c_oflag &= ~(uint32_t)OPOST;
  t.c_lflag &= ~(uint32_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
  t.c_cflag = (t.c_cflag & ~(uint32_t)(CSIZE | PARENB)) | CS8;
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  return sys_ioctl(fd, TCSETS, &t);
}

static void setup(void) {
  // The kernel opened /dev/console as fds 0-2 (from the initramfs node). Raw mode first:
  // bytes a client sends early must not be echoed or translated.
  long raw = set_raw(0);
  // Kernel messages after this point would land between kv replies.
  sys_syslog(SYSLOG_ACTION_CONSOLE_LEVEL, 1);
  long err = sys_mount("devtmpfs", "/dev", "devtmpfs");
  if (err < 0 && err != -EBUSY) fatal("mount devtmpfs on /dev failed", err);
  if (raw < 0) {  // no console inherited: open it from devtmpfs
    long fd = sys_open("/dev/console", O_RDWR | O_NOCTTY);
    if (fd < 0) fatal("cannot open /dev/console", fd);
    console_fd = (int)fd;
    console_set_fd(console_fd);
    err = set_raw(console_fd);
    if (err < 0) fatal("cannot make /dev/console raw", err);
  }
}

static uint8_t next_byte(void) {
  static uint8_t buf[4096];
  static long len, at;
  while (at == len) {
    out_flush();
    long n = sys_read(console_fd, buf, sizeof buf);
    if (n == -EINTR || n == -EAGAIN) continue;
    if (n <= 0) fatal("console read failed", n);
    len = n;
    at = 0;
  }
  return buf[at++];
}

void kv_console_write(const char *p, size_t n) { out_bytes(p, n); }

#define STOP_RESTART (KV_STOP_QUIT + 1)
static const struct kv_stop_command linux_stop_commands[] = {
    {"POWEROFF", KV_STOP_QUIT},
    {"REBOOT", STOP_RESTART},
};

void init_main(void) __attribute__((noreturn));
void init_main(void) {
  setup();
  const char *note;
  kv_disk_open(&note);
  kv_print_banner(note);
  int stop = kv_serve(next_byte, linux_stop_commands,
                      sizeof linux_stop_commands / sizeof linux_stop_commands[0]);
  if (stop == STOP_RESTART) restart();
  power_off();
}
