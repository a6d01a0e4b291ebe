#pragma once
// The non-determinism boundary as the machine sees it. The machine calls World at every
// point where the outside world can reach in or out; vmm-hooks implements it (Live,
// Recorder, Replayer). Nothing else in vmm/ reads a host clock, a host file descriptor
// after boot, or a random source.
#include <cstddef>
#include <cstdint>
#include <span>

namespace tandem::vmm {

class Machine;

// What guest output is. Every channel obeys the same output rule in the pair (held until the
// secondary acknowledged the log up to the icount that produced it, released in order).
enum class OutputChannel : uint8_t {
  Console = 0,  // bytes the guest wrote to its UART (one byte per call today)
  Net = 1,      // one Ethernet frame the guest transmitted (one whole frame per call)
};
inline constexpr size_t kOutputChannels = 2;
inline constexpr const char* to_string(OutputChannel channel) {
  return channel == OutputChannel::Console ? "console" : "net";
}

class World {
 public:
  virtual ~World() = default;

  // The icount at or before which the machine must next call service(). The machine
  // never runs past it without calling service(); a World that wants to poll for input
  // every N instructions returns now + N.
  virtual uint64_t next_service_icount(uint64_t now) = 0;
  // Called at an exact icount (deterministic for Replayer); may inject inputs through the
  // machine's input methods (e.g. Machine::console_input) and adjust its clock.
  virtual void service(Machine& machine) = 0;

  // The guest waits in WFI with no interrupt pending. `deadline_mtime` is the next timer
  // deadline (UINT64_MAX if none). The World either advances the machine's clock (a logged
  // idle skip), injects input, or both. Returning false means "nothing will ever happen"
  // (no deadline, no input source): the machine then stops with Exit::Idle.
  virtual bool idle(Machine& machine, uint64_t deadline_mtime) = 0;

  // Guest output on `channel`, produced by the instruction at `icount`: console bytes, or
  // one whole Ethernet frame (without the virtio header, already checked against the NIC's
  // MTU). The bytes are only valid during the call.
  virtual void output(OutputChannel channel, uint64_t icount, std::span<const uint8_t> bytes) = 0;
  // One console byte (the UART's transmit path).
  void console_output(uint64_t icount, uint8_t byte) { output(OutputChannel::Console, icount, {&byte, 1}); }

  // Entropy requested by a device at `icount` (virtio-rng); fill `out`.
  virtual void entropy(uint64_t icount, std::span<uint8_t> out) = 0;
};

}  // namespace tandem::vmm
