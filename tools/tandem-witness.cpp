// tandem-witness: the lease arbiter on a third host. Grants each VM's lease (epoch = fencing
// token) to one node of its pair at a time; see fencing/witness/server.h and docs/fencing.md.
//   tandem-witness --listen HOST:PORT --state-file FILE --psk-file FILE [--log-level L]
// Exit status: 0 after SIGTERM/SIGINT, 1 on a corrupt state file or a runtime failure,
// 2 on a usage or configuration error.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <iostream>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <thread>

#include "fencing/witness/server.h"
#include "net/endpoint.h"
#include "net/psk.h"

namespace {

// "HOST:PORT" or "[V6]:PORT" (numeric host, port 0 = any) into the options.
void parse_listen(const std::string& listen, tandem::fencing::WitnessOptions& options) {
  try {
    const auto endpoint = tandem::net::parse_endpoint(listen, {.allow_any_port = true});
    options.host = endpoint.host;
    options.port = endpoint.port;
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(fmt::format("--listen: {}", e.what()));
  }
}

// Same rule as tandemd's [pair] psk_file (net::load_psk).
std::string load_psk(const std::string& path) {
  try {
    return tandem::net::load_psk(path);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(fmt::format("--psk-file: {}", e.what()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "tandem-witness: the lease arbiter of Tandem pairs (run it on a third host).\n"
      "Grants each VM's lease and epoch (the fencing token) to one node at a time; requests are\n"
      "authenticated with the pairs' PSK. Epochs are persisted before they are granted, and after a\n"
      "restart no new holder is granted a lease before one lease ttl has passed.\n"
      "Exit status: 0 after SIGTERM/SIGINT, 1 corrupt state file or runtime failure, 2 usage error."};
  std::string listen, state_file, psk_file, log_level = "info";
  int64_t max_lease_ms = 30000;
  app.add_option("--listen", listen, "HOST:PORT to listen on (port 0 = any free port; the real one is logged)")
      ->required();
  app.add_option("--state-file", state_file,
                 "File holding each VM's newest epoch and holder (created if missing; a corrupt one stops "
                 "the witness with exit 1)")
      ->required();
  app.add_option("--psk-file", psk_file, "The pairs' pre-shared key ([pair] psk_file of tandemd), >= 16 bytes")
      ->required();
  app.add_option("--max-lease-ms", max_lease_ms, "Longest lease granted; longer requests are cut to it")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{3600000}));
  tandem::net::AdmissionLimits admission{64, 8, {}};
  app.add_option("--allow", admission.allow,
                 "Serve only these client addresses (numeric, repeatable; default: any). Others are closed at once");
  app.add_option("--max-connections", admission.max_pending, "Connections served at once, all clients")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{65536}));
  app.add_option("--max-connections-per-address", admission.max_pending_per_address,
                 "Connections served at once from one client address (a flood from one address cannot lock the "
                 "others out)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{65536}));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  // Logs go to stderr (stdout stays free), one line per event, for journald or a file.
  spdlog::set_default_logger(spdlog::stderr_color_mt("tandem-witness"));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(log_level));

  tandem::fencing::WitnessOptions options;
  try {
    parse_listen(listen, options);
    options.psk = load_psk(psk_file);
  } catch (const std::exception& e) {
    std::cerr << "tandem-witness: " << e.what() << "\n";
    return 2;
  }
  options.admission = admission;
  options.state_file = state_file;
  options.max_lease = std::chrono::milliseconds(max_lease_ms);

  // Block the stop signals before any thread starts, so only sigwait below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::unique_ptr<tandem::fencing::WitnessServer> server;
  try {
    server = std::make_unique<tandem::fencing::WitnessServer>(options);
  } catch (const tandem::fencing::StateFileError& e) {
    spdlog::critical("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 2;
  }
  spdlog::info("listening on {}", server->endpoint());
  int status = 0;
  std::thread io([&] {
    try {
      server->run();
    } catch (const std::exception& e) {
      spdlog::critical("witness failed: {}", e.what());
      status = 1;
      ::kill(::getpid(), SIGTERM);  // wake the sigwait below
    }
  });
  int signal = 0;
  sigwait(&stop_signals, &signal);
  if (status == 0) spdlog::info("stopping on signal {}", signal);
  server->stop();
  io.join();
  return status;
}
