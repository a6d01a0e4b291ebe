// EtcdArbiter: etcd's v3 JSON gateway over HTTP/1.1 (Boost.Beast), one deadline per call.
// Over 600 lines on purpose: one client of one protocol (HTTP/1.1 framing, the JSON
// gateway's base64 keys, the lease and compare-and-swap transactions) that reads best whole;
// its TLS and auth (issue 20) land here too.
#include "fencing/arbiters/etcd_arbiter.h"

#include "net/endpoint.h"

#include <spdlog/spdlog.h>

// GCC 12 with sanitizers reports a false -Wmaybe-uninitialized inside Beast's parser.
#pragma GCC diagnostic push
#if !defined(__clang__)  // clang (the fuzz build) has no such warning group
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#pragma GCC diagnostic pop
#include <charconv>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <utility>

namespace tandem::fencing {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

int64_t etcd_ttl_seconds(std::chrono::milliseconds lease) {
  const int64_t ms = std::max<int64_t>(lease.count(), 1);
  return (ms + 999) / 1000;
}

std::vector<EtcdEndpoint> parse_etcd_endpoints(const std::string& spec) {
  std::vector<EtcdEndpoint> endpoints;
  size_t start = 0;
  while (start <= spec.size()) {
    size_t comma = spec.find(',', start);
    if (comma == std::string::npos) comma = spec.size();
    std::string entry = spec.substr(start, comma - start);
    start = comma + 1;
    while (!entry.empty() && entry.front() == ' ') entry.erase(entry.begin());
    while (!entry.empty() && entry.back() == ' ') entry.pop_back();
    const std::string bad = "etcd endpoint \"" + entry + "\": ";
    if (entry.empty()) throw std::invalid_argument("etcd: empty endpoint in \"" + spec + "\"");
    if (entry.rfind("https://", 0) == 0)
      throw std::invalid_argument(bad + "https is not supported (use http://, e.g. through a local TLS proxy)");
    if (entry.rfind("http://", 0) != 0) throw std::invalid_argument(bad + "expected http://HOST:PORT");
    std::string rest = entry.substr(7);
    if (!rest.empty() && rest.back() == '/') rest.pop_back();
    if (rest.find('/') != std::string::npos) throw std::invalid_argument(bad + "no path expected after HOST:PORT");
    EtcdEndpoint endpoint;
    try {
      const net::Endpoint parsed = net::parse_endpoint(rest, {.numeric_host = false});
      endpoint.host = parsed.host;
      endpoint.port = std::to_string(parsed.port);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(bad + "expected http://HOST:PORT: " + e.what());
    }
    endpoints.push_back(std::move(endpoint));
  }
  return endpoints;
}

std::string etcd_leader_key(const std::string& vm_id) { return "/tandem/" + vm_id + "/leader"; }


namespace {

// Why a call stopped early; becomes the Grant's outcome and why.
struct Failure {
  Grant::Outcome outcome;
  std::string why;
};

[[noreturn]] void malformed(const std::string& what) {
  throw Failure{Grant::Outcome::Unreachable, "malformed reply from etcd: " + what};
}

// Up to 60 printable characters of a hostile reply, for the log line.
std::string snippet(const std::string& text) {
  std::string out;
  for (char c : text.substr(0, 60)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return text.size() > 60 ? out + "..." : out;
}

// proto3 JSON: int64 fields arrive as strings, absent means 0.
int64_t int_field(const json& object, const char* name) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    int64_t value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec == std::errc{} && end == s.data() + s.size() && !s.empty()) return value;
  }
  malformed(std::string("field \"") + name + "\" is not an integer: " + snippet(it->dump()));
}

const json& object_field(const json& object, const char* name) {
  const auto it = object.find(name);
  if (it == object.end() || !it->is_object()) malformed(std::string("no object \"") + name + "\"");
  return *it;
}

// Real etcd stamps every reply with the store's revision; a reply without it is not etcd's.
int64_t header_revision(const json& reply) {
  const int64_t revision = int_field(object_field(reply, "header"), "revision");
  if (revision <= 0) malformed("header.revision missing or not positive");
  return revision;
}

// The leader key as etcd holds it.
struct LeaderRecord {
  std::string node;          // "" when the value is not a leader record (written by hand?)
  int64_t create_revision;   // the epoch
  int64_t lease;             // 0 = no lease attached: it never lapses
};

// gRPC status codes (etcd's gateway reports them in "code"): the ones a retry may cure.
bool transient_code(int64_t code) {
  return code == 1 || code == 2 || code == 4 || code == 8 || code == 10 || code == 13 || code == 14;
}

}  // namespace

struct EtcdArbiter::Impl {
  ArbiterConfig config;
  std::vector<EtcdEndpoint> endpoints;
  size_t current = 0;  // the endpoint in use; moves on after a failure
  std::string key;
  std::string key64;
  std::string floor_key;    // /tandem/<vm_id>/floor: written by advance(); its mod_revision is the
  std::string floor_key64;  // replica floor (an acquire with a known epoch below it is refused)

  asio::io_context io;
  tcp::resolver resolver{io};
  tcp::socket socket{io};

  // The lease this object won last, so renew/release need no lookup.
  int64_t lease_id = 0;
  uint64_t lease_epoch = 0;
  std::string lease_node;

  explicit Impl(const ArbiterConfig& c)
      : config(c), endpoints(parse_etcd_endpoints(c.etcd)), key(etcd_leader_key(c.vm_id)), key64(base64_encode(key)),
        floor_key(fmt::format("/tandem/{}/floor", c.vm_id)), floor_key64(base64_encode(floor_key)) {}

  const EtcdEndpoint& endpoint() const { return endpoints[current]; }
  std::string where() const { return "etcd " + endpoint().url(); }

  void close() {
    boost::system::error_code ignored;
    socket.close(ignored);
  }

  void next_endpoint() {
    close();
    current = (current + 1) % endpoints.size();
  }

  // Runs the started operations until `done` or the deadline; on the deadline cancels them
  // (closing the socket) and runs their handlers, which the cancel has made ready. False =
  // timed out. A DNS lookup cannot be interrupted (getaddrinfo blocks its helper thread):
  // it is abandoned, not waited for (see resolve()).
  // `owned` = the handlers own their state (a lookup): they need not have run on return.
  bool run_until(Clock::time_point deadline, const bool& done, bool owned = false) {
    io.restart();
    while (!done && io.run_one_until(deadline) > 0) {
    }
    if (done) return true;
    resolver.cancel();
    close();
    // The cancelled socket handlers complete at once (operation_aborted, not a result); they
    // refer to the caller's stack, so they must have run before we return.
    io.restart();
    io.poll();
    while (!done && !owned) {
      io.restart();
      io.run_one_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  std::string timeout_text() const { return "no answer within " + std::to_string(config.timeout.count()) + " ms"; }

  // The addresses of the current endpoint. A literal address needs no lookup; a host name
  // is looked up with state owned by the handler, so a lookup that outlives the deadline
  // completes harmlessly later.
  struct Lookup {
    bool done = false;
    bool abandoned = false;
    boost::system::error_code ec;
    tcp::resolver::results_type addresses;
  };
  std::optional<std::vector<tcp::endpoint>> resolve(Clock::time_point deadline, std::string& error) {
    const uint16_t port = uint16_t(std::stoi(endpoint().port));
    boost::system::error_code ec;
    const auto literal = asio::ip::make_address(endpoint().host, ec);
    if (!ec) return std::vector<tcp::endpoint>{tcp::endpoint(literal, port)};
    auto lookup = std::make_shared<Lookup>();
    resolver.async_resolve(endpoint().host, endpoint().port,
                           [lookup](boost::system::error_code e, tcp::resolver::results_type addresses) {
                             if (lookup->abandoned) return;
                             lookup->ec = e;
                             lookup->addresses = std::move(addresses);
                             lookup->done = true;
                           });
    if (!run_until(deadline, lookup->done, /*owned=*/true)) {
      lookup->abandoned = true;
      error = "no DNS answer for " + endpoint().host + " within " + std::to_string(config.timeout.count()) + " ms";
      return std::nullopt;
    }
    if (lookup->ec) {
      error = lookup->ec.message();
      return std::nullopt;
    }
    return std::vector<tcp::endpoint>(lookup->addresses.begin(), lookup->addresses.end());
  }

  // Connects to the first endpoint that answers, starting with the current one.
  void connect(Clock::time_point deadline) {
    std::string errors;
    for (size_t tried = 0; tried < endpoints.size(); ++tried) {
      if (Clock::now() >= deadline) break;
      std::string error;
      if (const auto addresses = resolve(deadline, error)) {
        bool done = false;
        boost::system::error_code result;
        asio::async_connect(socket, *addresses, [&](boost::system::error_code ec, const tcp::endpoint&) {
          result = ec;
          done = true;
        });
        const bool finished = run_until(deadline, done);
        if (finished && !result) return;
        error = finished ? result.message() : timeout_text();
      }
      errors += (errors.empty() ? "" : "; ") + endpoint().url() + ": " + error;
      next_endpoint();
    }
    if (errors.empty()) errors = timeout_text();
    throw Failure{Grant::Outcome::Unreachable, "etcd unreachable (" + errors + ")"};
  }

  // One POST; returns the JSON object etcd answered. `stream` = a streaming gateway method
  // (lease keepalive): the body is newline-separated {"result":...} / {"error":...} objects.
  json post(const std::string& path, const json& request, Clock::time_point deadline, bool stream = false) {
    const std::string payload = request.dump();
    for (int attempt = 0;; ++attempt) {
      const bool reused = socket.is_open();
      if (!reused) connect(deadline);

      http::request<http::string_body> req{http::verb::post, path, 11};
      req.set(http::field::host, endpoint().host + ":" + endpoint().port);
      req.set(http::field::content_type, "application/json");
      req.keep_alive(true);
      req.body() = payload;
      req.prepare_payload();

      boost::beast::flat_buffer buffer;
      http::response_parser<http::string_body> parser;
      parser.body_limit(1 << 20);  // a leader record is tiny: anything this big is not etcd
      bool done = false;
      boost::system::error_code result;
      http::async_write(socket, req, [&](boost::system::error_code ec, size_t) {
        if (ec) {
          result = ec;
          done = true;
          return;
        }
        http::async_read(socket, buffer, parser, [&](boost::system::error_code ec2, size_t) {
          result = ec2;
          done = true;
        });
      });
      const bool finished = run_until(deadline, done);
      if (finished && !result) {
        auto& reply = parser.get();
        if (!reply.keep_alive()) close();
        return interpret(path, reply.result_int(), reply.reason(), reply.body(), stream);
      }
      close();
      // An idle keep-alive connection the server has since closed fails before any byte of
      // a reply: that is not etcd being down, so reconnect once.
      if (finished && reused && attempt == 0 && !parser.got_some()) continue;
      const std::string what = finished ? result.message() : timeout_text();
      const std::string at = where();
      next_endpoint();
      throw Failure{Grant::Outcome::Unreachable, at + " POST " + path + ": " + what};
    }
  }

  json interpret(const std::string& path, unsigned status, boost::beast::string_view reason, const std::string& body,
                 bool stream) {
    std::string text = body;
    if (stream) {
      const size_t start = text.find_first_not_of("\r\n ");
      text = start == std::string::npos ? "" : text.substr(start, text.find('\n', start) - start);
    }
    json reply = json::parse(text, nullptr, false);
    if (reply.is_discarded() || !reply.is_object()) {
      if (status == 404)
        throw Failure{Grant::Outcome::Refused, where() + " has no " + path +
                                                   " (HTTP 404): etcd >= 3.4 with its v3 JSON gateway is needed"};
      if (status != 200)
        throw Failure{Grant::Outcome::Unreachable,
                      where() + " POST " + path + ": HTTP " + std::to_string(status) + " " + snippet(std::string(reason))};
      malformed(path + " answered with no JSON object: \"" + snippet(body) + "\"");
    }
    // A gateway error: {"error": "...", "code": N, "message": "..."}, or in a stream
    // {"error": {"grpc_code": N, "message": "..."}}.
    const json* error = nullptr;
    if (reply.contains("error")) error = &reply["error"];
    if (status != 200 || error) {
      int64_t code = 0;  // 0 = no gRPC code given: judged by the HTTP status below
      std::string message = "HTTP " + std::to_string(status);
      if (error && error->is_object()) {
        if (error->contains("grpc_code")) code = int_field(*error, "grpc_code");
        if (error->contains("message") && (*error)["message"].is_string()) message = (*error)["message"];
      } else {
        code = int_field(reply, "code");
        if (reply.contains("message") && reply["message"].is_string()) message = reply["message"];
        else if (error && error->is_string()) message = *error;
      }
      const bool transient = code == 0 ? status >= 500 : transient_code(code);
      const auto outcome = transient ? Grant::Outcome::Unreachable : Grant::Outcome::Refused;
      const std::string at = where();
      if (outcome == Grant::Outcome::Unreachable) next_endpoint();  // e.g. a member cut off from quorum
      throw Failure{outcome, at + " " + path + ": " + snippet(message) + " (code " + std::to_string(code) + ")"};
    }
    if (stream) {
      if (!reply.contains("result") || !reply["result"].is_object()) malformed(path + " reply has no \"result\"");
      return reply["result"];
    }
    return reply;
  }

  // The leader key, or nullopt when nobody holds it. A linearizable read (the gateway's
  // default): a member cut off from the quorum cannot answer it with stale data.
  std::optional<LeaderRecord> read_leader(Clock::time_point deadline) {
    const json reply = post("/v3/kv/range", {{"key", key64}}, deadline);
    header_revision(reply);
    return leader_from_kvs(reply);
  }

  std::optional<LeaderRecord> leader_from_kvs(const json& range) {
    const auto it = range.find("kvs");
    if (it == range.end() || it->is_null()) return std::nullopt;
    if (!it->is_array()) malformed("\"kvs\" is not an array");
    if (it->empty()) return std::nullopt;
    const json& kv = (*it)[0];
    if (!kv.is_object()) malformed("kvs[0] is not an object");
    LeaderRecord record{"", int_field(kv, "create_revision"), int_field(kv, "lease")};
    if (record.create_revision <= 0) malformed("the leader key has no create_revision");
    const std::string value64 = kv.contains("value") && kv["value"].is_string() ? kv["value"].get<std::string>() : "";
    if (const auto value = base64_decode(value64)) {
      const json parsed = json::parse(*value, nullptr, false);
      if (parsed.is_object() && parsed.contains("node") && parsed["node"].is_string()) record.node = parsed["node"];
    }
    return record;
  }

  // The replica floor: the floor key's mod_revision (0: never advanced) and who advanced from
  // which epoch (the value; informative, and lets an interrupted advance() finish).
  struct Floor {
    uint64_t revision = 0;
    std::string node;
    uint64_t from = 0;
  };
  Floor floor_from_kvs(const json& range) {
    Floor floor;
    const auto it = range.find("kvs");
    if (it == range.end() || it->is_null() || (it->is_array() && it->empty())) return floor;
    if (!it->is_array() || !(*it)[0].is_object()) malformed("\"kvs\" of the floor key is not an array of objects");
    const json& kv = (*it)[0];
    floor.revision = uint64_t(int_field(kv, "mod_revision"));
    if (floor.revision == 0) malformed("the floor key has no mod_revision");
    const std::string value64 = kv.contains("value") && kv["value"].is_string() ? kv["value"].get<std::string>() : "";
    if (const auto value = base64_decode(value64)) {
      const json parsed = json::parse(*value, nullptr, false);
      if (parsed.is_object() && parsed.contains("node") && parsed["node"].is_string()) floor.node = parsed["node"];
      if (parsed.is_object() && parsed.contains("from") && parsed["from"].is_number_unsigned()) floor.from = parsed["from"].get<uint64_t>();
    }
    return floor;
  }
  Floor read_floor(Clock::time_point deadline) {
    const json reply = post("/v3/kv/range", {{"key", floor_key64}}, deadline);
    header_revision(reply);
    return floor_from_kvs(reply);
  }
  Grant stale_replica(uint64_t known_epoch, const Floor& floor) const {
    return {Grant::Outcome::Refused, floor.revision, std::chrono::milliseconds{0}, floor.node,
            "stale replica: epoch " + std::to_string(known_epoch) + " < " + std::to_string(floor.revision) +
                " (advanced by the primary without this node): resync as a secondary"};
  }

  // Keeps lease `id` alive; the TTL etcd restarted it with, 0 when the lease is gone.
  int64_t keepalive(int64_t id, Clock::time_point deadline) {
    const json result = post("/v3/lease/keepalive", {{"ID", std::to_string(id)}}, deadline, /*stream=*/true);
    header_revision(result);
    return int_field(result, "TTL");
  }

  void revoke(int64_t id, Clock::time_point deadline) {
    try {
      post("/v3/lease/revoke", {{"ID", std::to_string(id)}}, deadline);
    } catch (const Failure& failure) {
      // Already gone (expired or revoked): exactly what we wanted.
      if (failure.why.find("lease not found") == std::string::npos) throw;
    }
  }

  void forget() {
    lease_id = 0;
    lease_epoch = 0;
    lease_node.clear();
  }

  // Txn building blocks: "the leader key's create_revision == revision" (0 = absent) and
  // "put the leader record, attached to lease".
  json create_revision_is(int64_t revision) const {
    return json{{"key", key64}, {"target", "CREATE"}, {"result", "EQUAL"}, {"create_revision", std::to_string(revision)}};
  }
  // "the floor key was last written before `revision`" (an absent key has mod_revision 0).
  json floor_below(uint64_t revision) const {
    return json{{"key", floor_key64}, {"target", "MOD"}, {"result", "LESS"}, {"mod_revision", std::to_string(revision)}};
  }
  json put_leader(const json& record, int64_t lease) const {
    return json{{"request_put", json{{"key", key64}, {"value", base64_encode(record.dump())}, {"lease", std::to_string(lease)}}}};
  }

  std::string held_why(const LeaderRecord& leader) const {
    if (leader.node.empty())
      return "the leader key " + key + " holds no leader record (written by hand?); delete it to let a node acquire";
    std::string why = "held by " + leader.node + " under epoch " + std::to_string(leader.create_revision);
    if (leader.lease == 0) why += " with no lease attached (it never lapses: written by hand?)";
    return why;
  }

  Grant acquire(const std::string& node, uint64_t known_epoch) {
    const auto deadline = Clock::now() + config.timeout;
    // Two rounds: our own lease may lapse between reading the key and renewing it.
    for (int round = 0; round < 2; ++round) {
      const auto leader = read_leader(deadline);
      if (!leader) {
        // Free: a replica older than an advanced epoch is refused (the win transaction below
        // compares the floor again). While another node holds the key the answer is Held.
        if (const Floor floor = read_floor(deadline); known_epoch < floor.revision) return stale_replica(known_epoch, floor);
      }
      if (leader) {
        const auto epoch = uint64_t(leader->create_revision);
        if (leader->node != node || leader->lease == 0)
          return {Grant::Outcome::Held, epoch, std::chrono::milliseconds{0}, leader->node, held_why(*leader)};
        // Ours already (an earlier acquire, maybe one whose reply was lost): a renewal.
        if (epoch < known_epoch) return state_mismatch(epoch, known_epoch, "the leader key's create_revision");
        const int64_t ttl = keepalive(leader->lease, deadline);
        if (ttl <= 0) continue;  // lapsed just now: etcd deletes the key with the lease
        lease_id = leader->lease;
        lease_epoch = epoch;
        lease_node = node;
        return {Grant::Outcome::Granted, epoch, std::chrono::seconds{ttl}, node,
                "renewed: this node already held the lease (etcd lease " + std::to_string(lease_id) + ")"};
      }

      const json granted = post("/v3/lease/grant", {{"TTL", etcd_ttl_seconds(config.lease)}}, deadline);
      header_revision(granted);
      const int64_t lease = int_field(granted, "ID");
      const int64_t ttl = int_field(granted, "TTL");
      if (lease == 0 || ttl <= 0) malformed("lease grant without ID or TTL");

      // Compare-and-swap: put the key only if it does not exist. The txn's revision is the
      // epoch (etcd revisions are global and never reused).
      json txn;
      txn["compare"] = json::array({create_revision_is(0), floor_below(known_epoch + 1)});
      txn["success"] = json::array({put_leader({{"node", node}}, lease)});
      txn["failure"] = json::array({json{{"request_range", json{{"key", key64}}}},
                                    json{{"request_range", json{{"key", floor_key64}}}}});
      const json reply = post("/v3/kv/txn", txn, deadline);
      const auto revision = uint64_t(header_revision(reply));
      const bool won = reply.contains("succeeded") && reply["succeeded"].is_boolean() && reply["succeeded"].get<bool>();
      if (!won) {
        best_effort_revoke(lease, deadline);  // never used: do not leave it for etcd to expire
        std::optional<LeaderRecord> holder;
        if (const auto it = reply.find("responses"); it != reply.end() && it->is_array() && !it->empty() &&
                                                     (*it)[0].is_object() && (*it)[0].contains("response_range"))
          holder = leader_from_kvs(object_field((*it)[0], "response_range"));
        else
          malformed("failed txn without the range of the leader key");
        if (!holder) {
          if (const auto& r = reply.at("responses"); r.size() > 1 && r[1].is_object() && r[1].contains("response_range")) {
            if (const Floor floor = floor_from_kvs(object_field(r[1], "response_range")); known_epoch < floor.revision)
              return stale_replica(known_epoch, floor);  // advanced meanwhile
          }
          continue;  // it vanished again in between
        }
        if (holder->node == node) continue;  // our own earlier attempt: renew it next round
        return {Grant::Outcome::Held, uint64_t(holder->create_revision), std::chrono::milliseconds{0}, holder->node,
                held_why(*holder)};
      }
      if (revision <= known_epoch) {
        best_effort_revoke(lease, deadline);
        return state_mismatch(revision, known_epoch, "the winning revision");
      }
      lease_id = lease;
      lease_epoch = revision;
      lease_node = node;
      record_epoch(node, revision, lease, deadline);
      return {Grant::Outcome::Granted, revision, std::chrono::seconds{ttl}, node,
              "won " + key + " at revision " + std::to_string(revision) + " (etcd lease " + std::to_string(lease) +
                  ", ttl " + std::to_string(ttl) + " s)"};
    }
    return {Grant::Outcome::Unreachable, 0, std::chrono::milliseconds{0}, "",
            "the leader key " + key + " kept changing while acquiring; try again"};
  }

  Grant state_mismatch(uint64_t epoch, uint64_t known_epoch, const std::string& what) {
    return {Grant::Outcome::Refused, epoch, std::chrono::milliseconds{0}, "",
            "state mismatch: " + what + " " + std::to_string(epoch) + " is not above the known epoch " +
                std::to_string(known_epoch) +
                " (was etcd's data reset or replaced? epochs must never go back: restore etcd's data or resync the pair)"};
  }

  // Writes the epoch into the value for operators (`etcdctl get`): informative only, the
  // key's create_revision stays the authority. Conditional on our creation still standing.
  void record_epoch(const std::string& node, uint64_t epoch, int64_t lease, Clock::time_point deadline) {
    json txn;
    txn["compare"] = json::array({create_revision_is(int64_t(epoch))});
    txn["success"] = json::array({put_leader({{"node", node}, {"epoch", epoch}}, lease)});
    try {
      post("/v3/kv/txn", txn, deadline);
    } catch (const Failure& failure) {
      spdlog::debug("etcd arbiter: epoch {} not written into {}: {}", epoch, key, failure.why);
    }
  }

  void best_effort_revoke(int64_t lease, Clock::time_point deadline) {
    try {
      revoke(lease, deadline);
    } catch (const Failure& failure) {
      spdlog::debug("etcd arbiter: unused lease {} not revoked (it expires by itself): {}", lease, failure.why);
    }
  }

  Grant fenced(uint64_t epoch, const std::optional<LeaderRecord>& leader, const std::string& detail) {
    forget();
    std::string why = "fenced: " + detail;
    if (leader)
      why += "; " + held_why(*leader);
    else
      why += "; nobody holds " + key + " now";
    return {Grant::Outcome::Refused, leader ? uint64_t(leader->create_revision) : epoch, std::chrono::milliseconds{0},
            leader ? leader->node : "", why};
  }

  static bool names(const std::optional<LeaderRecord>& leader, const std::string& node, uint64_t epoch) {
    return leader && leader->node == node && uint64_t(leader->create_revision) == epoch && leader->lease != 0;
  }

  Grant renew(const std::string& node, uint64_t epoch) {
    const auto deadline = Clock::now() + config.timeout;
    int64_t lease = lease_node == node && lease_epoch == epoch ? lease_id : 0;
    if (lease == 0) {  // not won through this object (a restarted tandemd): find it on the key
      const auto leader = read_leader(deadline);
      if (!names(leader, node, epoch))
        return fenced(epoch, leader, node + " does not hold epoch " + std::to_string(epoch));
      lease = leader->lease;
    }
    const int64_t ttl = keepalive(lease, deadline);
    if (ttl <= 0) return fenced(epoch, read_leader_quietly(deadline), "etcd lease " + std::to_string(lease) + " expired");
    // The lease lives; check it still carries our key (nobody deleted or replaced it).
    const auto leader = read_leader(deadline);
    if (!names(leader, node, epoch) || leader->lease != lease)
      return fenced(epoch, leader, "the leader key no longer names " + node + " under epoch " + std::to_string(epoch));
    lease_id = lease;
    lease_epoch = epoch;
    lease_node = node;
    return {Grant::Outcome::Granted, epoch, std::chrono::seconds{ttl}, node, "renewed etcd lease " + std::to_string(lease)};
  }

  // The epoch as a compare-and-swap (see Arbiter::advance). etcd cannot put a key it deletes
  // in the same txn, so two steps, each a txn on the holder's own lease:
  //  1. if the leader key's create_revision == epoch (this node's creation stands): write the
  //     floor key and delete the leader key. The txn's revision R is the floor: from now on
  //     every acquire with a known epoch below R is refused (its win txn compares the floor);
  //  2. if the leader key is absent and the floor is still R: re-create the leader key on the
  //     same lease. Its create_revision (> R) is the new epoch.
  // An advance interrupted between the steps is finished by the next call (the floor names
  // this node and `epoch`); a node that won the key in between holds it (Refused here).
  Grant advance(const std::string& node, uint64_t epoch) {
    const auto deadline = Clock::now() + config.timeout;
    int64_t lease = lease_node == node && lease_epoch == epoch ? lease_id : 0;
    auto leader = read_leader(deadline);
    Floor floor;
    if (names(leader, node, epoch)) {
      if (lease == 0) lease = leader->lease;
    } else {
      floor = read_floor(deadline);
      const bool ours = floor.node == node && floor.from == epoch;
      if (ours && leader && leader->node == node && leader->lease != 0 &&
          uint64_t(leader->create_revision) > floor.revision) {
        // Both steps were done (the answer was lost): this node holds the advanced epoch.
        const int64_t ttl = keepalive(leader->lease, deadline);
        if (ttl <= 0) return fenced(epoch, read_leader_quietly(deadline), "etcd lease expired");
        lease_id = leader->lease;
        lease_epoch = uint64_t(leader->create_revision);
        lease_node = node;
        return {Grant::Outcome::Granted, lease_epoch, std::chrono::seconds{ttl}, node,
                "epoch advanced to " + std::to_string(lease_epoch) + " (repeated)"};
      }
      if (leader || !ours || lease == 0)
        return fenced(epoch, leader, node + " does not hold epoch " + std::to_string(epoch));
    }
    const int64_t ttl = keepalive(lease, deadline);
    if (ttl <= 0) return fenced(epoch, read_leader_quietly(deadline), "etcd lease " + std::to_string(lease) + " expired");
    if (leader) {
      json txn;
      txn["compare"] = json::array({create_revision_is(int64_t(epoch))});
      txn["success"] = json::array({json{{"request_put", json{{"key", floor_key64},
                                                              {"value", base64_encode(json{{"node", node}, {"from", epoch}}.dump())}}}},
                                    json{{"request_delete_range", json{{"key", key64}}}}});
      const json reply = post("/v3/kv/txn", txn, deadline);
      const auto revision = uint64_t(header_revision(reply));
      if (!(reply.contains("succeeded") && reply["succeeded"].is_boolean() && reply["succeeded"].get<bool>()))
        return fenced(epoch, read_leader_quietly(deadline), "the leader key changed before the epoch could advance");
      floor = Floor{revision, node, epoch};
    }
    json txn;
    txn["compare"] = json::array({create_revision_is(0),
                                  json{{"key", floor_key64}, {"target", "MOD"}, {"result", "EQUAL"},
                                       {"mod_revision", std::to_string(floor.revision)}}});
    txn["success"] = json::array({put_leader({{"node", node}}, lease)});
    const json reply = post("/v3/kv/txn", txn, deadline);
    const auto revision = uint64_t(header_revision(reply));
    if (!(reply.contains("succeeded") && reply["succeeded"].is_boolean() && reply["succeeded"].get<bool>()))
      return fenced(epoch, read_leader_quietly(deadline), "another node took the leader key while the epoch advanced");
    lease_id = lease;
    lease_epoch = revision;
    lease_node = node;
    record_epoch(node, revision, lease, deadline);
    spdlog::info("etcd arbiter: {} advanced epoch {} -> {} (replicas below {} are refused)", node, epoch, revision,
                 floor.revision);
    return {Grant::Outcome::Granted, revision, std::chrono::seconds{ttl}, node,
            "epoch advanced to " + std::to_string(revision) + " (floor " + std::to_string(floor.revision) + ")"};
  }

  std::optional<LeaderRecord> read_leader_quietly(Clock::time_point deadline) {
    try {
      return read_leader(deadline);
    } catch (const Failure&) {
      return std::nullopt;
    }
  }

  void release(const std::string& node, uint64_t epoch) {
    const auto deadline = Clock::now() + config.timeout;
    int64_t lease = lease_node == node && lease_epoch == epoch ? lease_id : 0;
    if (lease == 0) {
      const auto leader = read_leader(deadline);
      if (!names(leader, node, epoch)) return;  // not ours (any more): never revoke another's lease
      lease = leader->lease;
    }
    revoke(lease, deadline);  // etcd deletes the key with it
    forget();
  }
};

EtcdArbiter::EtcdArbiter(const ArbiterConfig& config) {
  if (config.vm_id.empty()) throw std::invalid_argument("etcd arbiter: [vm] id is empty");
  if (config.vm_id.find('/') != std::string::npos)
    throw std::invalid_argument("etcd arbiter: vm id \"" + config.vm_id + "\" must not contain '/'");
  if (config.etcd.empty()) throw std::invalid_argument("etcd arbiter: [fencing] etcd is not set (e.g. \"http://127.0.0.1:2379\")");
  if (config.lease.count() <= 0) throw std::invalid_argument("etcd arbiter: lease_ms must be positive");
  if (config.timeout.count() <= 0) throw std::invalid_argument("etcd arbiter: arbiter_timeout_ms must be positive");
  impl_ = std::make_unique<Impl>(config);
}

EtcdArbiter::~EtcdArbiter() = default;

std::string EtcdArbiter::describe() const {
  std::string urls;
  for (const auto& endpoint : impl_->endpoints) {
    if (!urls.empty()) urls += ',';  // (not "," + url: GCC 12 warns a -Wrestrict false positive)
    urls += endpoint.url();
  }
  return "etcd " + urls + " key " + impl_->key;
}

Grant EtcdArbiter::acquire(const std::string& node, uint64_t known_epoch) {
  try {
    return impl_->acquire(node, known_epoch);
  } catch (const Failure& failure) {
    return {failure.outcome, 0, std::chrono::milliseconds{0}, "", failure.why};
  }
}

Grant EtcdArbiter::renew(const std::string& node, uint64_t epoch) {
  try {
    return impl_->renew(node, epoch);
  } catch (const Failure& failure) {
    return {failure.outcome, 0, std::chrono::milliseconds{0}, "", failure.why};
  }
}

Grant EtcdArbiter::advance(const std::string& node, uint64_t epoch) {
  try {
    return impl_->advance(node, epoch);
  } catch (const Failure& failure) {
    return {failure.outcome, 0, std::chrono::milliseconds{0}, "", failure.why};
  }
}

void EtcdArbiter::release(const std::string& node, uint64_t epoch) {
  try {
    impl_->release(node, epoch);
  } catch (const Failure& failure) {
    spdlog::warn("etcd arbiter: release of epoch {} failed (the peer waits one lease ttl): {}", epoch, failure.why);
  }
}

}  // namespace tandem::fencing
