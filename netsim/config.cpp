#include "netsim/config.h"

#include <charconv>
#include <set>

#include "net/endpoint.h"
#include "netsim/toml_util.h"

namespace netsim {

using detail::fail_at;
using detail::line_of;

namespace {

LinkConfig parse_link(const toml::table& table, const std::string& source) {
  LinkConfig link;
  bool has_target = false;
  for (const auto& [key_view, node] : table) {
    const std::string key(key_view.str());
    auto text = [&] { return detail::require_string(node, source, key); };
    auto host_port = [&](std::string& host, uint16_t& port) {
      try {
        const auto endpoint = tandem::net::parse_endpoint(text(), {.allow_any_port = true});
        host = endpoint.host;
        port = endpoint.port;
      } catch (const std::invalid_argument& e) {
        fail_at(source, line_of(node), key, e.what());
      }
    };
    auto duration = [&](Duration& out) {
      std::string problem;
      auto d = parse_duration(text(), problem);
      if (!d) fail_at(source, line_of(node), key, problem);
      out = *d;
    };
    if (key == "name") {
      link.name = text();
      if (link.name.empty()) fail_at(source, line_of(node), key, "must not be empty");
    } else if (key == "protocol") {
      const std::string p = text();
      if (p == "tcp") link.protocol = Protocol::Tcp;
      else if (p == "udp") link.protocol = Protocol::Udp;
      else fail_at(source, line_of(node), key, fmt::format("'{}' is not tcp or udp", p));
    } else if (key == "listen") {
      host_port(link.listen_host, link.listen_port);
    } else if (key == "target") {
      host_port(link.target_host, link.target_port);
      if (link.target_port == 0) fail_at(source, line_of(node), key, "the target port must not be 0");
      has_target = true;
    } else if (key == "from") {
      link.from_node = text();
    } else if (key == "to") {
      link.to_node = text();
    } else if (key == "seed") {
      link.seed = detail::require_seed(node, source, key);
    } else if (key == "max_queue") {
      std::string problem;
      auto bytes = parse_bytes(text(), problem);
      if (!bytes) fail_at(source, line_of(node), key, problem);
      if (*bytes < 65536 || *bytes > (1ull << 32)) fail_at(source, line_of(node), key, "must be within [64KiB, 4GiB]");
      link.max_queue_bytes = *bytes;
    } else if (key == "connect_timeout") {
      duration(link.connect_timeout);
      if (link.connect_timeout.count() <= 0) fail_at(source, line_of(node), key, "must be above zero");
    } else if (key == "session_idle") {
      duration(link.udp_session_idle);
      if (link.udp_session_idle < std::chrono::milliseconds(100))
        fail_at(source, line_of(node), key, "must be at least 100ms");
    } else {
      fail_at(source, line_of(node), key,
              "unknown link key (expected name, protocol, listen, target, from, to, seed, max_queue, "
              "connect_timeout, session_idle)");
    }
  }
  if (link.name.empty()) fail_at(source, line_of(table), "name", "every [[link]] needs a name");
  if (!has_target) fail_at(source, line_of(table), "target", fmt::format("link '{}' needs a target", link.name));
  return link;
}

}  // namespace

LinksFile parse_links(std::string_view toml_text, const std::string& source) {
  const toml::table root = detail::parse_toml(toml_text, source);
  LinksFile file;
  std::set<std::string> names;
  for (const auto& [key_view, node] : root) {
    const std::string key(key_view.str());
    if (key == "seed") {
      file.seed = detail::require_seed(node, source, key);
    } else if (key == "link") {
      const toml::array* links = node.as_array();
      if (!links) fail_at(source, line_of(node), key, "write links as [[link]] tables");
      for (const auto& item : *links) {
        const toml::table* table = item.as_table();
        if (!table) fail_at(source, line_of(item), key, "write links as [[link]] tables");
        LinkConfig link = parse_link(*table, source);
        if (!names.insert(link.name).second)
          fail_at(source, line_of(*table), "name", fmt::format("link '{}' is defined twice", link.name));
        file.links.push_back(std::move(link));
      }
    } else {
      fail_at(source, line_of(node), key, "unknown top-level key (expected seed, [[link]])");
    }
  }
  return file;
}

LinksFile load_links(const std::string& path) { return parse_links(detail::read_file(path), path); }

}  // namespace netsim
