// The witness protocol (fencing/witness/: protocol, server, state): a real
// WitnessServer runs in this process on 127.0.0.1 (its state file in a scratch directory)
// and each input is one connection to it. Input: u8 mode, then
//   mode 0: a WitnessRequest body, sealed here with the PSK (header | body | MAC): the server
//           parses and decides on it; the reply's frame is then checked as WitnessArbiter
//           checks it (length, MAC, WitnessReply);
//   mode 1: raw bytes on the connection (header limits, truncation, bad MACs);
//   mode 2: a witness state file (load_witness_state).
// Other modes wrap around.
#include <array>
#include <cstdlib>
#include <fstream>
#include <spdlog/spdlog.h>

#include <string>
#include <thread>

#include "fencing/witness/protocol.h"
#include "fencing/witness/server.h"
#include "fencing/witness/state.h"
#include "fuzz/fuzz_support.h"
#include "fuzz/loopback.h"
#include "proto/fencing.pb.h"

namespace {

namespace witness = tandem::fencing::witness;
constexpr std::string_view kPsk = "fuzz-witness-psk-0123456789abcdef";


struct Server {
  tandem::fencing::WitnessServer server;
  std::thread thread;
  explicit Server(const std::string& dir) : server(options(dir)), thread([this] { server.run(); }) {}
  ~Server() {
    server.stop();
    thread.join();
  }
  static tandem::fencing::WitnessOptions options(const std::string& dir) {
    tandem::fencing::WitnessOptions o;
    o.state_file = dir + "/witness.state";
    o.psk = std::string(kPsk);
    o.nonce_capacity = 1024;
    return o;
  }
};

void check_reply(const std::string& frame) {
  if (frame.size() < witness::kHeaderBytes) return;
  std::array<uint8_t, witness::kHeaderBytes> header{};
  std::memcpy(header.data(), frame.data(), header.size());
  const uint32_t size = witness::body_length(header);
  if (size == 0 || frame.size() != witness::kHeaderBytes + size + witness::kMacBytes) return;
  const std::string_view body(frame.data() + witness::kHeaderBytes, size);
  if (!witness::mac_matches(kPsk, witness::Direction::Reply, body,
                            std::string_view(frame).substr(witness::kHeaderBytes + size))) {
    __builtin_trap();  // the server's own reply must verify
  }
  tandem::fencing::wire::WitnessReply reply;
  if (!reply.ParseFromArray(body.data(), static_cast<int>(body.size()))) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool quiet = (spdlog::set_level(spdlog::level::off), true);  // a refusal per input
  (void)quiet;
  static const tandem::fuzz::ScratchDir dir("tandem-fuzz-witness");  // removed at exit, after the server
  static Server server(dir.path());
  static tandem::fuzz::MemFile state_file("fuzz-witness-state");
  tandem::fuzz::Cursor in(data, size);
  const uint8_t mode = in.take<uint8_t>() % 3;
  const std::string_view rest = in.rest();
  if (mode == 2) {
    state_file.set(reinterpret_cast<const uint8_t*>(rest.data()), rest.size());
    try {
      (void)tandem::fencing::load_witness_state(state_file.path());
    } catch (const std::runtime_error&) {  // StateFileError included
    }
    return 0;
  }
  std::string frame;
  if (mode == 0) {
    if (rest.empty() || rest.size() > witness::kMaxWitnessBody) return 0;
    frame = witness::seal(kPsk, witness::Direction::Request, rest);
  } else {
    frame = std::string(rest);
  }
  tandem::fuzz::LoopbackClient client(server.server.port());
  client.send(frame);
  client.half_close();
  const std::string reply = client.read_to_eof();
  if (mode == 0) check_reply(reply);
  return 0;
}
