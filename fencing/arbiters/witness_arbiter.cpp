#include "fencing/arbiters/witness_arbiter.h"

#include <spdlog/spdlog.h>

#include <boost/asio.hpp>
#include <fmt/format.h>
#include <optional>
#include <stdexcept>

#include "fencing/witness/protocol.h"
#include "net/endpoint.h"
#include "proto/fencing.pb.h"

namespace tandem::fencing {

namespace asio = boost::asio;
using asio::ip::tcp;

WitnessArbiter::WitnessArbiter(const ArbiterConfig& config) : config_(config) {
  try {
    const net::Endpoint endpoint = net::parse_endpoint(config.witness, {.numeric_host = false});
    host_ = endpoint.host;
    port_ = std::to_string(endpoint.port);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("witness = \"" + config.witness + "\": " + e.what());
  }
  if (config.vm_id.empty()) throw std::invalid_argument("the witness arbiter needs the VM id ([vm] id)");
  if (config.psk.empty()) throw std::invalid_argument("the witness arbiter needs the pair PSK ([pair] psk_file)");
}

std::string WitnessArbiter::describe() const { return "witness " + config_.witness; }

Grant WitnessArbiter::acquire(const std::string& node, uint64_t known_epoch) {
  return call(wire::ACQUIRE, node, known_epoch);
}

Grant WitnessArbiter::renew(const std::string& node, uint64_t epoch) { return call(wire::RENEW, node, epoch); }

Grant WitnessArbiter::advance(const std::string& node, uint64_t epoch) { return call(wire::ADVANCE, node, epoch); }

void WitnessArbiter::release(const std::string& node, uint64_t epoch) {
  const Grant grant = call(wire::RELEASE, node, epoch);
  if (!grant.granted()) spdlog::warn("witness release of epoch {}: {} ({})", epoch, to_string(grant.outcome), grant.why);
}

Grant WitnessArbiter::call(int op, const std::string& node, uint64_t epoch) {
  Grant result;
  const auto now_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  last_client_time_ = std::max(last_client_time_ + 1, now_ms);

  wire::WitnessRequest request;
  request.set_vm_id(config_.vm_id);
  request.set_node(node);
  request.set_op(static_cast<wire::WitnessOp>(op));
  request.set_epoch(epoch);
  request.set_nonce(witness::random_nonce());
  request.set_client_time_ms(last_client_time_);
  request.set_ttl_ms(static_cast<uint64_t>(std::max<int64_t>(config_.lease.count(), 1)));
  const std::string frame = witness::seal(config_.psk, witness::Direction::Request, request.SerializeAsString());

  // The whole exchange runs on a private io_context for at most `timeout`; whatever is
  // still pending then is abandoned with the context.
  asio::io_context io;
  tcp::resolver resolver(io);
  tcp::socket socket(io);
  std::array<uint8_t, witness::kHeaderBytes> header{};
  std::string reply_bytes;
  std::optional<std::string> failure;  // set = the exchange ended without a usable reply
  bool done = false;
  const auto fail = [&](std::string why) {
    if (!done) failure = std::move(why);
    done = true;
    io.stop();
  };

  const auto on_connected = [&](boost::system::error_code ec) {
    if (ec) return fail("cannot connect: " + ec.message());
    asio::async_write(socket, asio::buffer(frame), [&](boost::system::error_code ec, size_t) {
      if (ec) return fail("cannot send: " + ec.message());
      asio::async_read(socket, asio::buffer(header), [&](boost::system::error_code ec, size_t) {
        if (ec) {
          return fail(ec == asio::error::eof ? "the witness closed the connection without a reply (wrong PSK?)"
                                             : "no reply: " + ec.message());
        }
        const uint32_t size = witness::body_length(header);
        if (size == 0) return fail("reply with a bad length");
        reply_bytes.resize(size + witness::kMacBytes);
        asio::async_read(socket, asio::buffer(reply_bytes), [&](boost::system::error_code ec, size_t) {
          if (ec) return fail("truncated reply: " + ec.message());
          done = true;
          io.stop();
        });
      });
    });
  };
  // A literal address skips the resolver: getaddrinfo cannot be cancelled, so a hanging DNS
  // lookup for a host name may hold the call past the timeout (use an address in production).
  boost::system::error_code parse_error;
  const auto address = asio::ip::make_address(host_, parse_error);
  if (!parse_error) {
    socket.async_connect(tcp::endpoint(address, static_cast<uint16_t>(std::stoul(port_))), on_connected);
  } else {
    resolver.async_resolve(host_, port_, [&](boost::system::error_code ec, tcp::resolver::results_type endpoints) {
      if (ec) return fail("cannot resolve " + host_ + ": " + ec.message());
      asio::async_connect(socket, endpoints,
                          [&](boost::system::error_code ec, const tcp::endpoint&) { on_connected(ec); });
    });
  }
  io.run_for(config_.timeout);
  if (!done) failure = fmt::format("no reply within {} ms", config_.timeout.count());
  if (failure) {
    result.outcome = Grant::Outcome::Unreachable;
    result.why = "witness " + config_.witness + ": " + *failure;
    return result;
  }

  const size_t body_size = reply_bytes.size() - witness::kMacBytes;
  const std::string_view body(reply_bytes.data(), body_size);
  const std::string_view mac(reply_bytes.data() + body_size, witness::kMacBytes);
  wire::WitnessReply reply;
  if (!witness::mac_matches(config_.psk, witness::Direction::Reply, body, mac)) {
    spdlog::warn("witness {}: a reply with a bad MAC (forged, or a different PSK); ignored", config_.witness);
    result.outcome = Grant::Outcome::Unreachable;
    result.why = "witness " + config_.witness + ": reply failed authentication";
    return result;
  }
  if (!reply.ParseFromArray(body.data(), static_cast<int>(body.size())) || reply.nonce() != request.nonce()) {
    spdlog::warn("witness {}: a reply for another request (nonce mismatch); ignored", config_.witness);
    result.outcome = Grant::Outcome::Unreachable;
    result.why = "witness " + config_.witness + ": reply for another request (replayed?)";
    return result;
  }
  switch (reply.outcome()) {
    case wire::GRANTED: result.outcome = Grant::Outcome::Granted; break;
    case wire::HELD: result.outcome = Grant::Outcome::Held; break;
    case wire::REFUSED: result.outcome = Grant::Outcome::Refused; break;
    default:
      result.outcome = Grant::Outcome::Unreachable;
      result.why = "witness " + config_.witness + ": reply without an outcome";
      return result;
  }
  result.epoch = reply.epoch();
  result.ttl = std::chrono::milliseconds(reply.ttl_ms());
  result.holder = reply.holder();
  result.why = reply.why();
  // A grant must be usable as a fencing token: a lease of some length, an epoch >= the one we
  // asked with (the same one for a renewal).
  const bool lease_op = op == wire::ACQUIRE || op == wire::RENEW || op == wire::ADVANCE;
  if (result.granted() && lease_op &&
      (result.ttl.count() == 0 || result.epoch == 0 || result.epoch < epoch ||
       (op == wire::RENEW && result.epoch != epoch) || (op == wire::ADVANCE && result.epoch != epoch + 1))) {
    result.outcome = Grant::Outcome::Unreachable;
    result.why = "witness " + config_.witness + ": inconsistent grant (ttl 0 or epoch 0)";
  }
  return result;
}

}  // namespace tandem::fencing
