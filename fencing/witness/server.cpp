#include "fencing/witness/server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <deque>
#include <fmt/format.h>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "fencing/witness/protocol.h"
#include "proto/fencing.pb.h"

namespace tandem::fencing {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

// A lease as the witness runs it: the persisted record plus its expiry on this witness's clock.
struct Lease : WitnessRecord {
  Clock::time_point expiry;   // the holder's lease ends here
  bool from_restart = false;  // expiry was set by a restart, not by a grant
};
using LeaseMap = std::map<std::string, Lease>;

WitnessRecords records_of(const LeaseMap& leases) {
  WitnessRecords records;
  for (const auto& [vm, lease] : leases) records.emplace(vm, static_cast<const WitnessRecord&>(lease));
  return records;
}

// The restart rule: a recorded holder may still hold a lease it renewed just before the
// crash, so it is treated as having renewed at `now`; nobody else gets it for one full ttl.
LeaseMap after_restart(const WitnessRecords& records, Clock::time_point now) {
  LeaseMap leases;
  for (const auto& [vm, record] : records) {
    Lease lease;
    static_cast<WitnessRecord&>(lease) = record;
    if (!lease.holder.empty()) {
      lease.expiry = now + lease.ttl;
      lease.from_restart = true;
    }
    leases.emplace(vm, std::move(lease));
  }
  return leases;
}

// Replay refusal with bounded memory (see witness_server.h).
class NonceCache {
 public:
  explicit NonceCache(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

  // Records the nonce; returns why the request must be refused, if it must.
  std::optional<std::string> admit(const std::string& nonce, const std::string& client, uint64_t client_time) {
    if (seen_.contains(nonce)) return "replayed request (nonce already seen)";
    if (const auto it = floor_.find(client); it != floor_.end() && client_time <= it->second) {
      return fmt::format("replayed or stale request (client_time {} is not newer than {})", client_time, it->second);
    }
    if (order_.size() >= capacity_) {
      auto& oldest = order_.front();
      auto& floor = floor_[oldest.client];
      floor = std::max(floor, oldest.client_time);
      seen_.erase(oldest.nonce);
      order_.pop_front();
    }
    seen_.insert(nonce);
    order_.push_back({nonce, client, client_time});
    return std::nullopt;
  }

 private:
  struct Entry {
    std::string nonce;
    std::string client;
    uint64_t client_time;
  };
  size_t capacity_;
  std::unordered_set<std::string> seen_;
  std::deque<Entry> order_;
  std::unordered_map<std::string, uint64_t> floor_;
};

std::string printable(const std::string& text) {
  std::string out;
  for (char c : text.substr(0, 64)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  return out;
}

}  // namespace

struct WitnessServer::Impl {
  WitnessOptions options;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::mutex mutex;  // leases_ and nonces_ (the io thread is the only writer, tests may read)
  LeaseMap leases;
  NonceCache nonces;
  net::Admission admission;
  net::AcceptBackoff backoff;
  asio::steady_timer accept_pause{io};

  explicit Impl(WitnessOptions o)
      : options(std::move(o)), nonces(options.nonce_capacity), admission(options.admission) {}

  wire::WitnessReply handle(const wire::WitnessRequest& request, Clock::time_point received);
  void accept();
  void serve(std::shared_ptr<tcp::socket> socket, net::Admission::Slot slot);
};

namespace {

wire::WitnessReply make_reply(wire::WitnessOutcome outcome, const Lease& lease, std::string why) {
  wire::WitnessReply reply;
  reply.set_outcome(outcome);
  reply.set_epoch(lease.epoch);
  reply.set_holder(lease.holder);
  reply.set_why(std::move(why));
  return reply;
}

}  // namespace

wire::WitnessReply WitnessServer::Impl::handle(const wire::WitnessRequest& request, Clock::time_point received) {
  std::lock_guard lock(mutex);
  const std::string& vm = request.vm_id();
  const std::string& node = request.node();
  Lease none;
  if (vm.empty() || node.empty()) return make_reply(wire::REFUSED, none, "vm_id and node must not be empty");
  if (request.nonce().size() != witness::kNonceBytes) {
    return make_reply(wire::REFUSED, none, fmt::format("nonce must be {} bytes", witness::kNonceBytes));
  }
  if (request.ttl_ms() == 0 && request.op() != wire::RELEASE) return make_reply(wire::REFUSED, none, "ttl_ms must be > 0");
  if (auto why = nonces.admit(request.nonce(), vm + '\0' + node, request.client_time_ms())) {
    spdlog::warn("vm {} node {}: {}: refused", printable(vm), printable(node), *why);
    return make_reply(wire::REFUSED, none, *why);
  }
  const milliseconds ttl = std::min(milliseconds(request.ttl_ms()), options.max_lease);
  const auto it = leases.find(vm);
  const Lease current = it == leases.end() ? Lease{} : it->second;
  const bool live = !current.holder.empty() && received < current.expiry;

  // Commits `next` for `vm`, on disk first when `durable` (a crash after the reply must not
  // lose it). Throws when the write fails: the connection closes without a reply.
  const auto commit = [&](const Lease& next, bool durable) {
    if (durable) {
      LeaseMap copy = leases;
      copy[vm] = next;
      save_witness_state(options.state_file, records_of(copy));
    }
    leases[vm] = next;
  };
  const auto granted = [&](const Lease& lease, std::string why) {
    auto reply = make_reply(wire::GRANTED, lease, std::move(why));
    reply.set_ttl_ms(static_cast<uint64_t>(ttl.count()));
    return reply;
  };

  switch (request.op()) {
    case wire::ACQUIRE: {
      const uint64_t known = request.epoch();
      if (current.holder == node && known <= current.epoch) {
        Lease next = current;
        next.expiry = received + ttl;
        next.from_restart = false;
        next.ttl = std::max(current.ttl, ttl);
        commit(next, next.ttl != current.ttl);
        spdlog::debug("vm {}: {} renews epoch {} (acquire)", vm, node, next.epoch);
        return granted(next, "renewed");
      }
      if (known < current.replica_floor) {
        // The holder advanced past this node's replica (it went on without it): never grantable.
        spdlog::warn("vm {}: refused {}'s acquire with epoch {}: the epoch was advanced to {} without it", vm, node,
                     known, current.replica_floor);
        return make_reply(wire::REFUSED, current,
                          fmt::format("stale replica: epoch {} < {} (advanced by the primary without this node): "
                                      "resync as a secondary",
                                      known, current.replica_floor));
      }
      if (live) {
        const auto left = std::chrono::duration_cast<milliseconds>(current.expiry - received).count();
        std::string why = current.from_restart
                              ? fmt::format("witness restarted: waiting one lease ttl before a new holder ({} ms "
                                            "left; {} held epoch {})",
                                            left, current.holder, current.epoch)
                              : fmt::format("held by {} under epoch {} for another {} ms", current.holder,
                                            current.epoch, left);
        return make_reply(wire::HELD, current, std::move(why));
      }
      Lease next;
      next.epoch = std::max(current.epoch, known) + 1;
      next.holder = node;
      next.ttl = ttl;
      next.expiry = received + ttl;
      commit(next, true);
      spdlog::info("vm {}: epoch {} granted to {} (previous: epoch {} {})", vm, next.epoch, node, current.epoch,
                   current.holder.empty() ? std::string("released/none") : current.holder + " (lapsed)");
      return granted(next, fmt::format("epoch {} granted", next.epoch));
    }
    case wire::RENEW: {
      const uint64_t epoch = request.epoch();
      if (it == leases.end() || current.epoch == 0) {
        return make_reply(wire::REFUSED, current, fmt::format("no lease was ever granted for vm {}", vm));
      }
      if (epoch < current.epoch) {
        return make_reply(wire::REFUSED, current,
                          fmt::format("fenced: epoch {} granted to {}", current.epoch,
                                      current.holder.empty() ? std::string("(released)") : current.holder));
      }
      if (epoch > current.epoch) {
        return make_reply(wire::REFUSED, current,
                          fmt::format("epoch {} was never granted (newest: {})", epoch, current.epoch));
      }
      if (current.holder != node) {
        return make_reply(wire::REFUSED, current,
                          current.holder.empty()
                              ? fmt::format("the lease under epoch {} was released", epoch)
                              : fmt::format("epoch {} is held by {}", epoch, current.holder));
      }
      Lease next = current;
      next.expiry = received + ttl;
      next.from_restart = false;
      next.ttl = std::max(current.ttl, ttl);
      commit(next, next.ttl != current.ttl);
      return granted(next, "renewed");
    }
    case wire::ADVANCE: {
      const uint64_t epoch = request.epoch();
      if (it != leases.end() && current.holder == node && current.epoch == epoch + 1 &&
          current.replica_floor == epoch + 1) {
        // This node's advance from `epoch` is already done (its reply was lost, the client
        // asks again): answer it again, as a renewal of the new epoch.
        Lease next = current;
        next.expiry = received + ttl;
        next.from_restart = false;
        next.ttl = std::max(current.ttl, ttl);
        commit(next, next.ttl != current.ttl);
        return granted(next, fmt::format("epoch advanced to {} (repeated)", next.epoch));
      }
      if (it == leases.end() || current.epoch == 0 || epoch != current.epoch || current.holder != node) {
        return make_reply(wire::REFUSED, current,
                          current.epoch > epoch
                              ? fmt::format("fenced: epoch {} granted to {}", current.epoch,
                                            current.holder.empty() ? std::string("(released)") : current.holder)
                              : fmt::format("cannot advance: {} does not hold epoch {}", node, epoch));
      }
      // The CAS succeeded: a new epoch for the holder, and no replica of an older one may
      // ever be granted (persisted before the reply, like every new epoch).
      Lease next = current;
      next.epoch = epoch + 1;
      next.replica_floor = next.epoch;
      next.expiry = received + ttl;
      next.from_restart = false;
      next.ttl = std::max(current.ttl, ttl);
      commit(next, true);
      spdlog::info("vm {}: {} advanced epoch {} -> {}: older replicas are refused", vm, node, epoch, next.epoch);
      return granted(next, fmt::format("epoch advanced to {}", next.epoch));
    }
    case wire::RELEASE: {
      if (it == leases.end() || current.epoch != request.epoch() || current.holder != node) {
        return make_reply(wire::REFUSED, current, "not the holder of that epoch");
      }
      Lease next = current;
      next.holder.clear();
      next.expiry = received;
      next.from_restart = false;
      commit(next, true);
      spdlog::info("vm {}: {} released epoch {}", vm, node, current.epoch);
      auto reply = make_reply(wire::GRANTED, next, "released");
      return reply;
    }
    default:
      return make_reply(wire::REFUSED, current, "unknown op");
  }
}

void WitnessServer::Impl::accept() {
  acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) {
      // Out of descriptors and the like: pause (growing) instead of spinning on accept.
      const auto pause = backoff.next();
      spdlog::warn("accept: {} (next try in {} ms)", ec.message(), pause.count());
      accept_pause.expires_after(pause);
      accept_pause.async_wait([this](boost::system::error_code wait_ec) {
        if (!wait_ec) accept();
      });
      return;
    }
    backoff.reset();
    boost::system::error_code peer_ec;
    const auto remote = socket.remote_endpoint(peer_ec);
    std::string why;
    auto slot = peer_ec ? std::nullopt : admission.admit(remote.address(), why);
    if (slot) {
      serve(std::make_shared<tcp::socket>(std::move(socket)), std::move(*slot));
    } else {
      spdlog::warn("refusing the connection from {}: {}", peer_ec ? "?" : remote.address().to_string(),
                   peer_ec ? peer_ec.message() : why);
      socket.close(peer_ec);
    }
    accept();
  });
}

void WitnessServer::Impl::serve(std::shared_ptr<tcp::socket> socket, net::Admission::Slot slot) {
  struct Exchange {
    net::Admission::Slot slot;  // freed with the exchange
    std::shared_ptr<tcp::socket> socket;
    asio::steady_timer deadline;
    std::array<uint8_t, witness::kHeaderBytes> header{};
    std::string frame;  // body | MAC, then the reply
    Clock::time_point received;
    std::string peer;
    void close() {
      boost::system::error_code ignored;
      slot.release();
      deadline.cancel();
      socket->shutdown(tcp::socket::shutdown_both, ignored);
      socket->close(ignored);
    }
  };
  auto x = std::make_shared<Exchange>(Exchange{std::move(slot), socket, asio::steady_timer(io), {}, {}, {}, {}});
  boost::system::error_code peer_ec;
  const auto remote = socket->remote_endpoint(peer_ec);
  x->peer = peer_ec ? "?" : fmt::format("{}:{}", remote.address().to_string(), remote.port());
  // A slow or silent client cannot hold a connection open past io_timeout.
  x->deadline.expires_after(options.io_timeout);
  x->deadline.async_wait([x](boost::system::error_code ec) {
    if (ec) return;
    spdlog::warn("{}: no complete request within the timeout; closing", x->peer);
    boost::system::error_code ignored;
    x->socket->close(ignored);
  });
  asio::async_read(*socket, asio::buffer(x->header), [this, x](boost::system::error_code ec, size_t) {
    if (ec) return x->close();
    const uint32_t size = witness::body_length(x->header);
    if (size == 0) {
      spdlog::warn("{}: refused a frame with length {} (limit {}); closing", x->peer,
                   (uint32_t{x->header[0]} << 24) | (uint32_t{x->header[1]} << 16) | (uint32_t{x->header[2]} << 8) |
                       x->header[3],
                   witness::kMaxWitnessBody);
      return x->close();
    }
    x->frame.resize(size + witness::kMacBytes);
    asio::async_read(*x->socket, asio::buffer(x->frame), [this, x, size](boost::system::error_code ec, size_t) {
      if (ec) return x->close();
      x->received = Clock::now();
      const std::string_view body(x->frame.data(), size);
      const std::string_view mac(x->frame.data() + size, witness::kMacBytes);
      if (!witness::mac_matches(options.psk, witness::Direction::Request, body, mac)) {
        spdlog::warn("{}: request with a bad MAC (forged, or a different PSK); closing", x->peer);
        return x->close();
      }
      wire::WitnessRequest request;
      if (!request.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
        spdlog::warn("{}: authenticated but unparsable request; closing", x->peer);
        return x->close();
      }
      wire::WitnessReply reply;
      try {
        reply = handle(request, x->received);
      } catch (const std::exception& e) {
        spdlog::error("vm {}: cannot persist the state, no grant: {}", printable(request.vm_id()), e.what());
        return x->close();
      }
      reply.set_nonce(request.nonce());
      x->frame = witness::seal(options.psk, witness::Direction::Reply, reply.SerializeAsString());
      asio::async_write(*x->socket, asio::buffer(x->frame), [x](boost::system::error_code, size_t) { x->close(); });
    });
  });
}

WitnessServer::WitnessServer(WitnessOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  auto& o = impl_->options;
  if (o.state_file.empty()) throw std::invalid_argument("witness: a state file is required");
  if (o.psk.empty()) throw std::invalid_argument("witness: a PSK is required");
  const WitnessRecords records = load_witness_state(o.state_file);
  save_witness_state(o.state_file, records);  // proves the file and its directory are writable
  impl_->leases = after_restart(records, Clock::now());
  for (const auto& [vm, lease] : impl_->leases) {
    if (!lease.holder.empty()) {
      spdlog::info("vm {}: epoch {} held by {} before the restart; no new holder for {} ms", vm, lease.epoch,
                   lease.holder, lease.ttl.count());
    }
  }
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(o.host, ec);
  if (ec) throw std::invalid_argument(fmt::format("witness: bad listen address \"{}\": {}", o.host, ec.message()));
  const tcp::endpoint endpoint(address, o.port);
  impl_->acceptor.open(endpoint.protocol());
  impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  impl_->acceptor.bind(endpoint, ec);
  if (ec) throw std::runtime_error(fmt::format("witness: cannot listen on {}:{}: {}", o.host, o.port, ec.message()));
  impl_->acceptor.listen();
  impl_->accept();
}

WitnessServer::~WitnessServer() { stop(); }

uint16_t WitnessServer::port() const { return impl_->acceptor.local_endpoint().port(); }

std::string WitnessServer::endpoint() const {
  const auto address = impl_->acceptor.local_endpoint().address();
  return address.is_v6() ? fmt::format("[{}]:{}", address.to_string(), port())
                         : fmt::format("{}:{}", address.to_string(), port());
}

void WitnessServer::run() { impl_->io.run(); }

void WitnessServer::stop() { impl_->io.stop(); }

}  // namespace tandem::fencing
