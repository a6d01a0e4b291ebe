// The kv line protocol, shared by the bare-metal guest and the Linux /init (see docs/guests.md):
//   SET k v -> OK | GET k -> value | NOT_FOUND | DEL k -> OK | NOT_FOUND | SYNC -> OK |
//   COUNT -> n | QUIT -> BYE | anything else -> ERR <reason>
// plus whatever stop commands the platform adds (Linux: POWEROFF, REBOOT). One reply line
// per command line; replies go out through the platform's kv_console_write.
#include "guest.h"
#include "kv.h"

#define LINE_MAX 256  // "SET " + 32-byte key + " " + 200-byte value fits
#define TOMBSTONE_LIMIT (KV_SLOTS / 4)

// ---- replies ----
static void put_str(const char *s) { kv_console_write(s, strlen(s)); }

static void put_uint(unsigned long v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[sizeof tmp - ++n] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  kv_console_write(tmp + sizeof tmp - n, n);
}

static void reply(const char *text) {
  put_str(text);
  put_str("\n");
}

static void reply_err(const char *why) {
  put_str("ERR ");
  reply(why);
}

void kv_print_banner(const char *note) {
  put_str("tandem-kv ready keys=");
  put_uint(kv_count());
  if (*note) {
    put_str(" ");
    put_str(note);
  }
  put_str("\n");
}

// ---- parsing ----
static int word_is(const char *p, size_t len, const char *word) {
  return len == strlen(word) && memcmp(p, word, len) == 0;
}

// Splits `line` at the first space: the command word, then `*rest` (after that space).
static size_t split_word(const char *line, size_t len, const char **rest, size_t *rest_len) {
  size_t n = 0;
  while (n < len && line[n] != ' ') n++;
  *rest = n < len ? line + n + 1 : line + len;
  *rest_len = n < len ? len - n - 1 : 0;
  return n;
}

// A GET/DEL argument: exactly one key. Returns the reason it is unusable, or NULL.
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

// The stop code of `word` (QUIT or one of `extra`), or 0 if it is none of them.
static int stop_code(const char *word, size_t len, const struct kv_stop_command *extra,
                     size_t n_extra) {
  if (word_is(word, len, "QUIT")) return KV_STOP_QUIT;
  for (size_t i = 0; i < n_extra; i++)
    if (word_is(word, len, extra[i].word)) return extra[i].code;
  return 0;
}

// Handles one complete line (without its newline). Returns 0, or the stop code after a
// stop command.
static int handle_line(const char *line, size_t len, const struct kv_stop_command *extra,
                       size_t n_extra) {
  if (len > 0 && line[len - 1] == '\r') len--;  // tolerate \r\n
  const char *arg;
  size_t arg_len;
  size_t cmd_len = split_word(line, len, &arg, &arg_len);
  int has_arg = cmd_len < len;  // a space followed the command word
  int stop = stop_code(line, cmd_len, extra, n_extra);

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
        kv_console_write(e->value, e->value_len);
        put_str("\n");
      } else {
        reply("NOT_FOUND");
      }
    } else if (kv_del(arg, arg_len)) {
      if (kv_tombstones() > TOMBSTONE_LIMIT) {
        const char *err = kv_compact();
        if (err) {  // cannot happen
          put_str("ERR internal: compaction lost data (");
          put_str(err);
          put_str(")\n");
        }
      }
      reply("OK");
    } else {
      reply("NOT_FOUND");
    }
  } else if (has_arg &&
             (word_is(line, cmd_len, "SYNC") || word_is(line, cmd_len, "COUNT") || stop)) {
    reply_err("unexpected argument");
  } else if (word_is(line, cmd_len, "SYNC")) {
    const char *err = kv_disk_sync();
    if (err) reply_err(err);
    else reply("OK");
  } else if (word_is(line, cmd_len, "COUNT")) {
    put_uint(kv_count());
    put_str("\n");
  } else if (stop) {
    reply("BYE");
    return stop;
  } else {
    reply_err("unknown command");
  }
  return 0;
}

int kv_serve(uint8_t (*next_byte)(void), const struct kv_stop_command *extra, size_t n_extra) {
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
    int stop = 0;
    if (overlong) reply_err("line too long");
    else stop = handle_line(line, len, extra, n_extra);
    if (stop) return stop;
    len = 0;
    overlong = 0;
  }
}
