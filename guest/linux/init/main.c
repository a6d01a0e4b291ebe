// /init of the Tandem Linux guest: sets up the console, then serves the kv line protocol
// of the bare-metal guest (guest/kv/kv.c) byte for byte, so the same clients talk to both:
//   SET k v -> OK | GET k -> value | NOT_FOUND | DEL k -> OK | NOT_FOUND | SYNC -> OK |
//   COUNT -> n | QUIT -> BYE (then power off) | anything else -> ERR <reason>
// plus two Linux-only commands, POWEROFF (as QUIT) and REBOOT (BYE, then restart(2)).
// The readiness line is the kv banner, "tandem-kv ready keys=N[ note]".
//
// Waiting for input is a blocking read(2): the kernel idles the hart in WFI meanwhile.
#include "console.h"
#include "guest.h"
#include "kv.h"
#include "sys.h"

#define LINE_MAX 256  // "SET " + 32-byte key + " " + 200-byte value fits
#define TOMBSTONE_LIMIT (KV_SLOTS / 4)

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

// ---- the protocol (as guest/kv/kv.c) ----
static void reply(const char *text) {
  out_str(text);
  out_str("\n");
}

static void reply_err(const char *why) {
  out_str("ERR ");
  reply(why);
}

static int word_is(const char *p, size_t len, const char *word) {
  return len == strlen(word) && memcmp(p, word, len) == 0;
}

static size_t split_word(const char *line, size_t len, const char **rest, size_t *rest_len) {
  size_t n = 0;
  while (n < len && line[n] != ' ') n++;
  *rest = n < len ? line + n + 1 : line + len;
  *rest_len = n < len ? len - n - 1 : 0;
  return n;
}

static const char *single_key(const char *arg, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (arg[i] == ' ') return "expected one key";
  if (len > KV_KEY_MAX) return "key too long";
  if (!kv_key_valid(arg, len)) return "bad key";
  return 0;
}

static void handle_set(const char *arg, size_t len) {
  const char *value;
  size_t value_len;
  size_t key_len = split_word(arg, len, &value, &value_len);
  if (key_len == 0 || value == arg + len) {
    reply_err("usage: SET key value");
  } else if (key_len > KV_KEY_MAX) {
    reply_err("key too long");
  } else if (!kv_key_valid(arg, key_len)) {
    reply_err("bad key");
  } else if (value_len == 0) {
    reply_err("usage: SET key value");
  } else if (value_len > KV_VALUE_MAX) {
    reply_err("value too long");
  } else if (!kv_value_valid(value, value_len)) {
    reply_err("bad value");
  } else if (kv_put(arg, key_len, value, value_len) == KV_PUT_FULL) {
    reply_err("full");
  } else {
    reply("OK");
  }
}

enum after_line { CONTINUE, STOP_POWER_OFF, STOP_RESTART };

static enum after_line handle_line(const char *line, size_t len) {
  if (len > 0 && line[len - 1] == '\r') len--;  // tolerate \r\n
  const char *arg;
  size_t arg_len;
  size_t cmd_len = split_word(line, len, &arg, &arg_len);
  int has_arg = cmd_len < len;

  if (len == 0) {
    reply_err("empty line");
  } else if (word_is(line, cmd_len, "SET")) {
    handle_set(arg, arg_len);
  } else if (word_is(line, cmd_len, "GET") || word_is(line, cmd_len, "DEL")) {
    const char *why = has_arg ? single_key(arg, arg_len) : "expected one key";
    if (why) {
      reply_err(why);
    } else if (line[0] == 'G') {
      const struct kv_entry *e = kv_get(arg, arg_len);
      if (e) {
        out_bytes(e->value, e->value_len);
        out_str("\n");
      } else {
        reply("NOT_FOUND");
      }
    } else if (kv_del(arg, arg_len)) {
      if (kv_tombstones() > TOMBSTONE_LIMIT) kv_compact();
      reply("OK");
    } else {
      reply("NOT_FOUND");
    }
  } else if (has_arg && (word_is(line, cmd_len, "SYNC") || word_is(line, cmd_len, "COUNT") ||
                         word_is(line, cmd_len, "QUIT") || word_is(line, cmd_len, "POWEROFF") ||
                         word_is(line, cmd_len, "REBOOT"))) {
    reply_err("unexpected argument");
  } else if (word_is(line, cmd_len, "SYNC")) {
    const char *err = kv_disk_sync();
    if (err) reply_err(err);
    else reply("OK");
  } else if (word_is(line, cmd_len, "COUNT")) {
    out_uint(kv_count());
    out_str("\n");
  } else if (word_is(line, cmd_len, "QUIT") || word_is(line, cmd_len, "POWEROFF")) {
    reply("BYE");
    return STOP_POWER_OFF;
  } else if (word_is(line, cmd_len, "REBOOT")) {
    reply("BYE");
    return STOP_RESTART;
  } else {
    reply_err("unknown command");
  }
  return CONTINUE;
}

void init_main(void) __attribute__((noreturn));
void init_main(void) {
  setup();
  const char *note;
  kv_disk_open(&note);
  out_str("tandem-kv ready keys=");
  out_uint(kv_count());
  if (*note) {
    out_str(" ");
    out_str(note);
  }
  out_str("\n");

  static char line[LINE_MAX];
  size_t len = 0;
  int overlong = 0;  // the current line outgrew the buffer: its bytes are dropped
  for (;;) {
    uint8_t c = next_byte();
    if (c != '\n') {
      if (len < LINE_MAX) line[len++] = (char)c;
      else overlong = 1;
      continue;
    }
    enum after_line next = CONTINUE;
    if (overlong) reply_err("line too long");
    else next = handle_line(line, len);
    if (next == STOP_POWER_OFF) power_off();
    if (next == STOP_RESTART) restart();
    len = 0;
    overlong = 0;
  }
}
