#include "runtime/peer_flags.h"

namespace podgate::runtime {

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreatePeerChannel(const PeerFlags& peer,
                                                                 ChannelCalls calls) {
  return CreateServiceChannel(peer.address, peer.tls, calls);
}

}  // namespace podgate::runtime
