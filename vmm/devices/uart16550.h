#pragma once
// NS16550A UART (reg-shift 0, byte registers, as on QEMU virt). Transmission is instant:
// every THR write leaves through the output callback at once, so THR is always empty.
// Received bytes wait in an RX FIFO until the guest reads RBR.
#include <cstdint>
#include <functional>
#include <span>
#include <type_traits>

#include "vmm/device.h"

namespace tandem::vmm {

class Uart16550 final : public Device {
 public:
  static constexpr unsigned kRxFifoBytes = 256;  // deeper than the 16550's 16 to absorb pastes

  // Register offsets.
  static constexpr uint64_t kRbrThrDll = 0, kIerDlm = 1, kIirFcr = 2, kLcr = 3, kMcr = 4,
                            kLsr = 5, kMsr = 6, kScr = 7;
  static constexpr uint8_t kLsrDataReady = 0x01, kLsrOverrun = 0x02, kLsrThrEmpty = 0x20,
                           kLsrTxEmpty = 0x40;
  static constexpr uint8_t kIerRxAvailable = 0x01, kIerThrEmpty = 0x02;
  static constexpr uint8_t kIirNone = 0x01, kIirThrEmpty = 0x02, kIirRxAvailable = 0x04;
  static constexpr uint8_t kLcrDlab = 0x80;

  Uart16550(IrqLine irq, std::function<void(uint8_t)> output)
      : irq_(irq), output_(std::move(output)) {}

  std::string_view name() const override { return "uart16550"; }
  bool read(uint64_t offset, unsigned size, uint64_t& value) override;
  bool write(uint64_t offset, unsigned size, uint64_t value) override;
  void save(StateWriter& out) const override;
  void restore(StateReader& in) override;

  // Host → guest bytes. Returns how many were accepted (the rest would overflow the FIFO).
  size_t push_input(std::span<const uint8_t> bytes);
  size_t input_space() const { return kRxFifoBytes - state_.rx_count; }
  // Re-drives the interrupt line from the register state (after restore).
  void refresh_irq() { update_irq(); }

 private:
  struct State {
    uint8_t rx_fifo[kRxFifoBytes] = {};
    uint16_t rx_head = 0;
    uint16_t rx_count = 0;
    uint8_t ier = 0;
    uint8_t lcr = 0x03;  // 8N1
    uint8_t mcr = 0;
    uint8_t fcr = 0;
    uint8_t scr = 0;
    uint8_t dll = 0x0c;
    uint8_t dlm = 0;
    uint8_t overrun = 0;
    uint8_t thr_empty_pending = 0;  // THRE interrupt latched until IIR read or THR write
    uint8_t reserved = 0;
  };
  // Saved and hashed byte for byte: no padding allowed.
  static_assert(std::has_unique_object_representations_v<State>);
  uint8_t interrupt_id() const;
  void update_irq();

  IrqLine irq_;
  std::function<void(uint8_t)> output_;
  State state_;
};

}  // namespace tandem::vmm
