// Placeholder Node so tandemd and tandemctl build before the pair logic lands; the lead
// engineer replaces this file. Every operation reports that the pair is not implemented.
#include "replicator/node.h"

#include <condition_variable>
#include <mutex>
#include <utility>

namespace tandem::replicator {

struct Node::Impl {
  NodeConfig config;
  mutable std::mutex mutex;
  std::condition_variable stopped_cv;
  bool stopped = false;
};

Node::Node(NodeConfig config) : impl_(std::make_unique<Impl>()) { impl_->config = std::move(config); }
Node::~Node() = default;

void Node::start() {}

void Node::stop() {
  std::lock_guard lock(impl_->mutex);
  impl_->stopped = true;
  impl_->stopped_cv.notify_all();
}

void Node::wait() {
  std::unique_lock lock(impl_->mutex);
  impl_->stopped_cv.wait(lock, [this] { return impl_->stopped; });
}

NodeStatus Node::status() const {
  NodeStatus s;
  s.node_name = impl_->config.node_name;
  s.vm_id = impl_->config.vm_id;
  s.role = impl_->config.role;
  s.state = impl_->config.role == Role::Primary ? PairState::Standalone : PairState::Standby;
  s.console = impl_->config.console_listen;
  s.peer = impl_->config.peer;
  s.last_error = "pair logic not implemented yet";
  return s;
}

std::string Node::protect(const std::string&) { return "pair logic not implemented yet"; }
std::string Node::unprotect() { return "pair logic not implemented yet"; }
std::string Node::failover() { return "pair logic not implemented yet"; }

const char* to_string(Role role) { return role == Role::Primary ? "primary" : "secondary"; }

const char* to_string(PairState state) {
  switch (state) {
    case PairState::Standalone: return "STANDALONE";
    case PairState::Syncing: return "SYNCING";
    case PairState::Protected: return "PROTECTED";
    case PairState::Standby: return "STANDBY";
    case PairState::Failed: return "FAILED";
  }
  return "UNKNOWN";
}

}  // namespace tandem::replicator
