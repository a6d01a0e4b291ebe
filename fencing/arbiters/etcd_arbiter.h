#pragma once
// fencing::EtcdArbiter: the lease is an etcd lease, the epoch an etcd revision won by
// compare-and-swap. Talks to etcd's v3 JSON gateway (POST /v3/..., served by etcd >= 3.4)
// over plain HTTP/1.1 with Boost.Beast, so tandemd needs no gRPC stack.
//
// Key layout: one key per VM, `/tandem/<vm_id>/leader`, value `{"node":..,"epoch":..}`,
// attached to the holder's lease. The key's create_revision is the epoch: it is set by the
// transaction "if the key does not exist, put it", and etcd revisions only ever grow, so a
// later winner always gets a higher epoch. When the lease lapses etcd deletes the key and
// the next acquire can win. See docs/fencing.md (## etcd arbiter) for the safety argument.
//
// Every call is bounded by ArbiterConfig::timeout (one deadline for all the HTTP exchanges
// of that call). Errors never throw out of acquire/renew/release: an unreachable etcd or a
// reply that is not what etcd's gateway sends becomes Outcome::Unreachable with a reason.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fencing/arbiter.h"
#include "net/encoding.h"

namespace tandem::fencing {

// etcd counts lease TTLs in whole seconds: lease_ms is rounded UP (a lease never shorter
// than asked for), and at least 1 s. etcd may raise it further (its minimum TTL is
// 1.5 x election timeout, 2 s with default settings); the Grant reports the TTL etcd chose.
int64_t etcd_ttl_seconds(std::chrono::milliseconds lease);

// One etcd client URL, "http://host:port" (https is not supported: use a local proxy).
struct EtcdEndpoint {
  std::string host;
  std::string port;
  std::string url() const { return "http://" + host + ":" + port; }
};

// Parses `etcd = "http://a:2379,http://b:2379"`. Throws std::invalid_argument naming the
// offending entry.
std::vector<EtcdEndpoint> parse_etcd_endpoints(const std::string& spec);

// The key that holds the leader record of `vm_id`.
std::string etcd_leader_key(const std::string& vm_id);

// Standard base64 (RFC 4648, with padding) as the gateway uses for bytes fields (OpenSSL's,
// through net/encoding.h); decoding gives nullopt for anything but valid padded base64.
using net::base64_decode;
using net::base64_encode;

class EtcdArbiter final : public Arbiter {
 public:
  // Throws std::invalid_argument for a missing vm_id, an empty or malformed `etcd` setting
  // or a non-positive lease/timeout. Does not contact etcd.
  explicit EtcdArbiter(const ArbiterConfig& config);
  ~EtcdArbiter() override;

  std::string describe() const override;
  Grant acquire(const std::string& node, uint64_t known_epoch) override;
  Grant renew(const std::string& node, uint64_t epoch) override;
  Grant advance(const std::string& node, uint64_t epoch) override;
  void release(const std::string& node, uint64_t epoch) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::fencing
