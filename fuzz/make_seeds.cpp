// Writes the generated seed corpora (docs/fuzzing.md): real checkpoint streams, pre-copy
// part streams, event logs, virtio requests, witness requests and state files, heartbeats
// and link frames, made with the project's own writers so they follow the current formats.
// Usage: fuzz_make_seeds OUT_DIR (one subdirectory per target).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "checkpoint/checkpoint.h"
#include "fencing/witness/protocol.h"
#include "fencing/witness/state.h"
#include "fuzz/fuzz_support.h"
#include "fuzz/seed_machine.h"
#include "fuzz/virtio_harness.h"
#include "proto/fencing.pb.h"
#include "proto/replication.pb.h"
#include "net/frame.h"
#include "tests/checkpoint/test_guests.h"
#include "tests/vmm/elf_image.h"
#include "vmm-hooks/event_log.h"
#include "vmm/devices/disk_image.h"
#include "vmm/devices/virtio_blk.h"
#include "vmm/devices/virtio_queue.h"

namespace fs = std::filesystem;
using namespace tandem;

namespace {

fs::path out_dir;

void put(const std::string& target, const std::string& name, const std::string& bytes) {
  const fs::path dir = out_dir / target;
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

std::string u32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string u64(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }

// A SeedMachine running the walker guest (tests/checkpoint/test_guests.h) over 64 KiB.
struct Running {
  fuzz::SeedMachine m{{0x5a, 0x00, 0x17, 0x42}};
  fuzz::MemFile image{"fuzz-seed-image"};
  Running() {
    const auto code = checkpoint::testing::walker_image(64 << 10);
    image.set(code.data(), code.size());
    m.machine().load(image.path());
  }
  void run(uint64_t n) { m.machine().run_until(m.machine().icount() + n); }
  void disk_write(uint64_t offset, uint8_t value) {
    const std::vector<uint8_t> bytes(4096, value);
    m.machine().board().disk()->write(offset, bytes);
  }
};

void checkpoints() {
  using checkpoint::Compression;
  for (auto [c, name] : {std::pair{Compression::None, "none"}, {Compression::Lz4, "lz4"}, {Compression::Zstd, "zstd"}}) {
    Running r;
    r.run(20000);
    checkpoint::Options o;
    o.compression = c;
    put("checkpoint", std::string("full-") + name, checkpoint::write_full(r.m.machine(), o));
    r.run(5000);
    r.disk_write(8192, 0x33);
    put("checkpoint", std::string("incremental-core-") + name, checkpoint::write_incremental(r.m.machine(), o));
    r.run(5000);
    o.include_core = false;
    put("checkpoint", std::string("incremental-") + name, checkpoint::write_incremental(r.m.machine(), o));
  }
}

// The messages of one initial sync, as the primary sends them (two rounds and the close).
void precopy() {
  Running r;
  r.run(20000);
  std::string seed(1, '\0');  // mode byte: hashes recomputed by the target (they are right anyway)
  uint64_t sequence = 0;
  uint32_t round = 0, part = 0;
  const auto add = [&](std::string&& stream, bool last) {
    wire::SyncChunk chunk;
    chunk.set_round(round);
    chunk.set_part(part++);
    chunk.set_sequence(sequence++);
    chunk.set_last(last);
    if (last) {
      chunk.set_icount(r.m.machine().icount());
      chunk.set_state_hash(r.m.machine().state_hash());
    }
    chunk.set_checkpoint(std::move(stream));
    const std::string bytes = chunk.SerializeAsString();
    seed += u32(static_cast<uint32_t>(bytes.size())) + bytes;
  };
  checkpoint::write_full_parts(r.m.machine(), 256 << 10, [&](std::string&& p) { add(std::move(p), false); });
  put("precopy", "round0", seed);
  r.run(5000);
  r.disk_write(4096, 0x77);
  ++round;
  part = 0;
  checkpoint::write_incremental_parts(r.m.machine(), 16 << 10, [&](std::string&& p) { add(std::move(p), false); });
  checkpoint::Options o;
  o.include_core = true;
  add(checkpoint::write_incremental(r.m.machine(), o), true);
  put("precopy", "sync", seed);
}

void event_logs() {
  log::LogHeader header;
  header.set_format_version(hooks::kLogFormatVersion);
  header.mutable_config()->set_mem_bytes(fuzz::kMemBytes);
  header.mutable_config()->set_guest_name("walker");
  header.mutable_config()->set_guest_digest(0x1234);
  header.set_initial_state_hash(0xabcdef);
  header.set_audit_interval(100000);
  const std::string path = (out_dir / "event_log.tmp").string();
  {
    hooks::LogFileWriter writer(path, header);
    uint64_t icount = 0;
    for (uint64_t s = 0; s < 3; ++s) {
      log::LogBatch batch;
      batch.set_sequence(s);
      for (int k = log::CONSOLE_INPUT; k <= log::OUTPUT_RELEASED; ++k) {
        auto* rec = batch.add_records();
        rec->set_icount(icount += 1000);
        rec->set_kind(static_cast<log::RecordKind>(k));
        if (k == log::CONSOLE_INPUT || k == log::ENTROPY) rec->set_payload("hello\n");
        else rec->set_value(icount * 7);
      }
      batch.set_complete_to_icount(icount);
      writer.append(batch);
    }
  }
  std::ifstream in(path, std::ios::binary);
  put("event_log", "three-batches", std::string(std::istreambuf_iterator<char>(in), {}));
  fs::remove(path);
}

void virtio_requests() {
  using namespace fuzz::virtio;
  using vmm::VirtQueue;
  const uint64_t header = kBuffers, data = kBuffers + 0x100, status = kBuffers + 0x1100;
  const auto blk = [&](const char* name, uint32_t type, uint64_t sector, uint32_t len, bool device_writes) {
    std::string ram;
    std::string h = u32(type) + u32(0) + u64(sector);
    put_bytes(ram, header, h);
    put_bytes(ram, data, std::string(len, 'd'));
    put_bytes(ram, status, "\xee");
    put_desc(ram, 0, 0, header, 16, VirtQueue::kDescNext, 1);
    put_desc(ram, 0, 1, data, len, VirtQueue::kDescNext | (device_writes ? VirtQueue::kDescWrite : 0), 2);
    put_desc(ram, 0, 2, status, 1, VirtQueue::kDescWrite, 0);
    put_avail(ram, 0, {0});
    put("virtio", name, input(0, 3, ram, std::string(1, kNotify)));
  };
  blk("blk-in", vmm::VirtioBlk::kTypeIn, 2, 1024, true);
  blk("blk-out", vmm::VirtioBlk::kTypeOut, 4, 512, false);
  blk("blk-get-id", vmm::VirtioBlk::kTypeGetId, 0, vmm::VirtioBlk::kIdBytes, true);
  {
    std::string ram;
    put_bytes(ram, header, u32(vmm::VirtioBlk::kTypeFlush) + u32(0) + u64(0));
    put_desc(ram, 0, 0, header, 16, VirtQueue::kDescNext, 1);
    put_desc(ram, 0, 1, status, 1, VirtQueue::kDescWrite, 0);
    put_avail(ram, 0, {0});
    put("virtio", "blk-flush", input(0, 3, ram));
  }
  {
    std::string ram;
    put_desc(ram, 0, 0, data, 64, VirtQueue::kDescWrite, 0);
    put_desc(ram, 0, 1, data + 64, 32, VirtQueue::kDescWrite | VirtQueue::kDescNext, 2);
    put_desc(ram, 0, 2, data + 96, 32, VirtQueue::kDescWrite, 0);
    put_avail(ram, 0, {0, 1});
    put("virtio", "rng-two", input(1, 2, ram, std::string(1, kNotify)));
  }
  {
    // virtio-net: two receive buffers (12-byte header + frame), one transmitted frame, then a
    // frame from the host and a link flap.
    std::string ram;
    const uint64_t rx = kBuffers, tx = kBuffers + 0x1000;
    put_desc(ram, 0, 0, rx, 1526, VirtQueue::kDescWrite, 0);
    put_desc(ram, 0, 1, rx + 0x800, 12, VirtQueue::kDescWrite | VirtQueue::kDescNext, 2);
    put_desc(ram, 0, 2, rx + 0x810, 1514, VirtQueue::kDescWrite, 0);
    put_avail(ram, 0, {0, 1});
    std::string frame(12, '\0');
    frame += std::string("\xff\xff\xff\xff\xff\xff\x52\x54\x00\x12\x34\x56\x08\x06", 14) + std::string(46, 'a');
    put_bytes(ram, tx, frame);
    put_desc(ram, 1, 0, tx, static_cast<uint32_t>(frame.size()), 0, 0);
    put_avail(ram, 1, {0});
    const std::string host_frame = std::string("\x52\x54\x00\x12\x34\x56\x02\x00\x00\x00\x00\x01\x08\x00", 14) + std::string(50, 'h');
    std::string ops;
    ops += static_cast<char>(kNotify);
    ops += '\1';
    ops += static_cast<char>(kNetReceive);
    const auto n = static_cast<uint16_t>(host_frame.size());
    ops += std::string(reinterpret_cast<const char*>(&n), 2) + host_frame;
    ops += static_cast<char>(kNetLink);
    ops += '\0';
    ops += static_cast<char>(kNetLink);
    ops += '\1';
    put("virtio", "net-rx-tx", input(2, 3, ram, ops));
  }
}

void witness_seeds() {
  int op = fencing::wire::ACQUIRE;
  for (const char* name : {"acquire", "renew", "release", "advance"}) {
    fencing::wire::WitnessRequest r;
    r.set_vm_id("vm1");
    r.set_node("node-a");
    r.set_op(static_cast<fencing::wire::WitnessOp>(op++));
    r.set_epoch(3);
    r.set_nonce(std::string(fencing::witness::kNonceBytes, static_cast<char>(op)));
    r.set_client_time_ms(1000 + op);
    r.set_ttl_ms(2000);
    put("witness", name, std::string(1, '\0') + r.SerializeAsString());
    if (op == fencing::wire::ACQUIRE + 1) {
      put("witness", "raw-acquire", std::string(1, '\1') + fencing::witness::seal("wrong-key", fencing::witness::Direction::Request, r.SerializeAsString()));
    }
  }
  const std::string path = (out_dir / "witness.state.tmp").string();
  fencing::WitnessRecords records;
  records["vm1"] = {7, "node-a", std::chrono::milliseconds(2000), 5};
  records["vm2"] = {1, "", std::chrono::milliseconds(500), 0};
  fencing::save_witness_state(path, records);
  std::ifstream in(path, std::ios::binary);
  put("witness", "state-file", std::string(1, '\2') + std::string(std::istreambuf_iterator<char>(in), {}));
  fs::remove(path);
}

void heartbeat_seeds() {
  std::string beats(1, '\0');
  for (uint64_t c = 1; c <= 3; ++c) beats += u64(c) + u64(5) + std::string(1, '\1');
  put("heartbeat", "three-beats", beats);
  put("heartbeat", "raw", std::string(1, '\1') + "THB1" + u64(1) + u64(5) + std::string(1, '\2') + std::string(32, 'm'));
}

void link_frames() {
  std::string stream;
  const auto add = [&](const wire::Envelope& e) {
    stream += net::encode_frame(e, "seed");
  };
  wire::Envelope hello;
  hello.set_epoch(4);
  auto* h = hello.mutable_hello();
  h->set_protocol_version(1);
  h->set_vm_id("vm1");
  h->set_epoch(4);
  h->set_role(wire::PRIMARY);
  h->set_challenge(std::string(32, 'c'));
  h->set_node_name("a");
  add(hello);
  wire::Envelope reply;
  auto* hr = reply.mutable_hello_reply();
  hr->set_protocol_version(1);
  hr->set_vm_id("vm1");
  hr->set_role(wire::SECONDARY);
  hr->set_challenge(std::string(32, 'd'));
  hr->set_proof(std::string(32, 'p'));
  add(reply);
  wire::Envelope proof;
  proof.mutable_auth_proof()->set_proof(std::string(32, 'q'));
  add(proof);
  put("link_frame", "handshake", std::string(1, '\0') + stream);
  stream.clear();
  wire::Envelope ack;
  ack.set_epoch(4);
  ack.mutable_ack()->set_received_icount(1000);
  add(ack);
  wire::Envelope batch;
  batch.mutable_batch()->set_sequence(0);
  auto* rec = batch.mutable_batch()->add_records();
  rec->set_icount(5);
  rec->set_kind(log::CONSOLE_INPUT);
  rec->set_payload("x");
  add(batch);
  wire::Envelope hb;
  hb.mutable_heartbeat();
  add(hb);
  put("link_frame", "session", std::string(1, '\x07') + stream);
}

void loader_seeds() {
  const auto text = [](const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); };
  test::ElfSegment in_ram;
  in_ram.paddr = in_ram.vaddr = vmm::kDramBase;
  in_ram.code = {0x13, 0, 0, 0, 0x6f, 0, 0, 0};  // nop; j .
  in_ram.bss = 4096;
  put("loader", "elf-in-ram", text(test::elf_image(in_ram)));
  test::ElfSegment at_zero = in_ram;  // linked outside RAM (a vmlinux): moved to the raw base
  at_zero.paddr = 0;
  at_zero.vaddr = 0xffffffff80000000ull;
  put("loader", "elf-at-zero", text(test::elf_image(at_zero)));
  // A raw Linux Image: the RISC-V boot header (image_size at 16, "RSC\x05" at 56).
  std::string image(64, '\0');
  const uint64_t image_size = 64 << 10;
  std::memcpy(image.data() + 16, &image_size, 8);
  std::memcpy(image.data() + 56, "RSC\x05", 4);
  put("loader", "linux-image", image + std::string(256, 'k'));
  put("loader", "raw", std::string(64, '\x13'));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  out_dir = argv[1];
  fs::create_directories(out_dir);
  checkpoints();
  precopy();
  event_logs();
  virtio_requests();
  witness_seeds();
  heartbeat_seeds();
  link_frames();
  loader_seeds();
  return 0;
}
