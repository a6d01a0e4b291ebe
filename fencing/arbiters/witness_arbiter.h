#pragma once
// WitnessArbiter: the client of tandem-witness ([fencing] arbiter = "witness"). Each call is
// one authenticated request on a fresh TCP connection, bounded as a whole (resolve, connect,
// write, read) by ArbiterConfig.timeout; no reply in time = Unreachable. A reply that fails
// its MAC or echoes another nonce is never trusted (Unreachable, logged).
#include <chrono>
#include <cstdint>
#include <string>

#include "fencing/arbiter.h"

namespace tandem::fencing {

class WitnessArbiter final : public Arbiter {
 public:
  // Throws std::invalid_argument for a malformed `config.witness` ("HOST:PORT"), an empty
  // vm_id or PSK.
  explicit WitnessArbiter(const ArbiterConfig& config);

  std::string describe() const override;
  Grant acquire(const std::string& node, uint64_t known_epoch) override;
  Grant renew(const std::string& node, uint64_t epoch) override;
  Grant advance(const std::string& node, uint64_t epoch) override;
  void release(const std::string& node, uint64_t epoch) override;

 private:
  Grant call(int op, const std::string& node, uint64_t epoch);

  ArbiterConfig config_;
  std::string host_;
  std::string port_;
  uint64_t last_client_time_ = 0;  // strictly increasing client_time_ms (the witness's replay floor)
};

}  // namespace tandem::fencing
