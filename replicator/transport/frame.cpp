#include "replicator/transport/frame.h"

namespace tandem::replicator {

OutgoingFrame encode_link_frame(const google::protobuf::MessageLite& message) {
  OutgoingFrame frame;
  frame.payload = net::serialize_payload(message, "link");
  frame.header = net::frame_header(frame.payload);
  return frame;
}

}  // namespace tandem::replicator
