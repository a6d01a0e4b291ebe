// /init of the Tandem Linux guest: sets up the console, then serves the kv line protocol
// of the bare-metal guest byte for byte (guest/kv/protocol.c, compiled into both), so the
// same clients talk to both: SET, GET, DEL, SYNC, COUNT, QUIT (BYE, then power off), plus
// two Linux-only commands, POWEROFF (as QUIT) and REBOOT (BYE, then restart(2)).
// The readiness line is the kv banner, "tandem-kv ready keys=N[ note]".
//
// The same protocol is served on TCP port KV_TCP_PORT (all addresses; the kernel's ip=
// parameter configures a NIC when there is one), one client connection at a time beside the
// console. Input switches between the console and the client only at line boundaries, and a
// reply goes to where its command came from. Waiting for input is a blocking ppoll(2): the
// kernel idles the hart in WFI meanwhile.
#include "console.h"
#include "guest.h"
#include "kv.h"
#include "sys.h"

#define KV_TCP_PORT 5555

static int console_fd = 0;
static int console_out_fd = 1;  // replies to console input (the kernel's fd 1, or our own fd)
static int listen_fd = -1;  // -1: no TCP service (no networking in the kernel)
static int client_fd = -1;  // the connected TCP client, if any
static int input_fd;        // where the current line comes from; replies go there too

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
    console_fd = console_out_fd = (int)fd;
    console_set_fd(console_fd);
    err = set_raw(console_fd);
    if (err < 0) fatal("cannot make /dev/console raw", err);
  }
}

static void listen_tcp(void) {
  long fd = sys_socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC);
  if (fd < 0) return;  // a kernel without networking: console only
  const int one = 1;
  sys_setsockopt((int)fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = (uint16_t)((KV_TCP_PORT >> 8) | ((KV_TCP_PORT & 0xff) << 8));
  if (sys_bind((int)fd, &addr, sizeof addr) < 0 || sys_listen((int)fd, 4) < 0) {
    sys_close((int)fd);
    return;
  }
  listen_fd = (int)fd;
}

static void drop_client(void) {
  sys_close(client_fd);
  client_fd = -1;
}

static uint8_t next_byte(void) {
  static uint8_t buf[4096];
  static long len, at;
  static int at_line_start = 1;
  static int end_dropped_line;  // a client vanished mid-line: its line still needs its '\n'
  if (end_dropped_line) {
    end_dropped_line = 0;
    at_line_start = 1;
    return '\n';
  }
  while (at == len) {
    out_flush();  // the reply to the previous line, to where that line came from
    // Between lines any source may speak; within a line only the one that started it.
    struct pollfd fds[3];
    unsigned n_fds = 0;
    int console_i = -1, client_i = -1, listen_i = -1;
    if (at_line_start || input_fd == console_fd) {
      console_i = (int)n_fds;
      fds[n_fds++] = (struct pollfd){console_fd, POLLIN, 0};
    }
    if (client_fd >= 0 && (at_line_start || input_fd == client_fd)) {
      client_i = (int)n_fds;
      fds[n_fds++] = (struct pollfd){client_fd, POLLIN, 0};
    }
    if (listen_fd >= 0 && client_fd < 0) {  // one client at a time; others wait in the backlog
      listen_i = (int)n_fds;
      fds[n_fds++] = (struct pollfd){listen_fd, POLLIN, 0};
    }
    long r = sys_poll(fds, n_fds);
    if (r == -EINTR || r == -EAGAIN) continue;
    if (r < 0) fatal("ppoll failed", r);
    if (listen_i >= 0 && (fds[listen_i].revents & POLLIN)) {
      long fd = sys_accept(listen_fd);
      if (fd >= 0) client_fd = (int)fd;
    }
    int from = -1;
    if (client_i >= 0 && fds[client_i].revents) {
      from = client_fd;
    } else if (console_i >= 0 && fds[console_i].revents) {
      from = console_fd;
    }
    if (from < 0) continue;
    long n = sys_read(from, buf, sizeof buf);
    if (n == -EINTR || n == -EAGAIN) continue;
    if (n <= 0) {
      if (from == console_fd) fatal("console read failed", n);
      // The client went away. A line it left unfinished is ended here with a byte no
      // command accepts (0x01), so it is refused (ERR), never executed, and the reply goes
      // nowhere.
      int was_input = input_fd == client_fd;
      drop_client();
      if (was_input && !at_line_start) {
        input_fd = -1;
        console_set_fd(-1);
        end_dropped_line = 1;
        return 0x01;
      }
      continue;
    }
    input_fd = from;
    console_set_fd(from == console_fd ? console_out_fd : from);
    len = n;
    at = 0;
  }
  uint8_t b = buf[at++];
  at_line_start = b == '\n';
  return b;
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
  input_fd = console_fd;
  listen_tcp();
  const char *note;
  kv_disk_open(&note);
  kv_print_banner(note);
  int stop = kv_serve(next_byte, linux_stop_commands,
                      sizeof linux_stop_commands / sizeof linux_stop_commands[0]);
  if (stop == STOP_RESTART) restart();
  power_off();
}
