#include "vmm-hooks/recorder.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "vmm/clock.h"
#include "vmm/devices/disk_image.h"

namespace tandem::hooks {

namespace {
constexpr uint64_t kNsPerTick = 1'000'000'000 / vmm::kTimebaseHz;
// While idle with no deadline the recorder still wakes this often to flush its batch.
constexpr auto kIdleWakeup = std::chrono::milliseconds(50);
// Received frames injected per service point at most (the rest wait for the next).
constexpr unsigned kMaxFramesPerService = 64;
}  // namespace

uint64_t chain_frame_digest(uint64_t digest, uint64_t icount, std::span<const uint8_t> frame) {
  return XXH3_64bits_withSeed(frame.data(), frame.size(), XXH3_64bits_withSeed(&icount, sizeof icount, digest));
}

uint64_t file_digest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return 0;
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    XXH3_64bits_update(state, buf.data(), static_cast<size_t>(in.gcount()));
  }
  const uint64_t digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return digest;
}

Recorder::Recorder(ConsolePort& console, RecorderOptions options)
    : console_(console), direct_(&console, options.net), output_(direct_), options_(options) {}

Recorder::Recorder(ConsolePort& input, OutputSink& output, RecorderOptions options)
    : console_(input), output_(output), options_(options) {}

void Recorder::log_output_released(uint64_t icount, vmm::OutputChannel channel, uint64_t released) {
  log::Record& r = add(icount, log::OUTPUT_RELEASED);
  r.set_value(released);
  if (channel != vmm::OutputChannel::Console) r.set_channel(static_cast<uint32_t>(channel));
}

bool Recorder::wait_input(std::chrono::nanoseconds timeout) {
  output_.pump();
  return console_.wait_input(timeout);
}

log::LogHeader Recorder::make_header(vmm::Machine& machine, const std::string& guest_path) const {
  log::LogHeader header;
  header.set_format_version(kLogFormatVersion);
  auto* config = header.mutable_config();
  config->set_mem_bytes(machine.config().mem_bytes);
  config->set_guest_name(std::filesystem::path(guest_path).filename().string());
  config->set_guest_digest(file_digest(guest_path));
  if (const vmm::DiskImage* disk = machine.board().disk()) {
    // The disk's content hash (cached block hashes), not a read of the whole image: the pair
    // builds this header while the guest is paused for the stop-and-copy.
    config->set_disk_bytes(disk->size_bytes());
    config->set_disk_digest(disk->content_hash());
  }
  if (const vmm::VirtioNet* net = machine.board().net()) {
    auto* nic = config->mutable_nic();
    nic->set_mac(std::string(net->config().mac.begin(), net->config().mac.end()));
    nic->set_mtu(net->config().mtu);
    nic->set_link_up(net->link_up());
  }
  header.set_initial_state_hash(machine.state_hash());
  header.set_audit_interval(options_.audit_interval);
  header.set_start_icount(machine.icount());
  return header;
}

void Recorder::begin(vmm::Machine& machine, BatchSink& sink) {
  sink_ = &sink;
  // A log starts afresh: its batches count from 0 and its output digest from the seed, as
  // a replayer that starts at this icount will.
  batch_.Clear();
  next_sequence_ = 0;
  last_icount_ = last_complete_to_ = machine.icount();
  output_digest_ = last_logged_digest_ = kOutputDigestSeed;
  frame_digest_ = last_logged_frame_digest_ = kFrameDigestSeed;
  output_since_flush_ = false;
  start_wall_ = last_flush_ = std::chrono::steady_clock::now();
  start_mtime_ = machine.clock().mtime(machine.icount());
  next_audit_ = options_.audit_interval
                    ? (machine.icount() / options_.audit_interval + 1) * options_.audit_interval
                    : UINT64_MAX;
}

log::Record& Recorder::add(uint64_t icount, log::RecordKind kind) {
  log::Record* r = batch_.add_records();
  r->set_icount(icount);
  r->set_kind(kind);
  ++records_written_;
  return *r;
}

void Recorder::flush() {
  if (!sink_) {
    batch_.Clear();  // not recording (standalone): nothing to keep
    return;
  }
  if (batch_.records_size() == 0 && last_icount_ <= last_complete_to_) return;
  // Records are only ever added at the current icount or later, so everything before
  // the current icount is in the log once this batch is out.
  batch_.set_complete_to_icount(last_icount_);
  last_complete_to_ = last_icount_;
  output_since_flush_ = false;
  batch_.set_sequence(next_sequence_++);
  sink_->write_batch(batch_);
  batch_.Clear();
  last_flush_ = std::chrono::steady_clock::now();
}

void Recorder::maybe_flush() {
  // Output waits for its log to reach the secondary (the output rule), so a batch that
  // covers output goes out at once; otherwise batches gather for flush_interval.
  if (output_since_flush_ || batch_.records_size() >= static_cast<int>(options_.max_batch_records) ||
      std::chrono::steady_clock::now() - last_flush_ >= options_.flush_interval) {
    flush();
  }
}

void Recorder::log_digests(uint64_t icount) {
  if (output_digest_ != last_logged_digest_) {
    add(icount, log::OUTPUT_DIGEST).set_value(output_digest_);
    last_logged_digest_ = output_digest_;
  }
  if (frame_digest_ != last_logged_frame_digest_) {
    add(icount, log::NET_TX_DIGEST).set_value(frame_digest_);
    last_logged_frame_digest_ = frame_digest_;
  }
}

void Recorder::finish(vmm::Machine& machine, const vmm::RunResult& result) {
  last_icount_ = machine.icount();
  log_digests(machine.icount());
  add(machine.icount(), log::AUDIT).set_value(machine.state_hash());
  add(machine.icount(), log::END).set_value(static_cast<uint64_t>(result.exit) << 32 | result.code);
  flush();
  write_pending_output();
  output_.flush();
}

uint64_t Recorder::next_service_icount(uint64_t now) {
  // Service points on a fixed icount grid, so where the run is sliced does not depend on
  // history (the replayer stops only where records are, and either way is the same run).
  const uint64_t next_poll = (now / options_.poll_interval + 1) * options_.poll_interval;
  return std::min(next_poll, next_audit_);
}

uint64_t Recorder::wall_ticks() const {
  const auto elapsed = std::chrono::steady_clock::now() - start_wall_;
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count()) /
         kNsPerTick;
}

void Recorder::sync_time(vmm::Machine& machine) {
  if (options_.time != GuestTime::Wall) return;
  const uint64_t guest = machine.clock().mtime(machine.icount()) - start_mtime_;
  const uint64_t wall = wall_ticks();
  const uint64_t max_lag = static_cast<uint64_t>(options_.max_time_lag.count()) * 1000 / kNsPerTick;
  if (wall > guest + max_lag) {
    const uint64_t ticks = wall - guest;
    machine.clock().advance(ticks);
    add(machine.icount(), log::TIME_ADJUST).set_value(ticks);
  }
}

bool Recorder::inject_console(vmm::Machine& machine) {
  const size_t space = machine.console_input_space();
  if (space == 0) return false;
  input_scratch_.clear();
  if (console_.read_input(input_scratch_, space) == 0) return false;
  // read_input returns at most `space` bytes, so the UART accepts all of them.
  const size_t accepted = machine.console_input(input_scratch_);
  add(machine.icount(), log::CONSOLE_INPUT)
      .set_payload(std::string(input_scratch_.begin(), input_scratch_.begin() + accepted));
  return true;
}

bool Recorder::inject_frames(vmm::Machine& machine) {
  if (!options_.net) return false;
  bool any = false;
  for (unsigned n = 0; n < kMaxFramesPerService && machine.net_can_receive() && options_.net->receive(frame_scratch_); ++n) {
    const bool delivered = machine.net_input(frame_scratch_);
    log::Record& r = add(machine.icount(), log::NET_RX);
    r.set_payload(std::string(frame_scratch_.begin(), frame_scratch_.end()));
    r.set_value(delivered ? 1 : 0);
    any = true;
  }
  return any;
}

void Recorder::set_link(vmm::Machine& machine, bool up) {
  machine.net_set_link(up);
  add(machine.icount(), log::NET_LINK).set_value(up ? 1 : 0);
}

void Recorder::audit_if_due(vmm::Machine& machine) {
  if (machine.icount() < next_audit_) return;
  log_digests(machine.icount());
  add(machine.icount(), log::AUDIT).set_value(machine.state_hash());
  next_audit_ = (machine.icount() / options_.audit_interval + 1) * options_.audit_interval;
}

void Recorder::service(vmm::Machine& machine) {
  last_icount_ = machine.icount();
  audit_if_due(machine);
  sync_time(machine);
  inject_all(machine);
  write_pending_output();
  maybe_flush();
}

bool Recorder::idle(vmm::Machine& machine, uint64_t deadline_mtime) {
  last_icount_ = machine.icount();
  write_pending_output();
  output_.flush();
  maybe_flush();
  const bool has_deadline = deadline_mtime != UINT64_MAX;

  if (options_.time == GuestTime::Virtual) {
    // Every idle that returns true logs exactly one IDLE_SKIP (maybe of 0 ticks) first, so
    // the replayer knows the guest waited here; inputs delivered while idle follow it.
    if (input_waiting(machine)) {
      add(machine.icount(), log::IDLE_SKIP).set_value(0);
      inject_all(machine);
      return true;
    }
    if (has_deadline) {
      const uint64_t now = machine.clock().mtime(machine.icount());
      const uint64_t skip = deadline_mtime > now ? deadline_mtime - now : 0;
      machine.clock().advance(skip);
      add(machine.icount(), log::IDLE_SKIP).set_value(skip);
      return true;
    }
    // No timer armed: only input can wake the guest, however long it takes.
    while ((options_.net || !console_.input_closed()) && !interrupted()) {
      output_.pump();  // held output that may leave now does not wait for the guest
      wait_console_or_net(console_, options_.net, machine.net_can_receive(), kIdleWakeup);
      if (input_waiting(machine)) {
        add(machine.icount(), log::IDLE_SKIP).set_value(0);
        inject_all(machine);
        return true;
      }
      maybe_flush();
    }
    return false;
  }

  // Wall time: sleep until the deadline comes in wall time, or until input arrives; then
  // move guest time forward to wall time (never past the deadline), log it, deliver input.
  for (;;) {
    const uint64_t guest_now = machine.clock().mtime(machine.icount());
    const uint64_t wall_now = start_mtime_ + wall_ticks();
    const bool input_ready = input_waiting(machine);
    const bool due = has_deadline && std::max(guest_now, wall_now) >= deadline_mtime;
    if (input_ready || due) {
      const uint64_t target =
          std::max(guest_now, has_deadline ? std::min(wall_now, deadline_mtime) : wall_now);
      const uint64_t skip = std::max(target, due ? deadline_mtime : 0) - guest_now;
      machine.clock().advance(skip);
      add(machine.icount(), log::IDLE_SKIP).set_value(skip);
      inject_all(machine);
      return true;
    }
    if ((!has_deadline && console_.input_closed() && !options_.net) || interrupted()) return false;
    auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(kIdleWakeup);
    if (has_deadline) {
      wait = std::min(wait, std::chrono::nanoseconds((deadline_mtime - wall_now) * kNsPerTick));
    }
    output_.pump();  // held output that may leave now does not wait for the guest
    wait_console_or_net(console_, options_.net, machine.net_can_receive(), wait);
    maybe_flush();
  }
}

bool Recorder::interrupted() const {
  return options_.interrupt_flag != nullptr && *options_.interrupt_flag != 0;
}

bool Recorder::input_waiting(vmm::Machine& machine) {
  if (machine.console_input_space() > 0 && wait_input(std::chrono::nanoseconds(0))) return true;
  return options_.net && machine.net_can_receive() && options_.net->wait_frame(std::chrono::nanoseconds(0));
}

void Recorder::write_pending_output() {
  if (output_scratch_.empty()) return;
  output_.output(vmm::OutputChannel::Console, output_scratch_icount_,
                 {reinterpret_cast<const uint8_t*>(output_scratch_.data()), output_scratch_.size()});
  output_scratch_.clear();
}

void Recorder::output(vmm::OutputChannel channel, uint64_t icount, std::span<const uint8_t> bytes) {
  last_icount_ = icount;
  output_since_flush_ = true;  // the batch covering it goes out at once (maybe_flush)
  if (channel == vmm::OutputChannel::Net) {
    // A frame is whole: it goes on at once (to the NIC's host side, or through the pair's
    // output gate), after the console output produced before it.
    frame_digest_ = chain_frame_digest(frame_digest_, icount, bytes);
    ++frames_sent_;
    write_pending_output();
    output_.output(channel, icount, bytes);
    return;
  }
  for (uint8_t byte : bytes) {
    output_digest_ = chain_output_digest(output_digest_, byte);
    output_scratch_.push_back(static_cast<char>(byte));
    output_scratch_icount_ = icount;
    if (byte == '\n' || output_scratch_.size() >= 4096) write_pending_output();
  }
}

void Recorder::entropy(uint64_t icount, std::span<uint8_t> out) {
  std::random_device rd;
  for (size_t i = 0; i < out.size(); i += 4) {
    const uint32_t v = rd();
    std::memcpy(out.data() + i, &v, std::min<size_t>(4, out.size() - i));
  }
  add(icount, log::ENTROPY).set_payload(std::string(out.begin(), out.end()));
}

}  // namespace tandem::hooks
