#include "vmm/devices/virtio_blk.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace tandem::vmm {

namespace {
constexpr uint64_t kHeaderBytes = 16;  // type u32, reserved u32, sector u64
constexpr size_t kChunkBytes = 64 * 1024;

// Copies up to out.size() bytes from the start of a list of guest buffers.
bool gather(const GuestMemory& mem, const std::vector<GuestBuffer>& bufs, std::span<uint8_t> out) {
  size_t done = 0;
  for (const auto& b : bufs) {
    if (done == out.size()) break;
    const size_t n = std::min<size_t>(b.len, out.size() - done);
    if (!mem.read(b.addr, out.subspan(done, n))) return false;
    done += n;
  }
  return done == out.size();
}

uint64_t total_len(const std::vector<GuestBuffer>& bufs) {
  uint64_t n = 0;
  for (const auto& b : bufs) n += b.len;
  return n;
}
}  // namespace

uint64_t VirtioBlk::read_config(uint64_t offset, unsigned size) const {
  // struct virtio_blk_config: capacity (sectors) at 0; the other fields belong to
  // features we do not offer and read as zero.
  uint8_t config[64] = {};
  const uint64_t capacity = disk_.sectors();
  std::memcpy(config, &capacity, sizeof capacity);
  if (size > 8 || offset >= sizeof config || size > sizeof config - offset) return 0;
  uint64_t v = 0;
  std::memcpy(&v, config + offset, size);
  return v;
}

bool VirtioBlk::process_queue(unsigned /*index*/, VirtQueue& queue, GuestMemory& mem) {
  bool used = false;
  // At most one queue's worth per notify: even if a request's data rewrites the avail
  // ring, the loop ends.
  for (uint32_t n = 0; n < queue.state().size && queue.has_available(mem); ++n) {
    const DescriptorChain chain = queue.pop(mem);
    const uint32_t written = handle(chain, mem);
    queue.push_used(mem, chain.head, written);
    used = true;
  }
  return used;
}

uint32_t VirtioBlk::handle(const DescriptorChain& chain, GuestMemory& mem) {
  // The last writable byte is the status; without it we cannot even report an error.
  const uint64_t writable = total_len(chain.writable);
  if (writable == 0) throw VirtioError("block request without a status byte");
  const GuestBuffer& last = chain.writable.back();
  if (last.len == 0) throw VirtioError("block request status buffer is empty");
  const uint64_t status_addr = last.addr + last.len - 1;

  uint8_t header[kHeaderBytes];
  uint8_t status = kStatusOk;
  uint32_t written = 1;  // the status byte
  if (!gather(mem, chain.readable, header)) {
    status = kStatusIoErr;  // header shorter than 16 bytes
  } else {
    uint32_t type;
    uint64_t sector;
    std::memcpy(&type, header, 4);
    std::memcpy(&sector, header + 8, 8);
    const uint64_t data_in = writable - 1;  // device → driver bytes before the status
    switch (type) {
      case kTypeIn:
        status = do_in(sector, chain, data_in, mem);
        if (status == kStatusOk) written += static_cast<uint32_t>(data_in);
        break;
      case kTypeOut:
        status = do_out(sector, chain, mem);
        break;
      case kTypeFlush:
        status = disk_.flush() ? kStatusOk : kStatusIoErr;
        break;
      case kTypeGetId: {
        // The serial, NUL-padded to 20 bytes, into the data buffers.
        uint8_t id[kIdBytes] = {};
        std::memcpy(id, "tandem-virtio-blk", 17);
        uint64_t left = std::min<uint64_t>(kIdBytes, data_in);
        uint64_t done = 0;
        for (const auto& b : chain.writable) {
          if (left == 0) break;
          const uint64_t n = std::min<uint64_t>({b.len, left, data_in - done});
          if (!mem.write(b.addr, {id + done, n})) throw VirtioError("GET_ID buffer outside RAM");
          done += n;
          left -= n;
        }
        written += static_cast<uint32_t>(done);
        break;
      }
      default:
        status = kStatusUnsupported;
    }
  }
  if (!mem.write(status_addr, {&status, 1})) throw VirtioError("status byte outside RAM");
  return written;
}

uint8_t VirtioBlk::do_in(uint64_t sector, const DescriptorChain& chain, uint64_t data_bytes,
                         GuestMemory& mem) {
  // The used-ring length is 32-bit, so no single request may move more than that.
  if (data_bytes % DiskImage::kSectorBytes != 0 || data_bytes > UINT32_MAX - 1) return kStatusIoErr;
  if (sector > disk_.sectors() || data_bytes / DiskImage::kSectorBytes > disk_.sectors() - sector) {
    return kStatusIoErr;
  }
  uint64_t disk_off = sector * DiskImage::kSectorBytes;
  uint64_t left = data_bytes;
  std::vector<uint8_t> chunk(kChunkBytes);
  // Stream buffer by buffer in bounded chunks: a request's size never sets our allocation.
  for (const auto& b : chain.writable) {
    uint64_t buf_off = 0;
    while (left > 0 && buf_off < b.len) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>({kChunkBytes, b.len - buf_off, left}));
      if (!disk_.read(disk_off, {chunk.data(), n})) return kStatusIoErr;
      if (!mem.write(b.addr + buf_off, {chunk.data(), n})) throw VirtioError("read buffer outside RAM");
      disk_off += n;
      buf_off += n;
      left -= n;
    }
  }
  return kStatusOk;
}

uint8_t VirtioBlk::do_out(uint64_t sector, const DescriptorChain& chain, GuestMemory& mem) {
  const uint64_t data_bytes = total_len(chain.readable) - kHeaderBytes;
  if (data_bytes % DiskImage::kSectorBytes != 0) return kStatusIoErr;
  if (sector > disk_.sectors() || data_bytes / DiskImage::kSectorBytes > disk_.sectors() - sector) {
    return kStatusIoErr;
  }
  uint64_t disk_off = sector * DiskImage::kSectorBytes;
  uint64_t skip = kHeaderBytes;  // the header may share a buffer with the data
  std::vector<uint8_t> chunk(kChunkBytes);
  for (const auto& b : chain.readable) {
    uint64_t buf_off = std::min<uint64_t>(skip, b.len);
    skip -= buf_off;
    while (buf_off < b.len) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkBytes, b.len - buf_off));
      if (!mem.read(b.addr + buf_off, {chunk.data(), n})) throw VirtioError("write buffer outside RAM");
      if (!disk_.write(disk_off, {chunk.data(), n})) return kStatusIoErr;
      disk_off += n;
      buf_off += n;
    }
  }
  return kStatusOk;
}

void VirtioBlk::save(StateWriter& out) const {
  out.tag("VBLK");
  out.u64(disk_.size_bytes());
  out.u64(disk_.content_hash());
}

void VirtioBlk::restore(StateReader& in) {
  in.expect_tag("VBLK");
  const uint64_t size = in.u64();
  const uint64_t hash = in.u64();
  if (size != disk_.size_bytes() || hash != disk_.content_hash()) {
    throw StateError("snapshot: disk image " + disk_.path() +
                     " is not the image the snapshot was taken with (size or content hash differs)");
  }
}

}  // namespace tandem::vmm
