#pragma once
// WitnessServer: the lease authority behind tandem-witness. One witness serves many pairs:
// it keeps one lease per vm_id {epoch, holder, expiry} and answers WitnessArbiter requests
// (fencing/witness/protocol.h) over TCP, one request per connection.
//
// Rules (docs/fencing.md, ## Arbiters):
// - ACQUIRE by the holder renews; by anyone else it is granted only when no live lease
//   exists, under max(epoch, known_epoch) + 1. Expiry is counted from the request's receipt
//   on the witness's steady clock.
// - RENEW under an older epoch than the record's is refused: "fenced: epoch N granted to X".
// - Every grant that bumps an epoch (and every release) is written to the state file
//   (write temp, fsync, rename, fsync dir) before the reply leaves, so a restarted witness
//   never grants an epoch twice.
// - After a restart the witness treats each recorded holder as if it had just renewed: no
//   new holder is granted before one full lease ttl (the longest granted under the current
//   epoch, persisted) has passed, because the old holder may still believe it holds the lease.
// - Requests must carry a valid HMAC (the pair PSK); a bad MAC, a malformed or oversize frame
//   closes the connection (logged). A nonce seen before is refused ("replayed request"): the
//   witness remembers the last `nonce_capacity` nonces, and for each (vm_id, node) the newest
//   client_time among the nonces it has forgotten; a request no newer than that is refused
//   too, so a capture cannot be replayed after its nonce has been evicted. (This memory does
//   not survive a restart: see docs/fencing.md.)
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "net/admission.h"

#include "fencing/witness/state.h"  // StateFileError

namespace tandem::fencing {

struct WitnessOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;                             // 0 = any free port (see port())
  std::string state_file;                        // required
  std::string psk;                               // required, the pairs' pre-shared key
  std::chrono::milliseconds max_lease{30000};    // longer ttl requests are cut to this
  std::chrono::milliseconds io_timeout{5000};    // bound on one connection's life
  size_t nonce_capacity = 65536;                 // nonces remembered for replay refusal
  // Connections at once (a connection is unauthenticated for all of its short life): per
  // address and in all, and an optional allow-list of client addresses (net/admission.h).
  net::AdmissionLimits admission{64, 8, {}};
};

class WitnessServer {
 public:
  // Loads the state file (throws StateFileError), rewrites it to prove it is writable and
  // binds the listener (throws std::runtime_error naming the problem).
  explicit WitnessServer(WitnessOptions options);
  ~WitnessServer();
  WitnessServer(const WitnessServer&) = delete;
  WitnessServer& operator=(const WitnessServer&) = delete;

  uint16_t port() const;
  std::string endpoint() const;  // "HOST:PORT" with the real port

  void run();   // serves until stop(); call from one thread
  void stop();  // any thread

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::fencing
