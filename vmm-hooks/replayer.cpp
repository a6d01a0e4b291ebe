#include "vmm-hooks/replayer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "vmm-hooks/recorder.h"

namespace tandem::hooks {

Replayer::Replayer(BatchSource& source, ConsolePort* output, bool verify)
    : source_(source), direct_(output), output_(output ? &direct_ : nullptr), verify_(verify),
      output_digest_(kOutputDigestSeed), frame_digest_(kFrameDigestSeed) {}

Replayer::Replayer(BatchSource& source, OutputSink& output, bool verify)
    : source_(source), output_(&output), verify_(verify), output_digest_(kOutputDigestSeed),
      frame_digest_(kFrameDigestSeed) {}

std::string Replayer::check_header(const log::LogHeader& header, vmm::Machine& machine) {
  if (header.config().mem_bytes() != machine.config().mem_bytes) {
    return fmt::format("log was recorded with {} MiB of guest memory, this machine has {} MiB",
                       header.config().mem_bytes() >> 20, machine.config().mem_bytes >> 20);
  }
  if (header.start_icount() != machine.icount()) {
    return fmt::format("log starts at icount {}, the machine is at {}", header.start_icount(),
                       machine.icount());
  }
  const uint64_t hash = machine.state_hash();
  if (header.initial_state_hash() != hash) {
    return fmt::format(
        "initial state hash {:016x} differs from the log's {:016x}: wrong guest image, disk "
        "or machine options (log recorded with guest '{}')",
        hash, header.initial_state_hash(), header.config().guest_name());
  }
  return {};
}

std::optional<vmm::NicConfig> Replayer::recorded_nic(const log::LogHeader& header) {
  if (!header.config().has_nic()) return std::nullopt;
  const log::NicConfig& nic = header.config().nic();
  vmm::NicConfig out;
  if (nic.mac().size() != out.mac.size() || nic.mtu() < vmm::VirtioNet::kMinMtu ||
      nic.mtu() > vmm::VirtioNet::kMaxMtu) {
    throw LogError(0, "the log header's NIC (MAC of " + std::to_string(nic.mac().size()) + " bytes, MTU " +
                          std::to_string(nic.mtu()) + ") is malformed");
  }
  std::copy(nic.mac().begin(), nic.mac().end(), out.mac.begin());
  out.mtu = static_cast<uint16_t>(nic.mtu());
  out.link_up = nic.link_up();
  return out;
}

bool Replayer::pull() {
  if (source_done_) return false;
  auto batch = source_.next_batch();
  if (!batch) {
    if (source_.finished()) source_done_ = true;
    return false;
  }
  complete_to_ = std::max(complete_to_, batch->complete_to_icount());
  for (auto& r : *batch->mutable_records()) {
    if (r.icount() < last_record_icount_) {
      // The reader checks order within a batch; this checks it across batches.
      throw LogError(0, fmt::format("record at icount {} comes after icount {}", r.icount(),
                                    last_record_icount_));
    }
    last_record_icount_ = r.icount();
    pending_.push_back(std::move(r));
  }
  return true;
}

const log::Record* Replayer::peek() {
  while (pending_.empty() && pull()) {
  }
  return pending_.empty() ? nullptr : &pending_.front();
}

bool Replayer::log_exhausted() { return peek() == nullptr; }

uint64_t Replayer::stop_icount() {
  if (end_) return end_->icount;
  if (const log::Record* r = peek()) {
    // Run no further than the next record, so that the last record of a log is seen to be
    // the last: entropy is taken during the instruction at its icount and an idle skip in
    // the wait there, so those stop one instruction later.
    const bool taken_while_running = r->kind() == log::ENTROPY || r->kind() == log::IDLE_SKIP;
    return taken_while_running ? r->icount() + 1 : r->icount();
  }
  if (!source_done_) return UINT64_MAX;  // a live stream: more may come
  // The log ends without END (an interrupted recording): replay what it covers, every
  // instruction before its last batch's complete_to_icount, and not one past it.
  return std::max(last_record_icount_, complete_to_);
}

uint64_t Replayer::next_service_icount(uint64_t now) {
  if (divergence_ || end_) return now;
  const log::Record* r = peek();
  if (!r) return UINT64_MAX;
  return std::max(r->icount(), now);
}

void Replayer::diverge(uint64_t icount, std::string what, uint64_t expected, uint64_t actual) {
  if (!divergence_) divergence_ = Divergence{icount, std::move(what), expected, actual};
}

bool Replayer::apply_due(vmm::Machine& machine, bool idling) {
  bool applied = apply_service_records(machine);
  if (!idling || divergence_ || end_) return applied;
  // The recorder logs an IDLE_SKIP (perhaps of 0 ticks) every time the guest idled, after
  // whatever its service point at the same icount logged.
  const uint64_t now = machine.icount();
  const log::Record* r = peek();
  if (!r || r->icount() != now || r->kind() != log::IDLE_SKIP) {
    diverge(now, "guest idled where the recording did not", r ? r->icount() : 0, now);
    return applied;
  }
  machine.clock().advance(r->value());
  pending_.pop_front();
  ++records_applied_;
  apply_service_records(machine);  // inputs delivered while it idled
  return true;
}

bool Replayer::apply_service_records(vmm::Machine& machine) {
  const uint64_t now = machine.icount();
  bool applied = false;
  while (!divergence_ && !end_) {
    const log::Record* r = peek();
    if (!r || r->icount() > now) break;
    if (r->icount() < now) {
      diverge(now, fmt::format("missed {} record", log::RecordKind_Name(r->kind())), r->icount(), now);
      break;
    }
    // Entropy is taken by entropy() when the device asks for it during the instruction at
    // this icount, which runs after this service point; an idle skip (and what follows it)
    // by idle() when the guest waits, which it does after the service point.
    if (r->kind() == log::ENTROPY || r->kind() == log::IDLE_SKIP) break;
    const log::Record rec = *r;
    pending_.pop_front();
    ++records_applied_;
    applied = true;
    switch (rec.kind()) {
      case log::CONSOLE_INPUT: {
        const auto* bytes = reinterpret_cast<const uint8_t*>(rec.payload().data());
        const size_t accepted = machine.console_input({bytes, rec.payload().size()});
        if (accepted != rec.payload().size()) {
          diverge(now, "console input accepted", rec.payload().size(), accepted);
        }
        break;
      }
      case log::NET_RX: {
        const auto* bytes = reinterpret_cast<const uint8_t*>(rec.payload().data());
        const bool delivered = machine.net_input({bytes, rec.payload().size()});
        if (delivered != (rec.value() != 0)) diverge(now, "network frame delivered", rec.value(), delivered);
        break;
      }
      case log::NET_LINK:
        machine.net_set_link(rec.value() != 0);
        break;
      case log::NET_TX_DIGEST:
        if (verify_ && frame_digest_ != rec.value()) {
          diverge(now, "transmitted frames digest", rec.value(), frame_digest_);
        }
        break;
      case log::TIME_ADJUST:
        machine.clock().advance(rec.value());
        break;
      case log::AUDIT:
        if (verify_) {
          ++audits_checked_;
          const uint64_t hash = machine.state_hash();
          if (hash != rec.value()) diverge(now, "state hash", rec.value(), hash);
        }
        break;
      case log::OUTPUT_DIGEST:
        if (verify_ && output_digest_ != rec.value()) {
          diverge(now, "output digest", rec.value(), output_digest_);
        }
        break;
      case log::OUTPUT_RELEASED:
        if (rec.channel() >= vmm::kOutputChannels) {
          diverge(now, fmt::format("OUTPUT_RELEASED for unknown output channel {}", rec.channel()), 0, rec.channel());
          break;
        }
        released_output_[rec.channel()] = rec.value();
        break;
      case log::END:
        end_ = ReplayEnd{static_cast<vmm::Exit>(rec.value() >> 32),
                         static_cast<uint32_t>(rec.value() & 0xffffffffu), now};
        break;
      default:
        diverge(now, fmt::format("unknown record kind {}", static_cast<int>(rec.kind())), 0, 0);
        break;
    }
  }
  flush_output();
  return applied;
}

void Replayer::service(vmm::Machine& machine) { apply_due(machine, false); }

bool Replayer::idle(vmm::Machine& machine, uint64_t) {
  if (divergence_ || end_) return false;
  // At the frontier of a live stream the record for this idle may still be on its way.
  while (at_frontier(machine.icount())) {
    if (!source_.wait_for_more(std::chrono::milliseconds(50))) {
      if (source_.finished()) return false;  // promotion: the guest carries on live
    }
  }
  // The log ends here (a closed stream, or an interrupted recording): nothing says what the
  // guest's wait looked like, so the replay stops; a promoted secondary carries on live.
  if (source_.finished() && peek() == nullptr) return false;
  return apply_due(machine, true);
}

bool Replayer::at_frontier(uint64_t icount) {
  for (;;) {
    for (const log::Record& r : pending_) {
      // Its idle record is here, or the log went past this icount (a divergence).
      if (r.icount() != icount || r.kind() == log::IDLE_SKIP) return false;
    }
    if (source_.finished()) return false;
    if (!pull()) return true;  // nothing more yet: wait for the stream
  }
}

void Replayer::flush_output() {
  if (output_ && !output_scratch_.empty()) {
    output_->output(vmm::OutputChannel::Console, output_scratch_icount_,
                    {reinterpret_cast<const uint8_t*>(output_scratch_.data()), output_scratch_.size()});
    output_scratch_.clear();
  }
}

vmm::RunResult Replayer::run(vmm::Machine& machine, uint64_t max_icount) {
  for (;;) {
    const uint64_t stop = std::min(stop_icount(), max_icount);
    vmm::RunResult result = machine.run_until(stop);
    if (result.exit != vmm::Exit::Running) {
      // The guest ended the run: the records logged at this icount (audit, END) are due.
      apply_due(machine, false);
      if (!divergence_) {
        if (!end_) {
          if (peek()) diverge(result.icount, "run ended before the log", 0, result.icount);
        } else if (end_->exit != result.exit || end_->code != result.code) {
          diverge(result.icount, "exit", static_cast<uint64_t>(end_->exit) << 32 | end_->code,
                  static_cast<uint64_t>(result.exit) << 32 | result.code);
        }
      }
      return result;
    }
    if (divergence_ || end_ || result.icount >= max_icount) return result;
    const log::Record* r = peek();
    if (!r) {
      if (source_done_ && result.icount >= stop) return result;  // interrupted recording: its end
      continue;
    }
    if (r->icount() < result.icount) {
      // The machine went past a record without taking it (an entropy request or a wait
      // that did not come): that is a divergence, never a reason to run on.
      apply_due(machine, false);
      if (!divergence_) diverge(result.icount, fmt::format("missed {} record", log::RecordKind_Name(r->kind())),
                                r->icount(), result.icount);
      return result;
    }
  }
}

void Replayer::output(vmm::OutputChannel channel, uint64_t icount, std::span<const uint8_t> bytes) {
  if (channel == vmm::OutputChannel::Net) {
    // As the Recorder: a frame is whole and follows the console output produced before it.
    frame_digest_ = chain_frame_digest(frame_digest_, icount, bytes);
    ++frames_sent_;
    flush_output();
    if (frame_output_) frame_output_(icount, bytes);
    if (output_) output_->output(channel, icount, bytes);
    return;
  }
  for (uint8_t byte : bytes) {
    output_digest_ = chain_output_digest(output_digest_, byte);
    if (!output_) continue;
    output_scratch_.push_back(static_cast<char>(byte));
    output_scratch_icount_ = icount;
    if (byte == '\n' || output_scratch_.size() >= 4096) flush_output();
  }
}

void Replayer::entropy(uint64_t icount, std::span<uint8_t> out) {
  std::memset(out.data(), 0, out.size());
  const log::Record* r = peek();
  if (!r || r->kind() != log::ENTROPY || r->icount() != icount || r->payload().size() != out.size()) {
    diverge(icount, "entropy request", r ? r->icount() : 0, icount);
    return;
  }
  std::memcpy(out.data(), r->payload().data(), out.size());
  pending_.pop_front();
  ++records_applied_;
}

}  // namespace tandem::hooks
