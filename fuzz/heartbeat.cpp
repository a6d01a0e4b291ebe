// The second-path heartbeat (fencing/detector/): a real FailureDetector listens on
// 127.0.0.1 in this process; each input is one connection to it, after the listener's
// 32-byte challenge. Input: u8 mode, then
//   mode 0: heartbeats as 17-byte bodies (counter u64 | epoch u64 | role u8), each framed
//           here ("THB1" | body | HMAC over the challenge, as a real peer computes it), so
//           the counter and role checks are reached;
//   mode 1: raw bytes (magic, MAC and length checks).
// The format is the one documented in fencing/detector.h.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <spdlog/spdlog.h>

#include <string>

#include "fencing/detector/detector.h"
#include "fuzz/fuzz_support.h"
#include "fuzz/loopback.h"
#include "net/hkdf.h"

namespace {

constexpr std::string_view kPsk = "fuzz-heartbeat-psk-0123456789abcdef";
constexpr std::string_view kVm = "fuzz-vm";

std::string frame(const std::string& challenge, std::string_view body) {
  std::string input = "tandem-hb-v1";
  input += challenge;
  input += kVm;
  input += body;
  // The detector's key: the PSK's heartbeat purpose key for this vm (net/hkdf.h).
  static const std::string key = tandem::net::derive_purpose_key(kPsk, tandem::net::KeyPurpose::kHeartbeat, kVm);
  unsigned char mac[32];
  unsigned int n = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const uint8_t*>(input.data()),
            input.size(), mac, &n)) {
    std::abort();
  }
  return "THB1" + std::string(body) + std::string(reinterpret_cast<const char*>(mac), n);
}

tandem::fencing::FailureDetector& detector() {
  static tandem::fencing::FailureDetector d([] {
    spdlog::set_level(spdlog::level::off);  // a refusal per input
    tandem::fencing::DetectorConfig c;
    c.vm_id = std::string(kVm);
    c.psk = std::string(kPsk);
    c.second.listen = "127.0.0.1:0";
    c.second.peer = "127.0.0.1:1";  // nobody: our own sending side just retries
    c.second.timing.interval = std::chrono::milliseconds(1000);
    return c;
  }());
  static bool started = (d.start(), true);
  (void)started;
  return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& d = detector();
  tandem::fuzz::Cursor in(data, size);
  const bool sealed = (in.take<uint8_t>() & 1) == 0;
  tandem::fuzz::LoopbackClient client(d.bound_port());
  const std::string challenge = client.read(32);
  if (challenge.size() != 32) return 0;
  if (sealed) {
    while (!in.empty()) {
      const std::string_view body = in.bytes(17);
      if (body.size() < 17 || !client.send(frame(challenge, body))) break;
    }
  } else {
    client.send(in.rest());
  }
  client.half_close();
  (void)client.read_to_eof();
  return 0;
}
