// A real secondary Node on 127.0.0.1 against a hand-driven primary (an authenticated link
// from make_tcp_transport) that sends a bad chunked pre-copy: parts out of order, a part
// with a flipped byte, a truncated part, and a whole (version-1 style) checkpoint. Each is
// refused with a SyncResult that says why, the link closes, and the node is an empty
// STANDBY secondary again, ready for the next primary.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "checkpoint/checkpoint.h"
#include "replicator/node.h"
#include "replicator/precopy.h"
#include "tests/replicator/transport_helpers.h"
#include "tests/support/null_world.h"
#include "vmm/machine.h"

namespace tandem::replicator {
namespace {

using namespace testing;

using test::NullWorld;

uint16_t free_port() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

class SyncRefusal : public ::testing::Test {
 protected:
  SyncRefusal() : dir_(std::filesystem::temp_directory_path() / ("tandem_sync_refusal_" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(dir_);
    NodeConfig c;
    c.node_name = "b";
    c.vm_id = kVmId;
    c.role = Role::Secondary;
    port_ = free_port();
    c.listen = "127.0.0.1:" + std::to_string(port_);
    c.psk = kPsk;
    c.heartbeat_ms = 100;
    c.heartbeat_misses = 50;
    c.state_dir = (dir_ / "state").string();
    c.fencing.vm_id = kVmId;
    c.fencing.psk = kPsk;
    node_ = std::make_unique<Node>(c);
    node_->start();

    // Parts of a 16 MiB machine with 1 MiB of random pages: several 256 KiB parts.
    vmm::MachineConfig mc;
    mc.mem_bytes = 16 << 20;
    vmm::Machine m(mc, world_);
    std::mt19937_64 rng(5);
    std::vector<uint8_t> bytes(1 << 20);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    EXPECT_TRUE(m.memory().write(m.memory().base() + (4 << 20), bytes));
    checkpoint::write_full_parts(m, 256 << 10, [&](std::string&& p) { parts_.push_back(std::move(p)); });
    whole_ = checkpoint::write_full(m);
  }
  ~SyncRefusal() override {
    node_->stop();
    node_.reset();
    std::filesystem::remove_all(dir_);
  }

  static wire::Envelope chunk(uint64_t sequence, uint32_t part, std::string stream) {
    wire::Envelope e;
    e.mutable_sync_chunk()->set_sequence(sequence);
    e.mutable_sync_chunk()->set_round(0);
    e.mutable_sync_chunk()->set_part(part);
    e.mutable_sync_chunk()->set_checkpoint(std::move(stream));
    return e;
  }

  // Connects as the primary, sends `messages`, and returns the secondary's refusal as its
  // status gives it (the SyncResult that carries it to the primary is checked when it
  // arrives: the secondary closes right after sending it, and a close can overtake it).
  std::string refusal_for(std::vector<wire::Envelope> messages) {
    auto transport = make_tcp_transport(identity(wire::PRIMARY));
    std::promise<std::shared_ptr<Link>> connected;
    transport->connect("127.0.0.1", port_, [&](std::shared_ptr<Link> l, std::string) { connected.set_value(l); });
    std::shared_ptr<Link> link = connected.get_future().get();
    if (!link) {
      ADD_FAILURE() << "no link to the secondary";
      return "";
    }
    auto inbox = std::make_shared<Inbox>();
    inbox->attach(*link);
    link->start();
    for (auto& m : messages) link->send(std::move(m));
    EXPECT_TRUE(inbox->wait_closed()) << "the secondary kept a link whose sync it refused";
    // The node is an empty standby again, with the reason in its status.
    EXPECT_TRUE(eventually([&] { return node_->status().state == PairState::Standby; }));
    std::string error = node_->status().last_error;
    EXPECT_TRUE(error.rfind("sync refused: ", 0) == 0 || error.rfind("sync failed: ", 0) == 0) << error;
    for (const auto& m : inbox->messages()) {
      if (m.has_sync_result()) {
        EXPECT_FALSE(m.sync_result().ok());
        EXPECT_NE(error.find(m.sync_result().error()), std::string::npos) << m.sync_result().error();
      }
    }
    transport->stop();
    return error;
  }

  std::filesystem::path dir_;
  uint16_t port_ = 0;
  std::unique_ptr<Node> node_;
  NullWorld world_;
  std::vector<std::string> parts_;
  std::string whole_;
};

TEST_F(SyncRefusal, PartsOutOfOrderAreRefused) {
  ASSERT_GE(parts_.size(), 3u);
  std::vector<wire::Envelope> m;
  m.push_back(chunk(0, 0, parts_[0]));
  m.push_back(chunk(2, 2, parts_[2]));  // message 1 is missing
  const std::string e = refusal_for(std::move(m));
  EXPECT_NE(e.find("sync message 2 (round 0 part 2) out of order: expected message 1 (messages are missing)"),
            std::string::npos) << e;

  m.clear();
  m.push_back(chunk(0, 0, parts_[0]));
  m.push_back(chunk(1, 1, parts_[1]));
  m.push_back(chunk(1, 1, parts_[1]));  // a repeat
  EXPECT_NE(refusal_for(std::move(m)).find("a repeat or an old message"), std::string::npos);
}

TEST_F(SyncRefusal, ACorruptPartIsRefused) {
  std::string bad = parts_[1];
  bad[bad.size() / 2] ^= 0x40;
  std::vector<wire::Envelope> m;
  m.push_back(chunk(0, 0, parts_[0]));
  m.push_back(chunk(1, 1, bad));
  const std::string e = refusal_for(std::move(m));
  EXPECT_NE(e.find("checkpoint: stream corrupt"), std::string::npos) << e;
}

TEST_F(SyncRefusal, ATruncatedPartIsRefused) {
  std::vector<wire::Envelope> m;
  m.push_back(chunk(0, 0, parts_[0].substr(0, parts_[0].size() - 100)));
  const std::string e = refusal_for(std::move(m));
  EXPECT_NE(e.find("checkpoint: stream truncated"), std::string::npos) << e;
}

TEST_F(SyncRefusal, AWholeCheckpointIsNotAPart) {
  std::vector<wire::Envelope> m;
  m.push_back(chunk(0, 0, whole_));
  const std::string e = refusal_for(std::move(m));
  EXPECT_NE(e.find("sync message 0 holds a full checkpoint with core state; expected a part without core state"),
            std::string::npos) << e;
}

}  // namespace
}  // namespace tandem::replicator
