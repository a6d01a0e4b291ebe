// NS16550A register model: THR output, RX FIFO, LSR bits, DLAB, IIR priority and the
// interrupt line it drives.
#include <gtest/gtest.h>

#include <vector>

#include "tests/vmm/device_test_support.h"
#include "vmm/devices/uart16550.h"

namespace tandem::vmm {
namespace {

using testing::LevelRecorder;
using testing::VectorSink;
using testing::VectorSource;

class UartTest : public ::testing::Test {
 protected:
  UartTest() : uart(IrqLine{&irq, 10}, [this](uint8_t b) { output.push_back(b); }) {}
  uint8_t rd(uint64_t off) {
    uint64_t v = 0xdead;
    EXPECT_TRUE(uart.read(off, 1, v));
    return static_cast<uint8_t>(v);
  }
  void wr(uint64_t off, uint8_t v) { EXPECT_TRUE(uart.write(off, 1, v)); }

  LevelRecorder irq;
  std::vector<uint8_t> output;
  Uart16550 uart;
};

TEST_F(UartTest, TransmitGoesToOutputAndThrIsAlwaysEmpty) {
  wr(Uart16550::kRbrThrDll, 'h');
  wr(Uart16550::kRbrThrDll, 'i');
  EXPECT_EQ(output, (std::vector<uint8_t>{'h', 'i'}));
  const uint8_t lsr = rd(Uart16550::kLsr);
  EXPECT_TRUE(lsr & Uart16550::kLsrThrEmpty);
  EXPECT_TRUE(lsr & Uart16550::kLsrTxEmpty);
  EXPECT_FALSE(lsr & Uart16550::kLsrDataReady);
}

TEST_F(UartTest, ReceiveFifoKeepsOrderAndDataReadyFollowsIt) {
  const uint8_t in[] = {'a', 'b', 'c'};
  EXPECT_EQ(uart.push_input(in), 3u);
  EXPECT_TRUE(rd(Uart16550::kLsr) & Uart16550::kLsrDataReady);
  EXPECT_EQ(rd(Uart16550::kRbrThrDll), 'a');
  EXPECT_EQ(rd(Uart16550::kRbrThrDll), 'b');
  EXPECT_EQ(rd(Uart16550::kRbrThrDll), 'c');
  EXPECT_FALSE(rd(Uart16550::kLsr) & Uart16550::kLsrDataReady);
  EXPECT_EQ(rd(Uart16550::kRbrThrDll), 0);  // empty FIFO reads zero
}

TEST_F(UartTest, FullFifoRefusesTheRestAndFlagsOverrun) {
  std::vector<uint8_t> in(Uart16550::kRxFifoBytes + 10, 'x');
  EXPECT_EQ(uart.input_space(), Uart16550::kRxFifoBytes);
  EXPECT_EQ(uart.push_input(in), Uart16550::kRxFifoBytes);
  EXPECT_EQ(uart.input_space(), 0u);
  const uint8_t lsr = rd(Uart16550::kLsr);
  EXPECT_TRUE(lsr & Uart16550::kLsrOverrun);
  EXPECT_FALSE(rd(Uart16550::kLsr) & Uart16550::kLsrOverrun);  // cleared by the read
}

TEST_F(UartTest, DlabSwitchesToDivisorLatch) {
  wr(Uart16550::kLcr, 0x83);
  wr(Uart16550::kRbrThrDll, 0x01);
  wr(Uart16550::kIerDlm, 0x02);
  EXPECT_TRUE(output.empty());  // a DLL write is not a transmit
  EXPECT_EQ(rd(Uart16550::kRbrThrDll), 0x01);
  EXPECT_EQ(rd(Uart16550::kIerDlm), 0x02);
  wr(Uart16550::kLcr, 0x03);
  EXPECT_EQ(rd(Uart16550::kIerDlm), 0x00);  // IER untouched by the DLM write
  EXPECT_EQ(rd(Uart16550::kLcr), 0x03);
}

TEST_F(UartTest, ScratchRegisterHoldsValue) {
  wr(Uart16550::kScr, 0x5a);
  EXPECT_EQ(rd(Uart16550::kScr), 0x5a);
}

TEST_F(UartTest, RxInterruptRaisesLineOnlyWhenEnabled) {
  const uint8_t in[] = {'z'};
  uart.push_input(in);
  EXPECT_FALSE(irq.at(10));
  EXPECT_EQ(rd(Uart16550::kIirFcr) & 0x0f, Uart16550::kIirNone);
  wr(Uart16550::kIerDlm, Uart16550::kIerRxAvailable);
  EXPECT_TRUE(irq.at(10));
  EXPECT_EQ(rd(Uart16550::kIirFcr) & 0x0f, Uart16550::kIirRxAvailable);
  rd(Uart16550::kRbrThrDll);
  EXPECT_FALSE(irq.at(10));
}

TEST_F(UartTest, ThrEmptyInterruptOnEnableAndAfterTransmitClearedByIirRead) {
  wr(Uart16550::kIerDlm, Uart16550::kIerThrEmpty);
  EXPECT_TRUE(irq.at(10));
  EXPECT_EQ(rd(Uart16550::kIirFcr) & 0x0f, Uart16550::kIirThrEmpty);
  EXPECT_FALSE(irq.at(10));  // reading IIR acknowledged it
  wr(Uart16550::kRbrThrDll, '!');
  EXPECT_TRUE(irq.at(10));
}

TEST_F(UartTest, RxHasPriorityOverThrEmpty) {
  wr(Uart16550::kIerDlm, Uart16550::kIerThrEmpty | Uart16550::kIerRxAvailable);
  const uint8_t in[] = {'q'};
  uart.push_input(in);
  EXPECT_EQ(rd(Uart16550::kIirFcr) & 0x0f, Uart16550::kIirRxAvailable);
}

TEST_F(UartTest, FifoControlReportsFifosAndClearsRx) {
  wr(Uart16550::kIirFcr, 0x01);
  EXPECT_EQ(rd(Uart16550::kIirFcr) & 0xc0, 0xc0);
  const uint8_t in[] = {'1', '2'};
  uart.push_input(in);
  wr(Uart16550::kIirFcr, 0x03);  // enable + clear RX
  EXPECT_FALSE(rd(Uart16550::kLsr) & Uart16550::kLsrDataReady);
}

TEST_F(UartTest, SaveRestoreKeepsFifoAndRegisters) {
  const uint8_t in[] = {'s', 't'};
  uart.push_input(in);
  wr(Uart16550::kIerDlm, Uart16550::kIerRxAvailable);
  VectorSink sink;
  StateWriter w(sink);
  uart.save(w);

  LevelRecorder irq2;
  Uart16550 copy(IrqLine{&irq2, 10}, nullptr);
  VectorSource src(sink.bytes);
  StateReader r(src);
  copy.restore(r);
  EXPECT_TRUE(irq2.at(10));  // the line is re-driven from the restored state
  uint64_t v;
  copy.read(Uart16550::kRbrThrDll, 1, v);
  EXPECT_EQ(v, 's');
  copy.read(Uart16550::kRbrThrDll, 1, v);
  EXPECT_EQ(v, 't');
}

TEST_F(UartTest, RestoreRefusesWrongTagAndCorruptIndices) {
  VectorSink sink;
  StateWriter w(sink);
  uart.save(w);
  std::vector<uint8_t> bad_tag = sink.bytes;
  bad_tag[0] = 'X';
  VectorSource s1(bad_tag);
  StateReader r1(s1);
  EXPECT_THROW(uart.restore(r1), StateError);

  std::vector<uint8_t> bad_index = sink.bytes;
  bad_index[4 + Uart16550::kRxFifoBytes] = 0xff;  // rx_head low byte
  bad_index[4 + Uart16550::kRxFifoBytes + 1] = 0xff;
  VectorSource s2(bad_index);
  StateReader r2(s2);
  EXPECT_THROW(uart.restore(r2), StateError);

  std::vector<uint8_t> truncated(sink.bytes.begin(), sink.bytes.begin() + 10);
  VectorSource s3(truncated);
  StateReader r3(s3);
  EXPECT_THROW(uart.restore(r3), StateError);
}

}  // namespace
}  // namespace tandem::vmm
