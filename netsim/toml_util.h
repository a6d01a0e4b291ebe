// Helpers shared by the links and scenario file parsers (internal to netsim).
#pragma once

#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <toml++/toml.h>

#include "netsim/fault.h"

namespace netsim::detail {

inline int line_of(const toml::node& node) { return static_cast<int>(node.source().begin.line); }

[[noreturn]] inline void fail_at(const std::string& source, int line, std::string_view key, std::string_view problem) {
  if (key.empty()) throw std::invalid_argument(fmt::format("{}:{}: {}", source, line, problem));
  throw std::invalid_argument(fmt::format("{}:{}: key '{}': {}", source, line, key, problem));
}

inline toml::table parse_toml(std::string_view text, const std::string& source) {
  try {
    return toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    fail_at(source, static_cast<int>(e.source().begin.line), "", fmt::format("TOML syntax: {}", e.description()));
  }
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(fmt::format("cannot read '{}'", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

inline std::string require_string(const toml::node& node, const std::string& source, std::string_view key) {
  if (auto s = node.value<std::string>(); s && node.is_string()) return *s;
  fail_at(source, line_of(node), key, "expected a string");
}

inline ParamValue to_param(const toml::node& node, const std::string& source, std::string_view key) {
  const std::string origin = fmt::format("{}:{}", source, line_of(node));
  if (node.is_string()) return {*node.value<std::string>(), origin};
  if (node.is_integer()) return {*node.value<int64_t>(), origin};
  if (node.is_floating_point()) return {*node.value<double>(), origin};
  if (node.is_boolean()) return {*node.value<bool>(), origin};
  fail_at(source, line_of(node), key, "expected a string, number or boolean");
}

inline uint64_t require_seed(const toml::node& node, const std::string& source, std::string_view key) {
  auto v = node.value<int64_t>();
  if (!node.is_integer() || !v || *v < 0) fail_at(source, line_of(node), key, "expected a non-negative integer");
  return static_cast<uint64_t>(*v);
}

}  // namespace netsim::detail
