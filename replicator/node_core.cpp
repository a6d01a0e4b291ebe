#include "replicator/node_core.h"

#include "net/endpoint.h"

namespace tandem::replicator {

std::pair<std::string, uint16_t> split_address(const std::string& address) {
  const net::Endpoint e = net::parse_endpoint(address, {.allow_any_port = true, .numeric_host = false});
  return {e.host, e.port};
}

NodeCore::NodeCore(NodeConfig c)
    : cfg(std::move(c)),
      boot(boot_spec(cfg)),
      arbitrated(cfg.fencing.kind != "none"),
      epochs(cfg.state_dir),
      pair(cfg.role),
      peer([this] { return epoch_now(); }, promotion_holdoff()) {}

NodeCore::~NodeCore() = default;

uint64_t NodeCore::epoch_now() const {
  std::lock_guard lock(mutex);
  return epoch;
}

std::shared_ptr<Transport> NodeCore::current_transport() const {
  std::lock_guard lock(mutex);
  return transport;
}

void NodeCore::make_transport() {
  LinkIdentity me;
  me.vm_id = cfg.vm_id;
  me.node_name = cfg.node_name;
  me.psk = cfg.psk;
  me.encryption = cfg.link_encryption;
  me.current_epoch = [this] { return epoch_now(); };  // the link drops what is older (stale)
  {
    std::lock_guard lock(mutex);
    me.epoch = epoch;
    me.role = pair.role() == Role::Primary ? wire::PRIMARY : wire::SECONDARY;
  }
  TransportOptions options;
  options.allow = cfg.allow;  // [pair] allow (issue 20)
  std::shared_ptr<Transport> fresh = make_tcp_transport(me, options);
  std::shared_ptr<Transport> old;
  {
    std::lock_guard lock(mutex);
    old = std::exchange(transport, fresh);
  }
  if (old) old->stop();  // frees the listening port for the new transport
  if (detector) detector->set_local(me.epoch, static_cast<uint8_t>(me.role));
  if (!cfg.listen.empty()) {
    const auto [host, port] = split_address(cfg.listen);
    fresh->listen(host, port, [this](std::shared_ptr<Link> l) { on_incoming(std::move(l)); });
  }
}

}  // namespace tandem::replicator
