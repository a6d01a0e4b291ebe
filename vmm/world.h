#pragma once
// The non-determinism boundary as the machine sees it. The machine calls World at every
// point where the outside world can reach in or out; vmm-hooks implements it (Live,
// Recorder, Replayer). Nothing else in vmm/ reads a host clock, a host file descriptor
// after boot, or a random source.
#include <cstdint>
#include <span>

namespace tandem::vmm {

class Machine;

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

  // Guest output: one console byte produced at `icount`.
  virtual void console_output(uint64_t icount, uint8_t byte) = 0;

  // Entropy requested by a device at `icount` (virtio-rng); fill `out`.
  virtual void entropy(uint64_t icount, std::span<uint8_t> out) = 0;

  // Guest output: one Ethernet frame (without the virtio header) transmitted by the NIC at
  // `icount`. Already checked against the NIC's MTU. The default drops it (a World
  // without a network). Temporary until World::output(channel, icount, bytes) lands.
  virtual void net_output(uint64_t /*icount*/, std::span<const uint8_t> /*frame*/) {}
};

}  // namespace tandem::vmm
