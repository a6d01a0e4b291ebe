#include "vmm/devices/uart16550.h"

namespace tandem::vmm {

uint8_t Uart16550::interrupt_id() const {
  // Priority as on the 16550: received data first, then THR empty.
  if ((state_.ier & kIerRxAvailable) && state_.rx_count > 0) return kIirRxAvailable;
  if ((state_.ier & kIerThrEmpty) && state_.thr_empty_pending) return kIirThrEmpty;
  return kIirNone;
}

void Uart16550::update_irq() { irq_.set(interrupt_id() != kIirNone); }

bool Uart16550::read(uint64_t offset, unsigned /*size*/, uint64_t& value) {
  const bool dlab = state_.lcr & kLcrDlab;
  uint8_t v = 0;
  switch (offset) {
    case kRbrThrDll:
      if (dlab) {
        v = state_.dll;
      } else if (state_.rx_count > 0) {
        v = state_.rx_fifo[state_.rx_head];
        state_.rx_head = (state_.rx_head + 1) % kRxFifoBytes;
        --state_.rx_count;
        update_irq();
      }
      break;
    case kIerDlm:
      v = dlab ? state_.dlm : state_.ier;
      break;
    case kIirFcr: {
      const uint8_t id = interrupt_id();
      v = id | ((state_.fcr & 0x01) ? 0xc0 : 0x00);
      // Reading IIR while it reports THR empty acknowledges that interrupt.
      if (id == kIirThrEmpty) {
        state_.thr_empty_pending = 0;
        update_irq();
      }
      break;
    }
    case kLcr:
      v = state_.lcr;
      break;
    case kMcr:
      v = state_.mcr;
      break;
    case kLsr:
      v = kLsrThrEmpty | kLsrTxEmpty | (state_.rx_count > 0 ? kLsrDataReady : 0) |
          (state_.overrun ? kLsrOverrun : 0);
      state_.overrun = 0;  // OE clears on LSR read
      break;
    case kMsr:
      // Loopback reflects MCR outputs; otherwise report carrier, DSR and CTS asserted.
      v = (state_.mcr & 0x10) ? static_cast<uint8_t>((state_.mcr & 0x0f) << 4) : 0xb0;
      break;
    case kScr:
      v = state_.scr;
      break;
    default:
      v = 0;  // the rest of the 0x100 window reads as zero
  }
  value = v;
  return true;
}

bool Uart16550::write(uint64_t offset, unsigned /*size*/, uint64_t value) {
  const uint8_t v = static_cast<uint8_t>(value);
  const bool dlab = state_.lcr & kLcrDlab;
  switch (offset) {
    case kRbrThrDll:
      if (dlab) {
        state_.dll = v;
      } else {
        if (output_) output_(v);
        // The byte left at once: THR is empty again and says so.
        state_.thr_empty_pending = 1;
        update_irq();
      }
      break;
    case kIerDlm:
      if (dlab) {
        state_.dlm = v;
      } else {
        const bool thre_enabled_now = (v & kIerThrEmpty) && !(state_.ier & kIerThrEmpty);
        state_.ier = v & 0x0f;
        // Enabling THRE interrupts while THR is empty raises one immediately (16550 behaviour).
        if (thre_enabled_now) state_.thr_empty_pending = 1;
        update_irq();
      }
      break;
    case kIirFcr:
      state_.fcr = v & 0xc9;
      if (v & 0x02) {  // clear RX FIFO
        state_.rx_head = 0;
        state_.rx_count = 0;
      }
      update_irq();
      break;
    case kLcr:
      state_.lcr = v;
      break;
    case kMcr:
      state_.mcr = v & 0x1f;
      break;
    case kScr:
      state_.scr = v;
      break;
    default:
      break;  // LSR/MSR are read-only; the rest of the window ignores writes
  }
  return true;
}

size_t Uart16550::push_input(std::span<const uint8_t> bytes) {
  size_t accepted = 0;
  for (uint8_t b : bytes) {
    if (state_.rx_count == kRxFifoBytes) {
      state_.overrun = 1;
      break;
    }
    state_.rx_fifo[(state_.rx_head + state_.rx_count) % kRxFifoBytes] = b;
    ++state_.rx_count;
    ++accepted;
  }
  update_irq();
  return accepted;
}

void Uart16550::save(StateWriter& out) const {
  out.tag("UART");
  out.pod(state_);
}

void Uart16550::restore(StateReader& in) {
  in.expect_tag("UART");
  State s;
  in.pod(s);
  if (s.rx_head >= kRxFifoBytes || s.rx_count > kRxFifoBytes) {
    throw StateError("snapshot: UART RX FIFO indices out of range");
  }
  state_ = s;
  update_irq();
}

}  // namespace tandem::vmm
