// tandem-netsim: the fault-injecting proxy for links between Tandem hosts.
//   tandem-netsim serve --config links.toml [--control SOCK] [--scenario FILE] [--event-log FILE] [--seed N]
//   tandem-netsim ctl [--control SOCK] set|clear|list|stats|partition|heal|reset|events ...
//   tandem-netsim check [--config FILE] [--scenario FILE]
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <fmt/format.h>
#include <iostream>
#include <spdlog/spdlog.h>

#include "netsim/config.h"
#include "netsim/control.h"
#include "netsim/scenario.h"
#include "netsim/simulator.h"

namespace {

std::string default_control_path() {
  if (const char* env = std::getenv("TANDEM_NETSIM_CONTROL")) return env;
  if (const char* runtime = std::getenv("XDG_RUNTIME_DIR")) return fmt::format("{}/tandem-netsim.sock", runtime);
  return fmt::format("/tmp/tandem-netsim-{}.sock", ::getuid());
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::string current;
  for (char c : text) {
    if (c == separator) {
      parts.push_back(current);
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  parts.push_back(current);
  return parts;
}

struct ServeOptions {
  std::string config;
  std::string control;
  std::string scenario;
  std::string event_log;
  std::optional<uint64_t> seed;
  bool exit_after_scenario = false;
};

int serve(const ServeOptions& options) {
  const netsim::LinksFile links = netsim::load_links(options.config);
  std::optional<netsim::Scenario> scenario;
  if (!options.scenario.empty()) scenario = netsim::load_scenario(options.scenario);

  // Precedence: --seed, then the scenario's seed (applied when it starts), then the links file.
  netsim::SimulatorOptions sim_options;
  sim_options.seed = options.seed.value_or(links.seed.value_or(1));
  sim_options.event_log_path = options.event_log;
  if (options.seed && scenario) scenario->seed = options.seed;

  // Block the stop signals before any thread starts, so only sigwait below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  // splice(2) into a socket the peer has closed raises SIGPIPE: an error code, not the end
  // of the proxy (found by `tandemctl drill kill-primary`: a killed node took netsim along).
  ::signal(SIGPIPE, SIG_IGN);

  netsim::Simulator sim(sim_options);
  for (const auto& link : links.links) {
    const uint16_t port = sim.add_link(link);
    spdlog::info("link {} ({}): {}:{} -> {}:{}", link.name, netsim::to_string(link.protocol), link.listen_host, port,
                 link.target_host, link.target_port);
  }
  netsim::ControlServer control(sim, options.control);
  spdlog::info("control socket {}", options.control);

  std::shared_ptr<netsim::ScenarioRun> run;
  if (scenario) run = sim.run_scenario(*scenario);

  if (run && options.exit_after_scenario) {
    // Poll so a signal still ends the wait.
    timespec poll{0, 50'000'000};
    while (!run->done()) {
      if (sigtimedwait(&stop_signals, nullptr, &poll) > 0) break;
    }
  } else {
    int signal = 0;
    sigwait(&stop_signals, &signal);
  }
  spdlog::info("stopping");
  return 0;
}

void print_stats_text(const nlohmann::json& links) {
  for (const auto& l : links) {
    fmt::print("{} ({}) {} -> {}\n", l["name"].get<std::string>(), l["protocol"].get<std::string>(),
               l["listen"].get<std::string>(), l["target"].get<std::string>());
    const auto& c = l["connections"];
    fmt::print("  connections: accepted {} active {} refused {} reset {} connect_failures {}\n",
               c["accepted"].get<uint64_t>(), c["active"].get<uint64_t>(), c["refused"].get<uint64_t>(),
               c["reset"].get<uint64_t>(), c["connect_failures"].get<uint64_t>());
    for (const char* dir : {"up", "down"}) {
      const auto& d = l[dir];
      fmt::print("  {:<4} in {} B / {} pkts, out {} B / {} pkts, dropped {} pkts ({} B), duplicated {}, "
                 "reordered {}, corrupted {}, send errors {}\n",
                 dir, d["bytes_in"].get<uint64_t>(), d["packets_in"].get<uint64_t>(), d["bytes_out"].get<uint64_t>(),
                 d["packets_out"].get<uint64_t>(), d["dropped_packets"].get<uint64_t>(),
                 d["dropped_bytes"].get<uint64_t>(), d["duplicated"].get<uint64_t>(), d["reordered"].get<uint64_t>(),
                 d["corrupted"].get<uint64_t>(), d["send_errors"].get<uint64_t>());
    }
    for (const auto& f : l["faults"]) fmt::print("  fault {}\n", f.dump());
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tandem-netsim: a fault-injecting TCP/UDP proxy for the links between Tandem hosts.\n"
               "Direction: up = client -> target, down = target -> client.\n"
               "Faults: " + netsim::fault_kind_names()};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();

  // serve
  ServeOptions serve_options;
  serve_options.control = default_control_path();
  uint64_t seed = 0;
  auto* serve_cmd = app.add_subcommand("serve", "Run the proxy links of a config file");
  serve_cmd->add_option("--config", serve_options.config, "Links file (TOML)")->required()->check(CLI::ExistingFile);
  serve_cmd->add_option("--control", serve_options.control, "Control socket path")->capture_default_str();
  serve_cmd->add_option("--scenario", serve_options.scenario, "Scenario file (TOML) to run at start")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--event-log", serve_options.event_log, "Append fault events here (JSON lines)");
  auto* seed_opt = serve_cmd->add_option("--seed", seed, "Seed for every random choice (overrides the files)");
  serve_cmd->add_flag("--exit-after-scenario", serve_options.exit_after_scenario,
                      "Stop when the scenario's last step has run");

  // check
  std::string check_config, check_scenario;
  auto* check_cmd = app.add_subcommand("check", "Validate a links file and/or a scenario file");
  check_cmd->add_option("--config", check_config, "Links file (TOML)");
  check_cmd->add_option("--scenario", check_scenario, "Scenario file (TOML)");

  // ctl
  std::string control = default_control_path();
  bool json_output = false;
  auto* ctl = app.add_subcommand("ctl", "Talk to a running proxy");
  ctl->add_option("--control", control, "Control socket path")->capture_default_str();
  ctl->require_subcommand(1);

  std::string link, fault_name, direction, partition_name, groups_text, links_text, bridge;
  std::vector<std::string> params;
  bool one_way = false;
  size_t last_events = 50;

  auto* set_cmd = ctl->add_subcommand("set", "Set a fault: set LINK FAULT [--direction D] [key=value ...]");
  set_cmd->add_option("link", link, "Link name")->required();
  set_cmd->add_option("fault", fault_name, "Fault: " + netsim::fault_kind_names())->required();
  set_cmd->add_option("params", params,
                      "Parameters as key=value, e.g. delay=50ms jitter=5ms, rate=2MB/s, probability=0.1, "
                      "size=16, on=1s off=2s; schedule: after=2s after_bytes=N after_messages=N for=500ms "
                      "flap_on=.. flap_off=..");
  set_cmd->add_option("--direction", direction, "up, down or both (default both)");

  auto* clear_cmd = ctl->add_subcommand("clear", "Remove faults: clear [LINK [FAULT]] [--direction D]");
  clear_cmd->add_option("link", link, "Link name (default: every link)");
  clear_cmd->add_option("fault", fault_name, "Fault kind (default: every fault)");
  clear_cmd->add_option("--direction", direction, "Only faults set for this direction");

  auto* list_cmd = ctl->add_subcommand("list", "List the faults of every link");
  list_cmd->add_flag("--json", json_output, "Print JSON");

  auto* stats_cmd = ctl->add_subcommand("stats", "Counters and faults per link");
  stats_cmd->add_option("link", link, "Link name (default: every link)");
  stats_cmd->add_flag("--json", json_output, "Print JSON");

  auto* partition_cmd = ctl->add_subcommand("partition", "Cut a set of links in one step");
  partition_cmd->add_option("--name", partition_name, "Name, for heal --name (default 'partition')");
  partition_cmd->add_option("--groups", groups_text, "Node groups, e.g. primary,witness/secondary");
  partition_cmd->add_option("--links", links_text, "Or: comma-separated link names");
  partition_cmd->add_flag("--one-way", one_way, "Cut only traffic from the first group to the second");
  partition_cmd->add_option("--bridge", bridge, "A node that stays connected to every group");
  partition_cmd->add_option("--direction", direction, "With --links: up, down or both");

  auto* heal_cmd = ctl->add_subcommand("heal", "Heal partitions (all, or --name)");
  heal_cmd->add_option("--name", partition_name, "Only this partition");

  auto* reset_cmd = ctl->add_subcommand("reset", "Reset every connection of a link now (RST)");
  reset_cmd->add_option("link", link, "Link name")->required();

  auto* events_cmd = ctl->add_subcommand("events", "Print the most recent fault events (JSON lines)");
  events_cmd->add_option("--last", last_events, "How many")->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(log_level));

  try {
    if (serve_cmd->parsed()) {
      if (*seed_opt) serve_options.seed = seed;
      return serve(serve_options);
    }
    if (check_cmd->parsed()) {
      if (check_config.empty() && check_scenario.empty()) throw std::invalid_argument("give --config and/or --scenario");
      if (!check_config.empty()) {
        auto links = netsim::load_links(check_config);
        fmt::print("{}: {} link(s) OK\n", check_config, links.links.size());
      }
      if (!check_scenario.empty()) {
        auto scenario = netsim::load_scenario(check_scenario);
        fmt::print("{}: {} step(s) OK\n", check_scenario, scenario.steps.size());
      }
      return 0;
    }

    nlohmann::json request;
    if (set_cmd->parsed()) {
      request = {{"cmd", "set"}, {"link", link}, {"fault", fault_name}};
      if (!direction.empty()) request["direction"] = direction;
      nlohmann::json p = nlohmann::json::object();
      for (const auto& kv : params) {
        const auto eq = kv.find('=');
        if (eq == std::string::npos || eq == 0)
          throw std::invalid_argument(fmt::format("parameter '{}' is not key=value", kv));
        p[kv.substr(0, eq)] = kv.substr(eq + 1);
      }
      request["params"] = p;
    } else if (clear_cmd->parsed()) {
      request = {{"cmd", "clear"}};
      if (!link.empty()) request["link"] = link;
      if (!fault_name.empty()) request["fault"] = fault_name;
      if (!direction.empty()) request["direction"] = direction;
    } else if (list_cmd->parsed()) {
      request = {{"cmd", "list"}};
    } else if (stats_cmd->parsed()) {
      request = {{"cmd", "stats"}};
      if (!link.empty()) request["link"] = link;
    } else if (partition_cmd->parsed()) {
      request = {{"cmd", "partition"}};
      if (!partition_name.empty()) request["name"] = partition_name;
      if (!groups_text.empty()) {
        nlohmann::json groups = nlohmann::json::array();
        for (const auto& group : split(groups_text, '/')) groups.push_back(split(group, ','));
        request["groups"] = groups;
      }
      if (!links_text.empty()) request["links"] = split(links_text, ',');
      if (one_way) request["one_way"] = true;
      if (!bridge.empty()) request["bridge"] = bridge;
      if (!direction.empty()) request["direction"] = direction;
    } else if (heal_cmd->parsed()) {
      request = {{"cmd", "heal"}};
      if (!partition_name.empty()) request["name"] = partition_name;
    } else if (reset_cmd->parsed()) {
      request = {{"cmd", "reset"}, {"link", link}};
    } else if (events_cmd->parsed()) {
      request = {{"cmd", "events"}, {"last", last_events}};
    }

    const nlohmann::json reply = netsim::control_request(control, request);
    if (!reply.value("ok", false)) {
      std::cerr << "tandem-netsim: " << reply.value("error", std::string("request failed")) << "\n";
      return 1;
    }
    if (events_cmd->parsed()) {
      for (const auto& e : reply["events"]) fmt::print("{}\n", e.dump());
    } else if (stats_cmd->parsed() && !json_output) {
      print_stats_text(reply["links"]);
    } else if (list_cmd->parsed() && !json_output) {
      for (const auto& l : reply["links"]) {
        fmt::print("{}:{}\n", l["name"].get<std::string>(), l["faults"].empty() ? " no faults" : "");
        for (const auto& f : l["faults"]) fmt::print("  {}\n", f.dump());
      }
    } else {
      fmt::print("{}\n", reply.dump(json_output ? 2 : -1));
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "tandem-netsim: " << e.what() << "\n";
    return 1;
  }
}
