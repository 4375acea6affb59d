// The browser's WebSocket handshakes:
//
//   WS /ws/v1/{namespace}/{pod}?container=&mode=     the v1 protocol
//   WS /ws/seed/{namespace}/{pod}?container=         the design note's protocol
//
// In order: refused (503) once edge is shutting down; the Origin allowlist; the path and the
// target's names; for v1, the offered sub-protocols and the credential (sub-protocol entry or
// cookie; none means the first message authenticates) with the user's connection cap; then a
// place in the replica's pool (authenticated) or the pre-authentication pool, and in the session
// registry. Only then does a BrowserSession take the connection. docs/protocol.md is the
// reference.
#pragma once

#include <string_view>

#include "edge/edge_context.h"
#include "http/server.h"

namespace podgate::edge {

class WebSocketHandshake {
 public:
  explicit WebSocketHandshake(EdgeContext* context) : context_(context) {}

  // `path` starts with /ws/; `query` is the part after '?'.
  http::RouteResult Accept(const http::Request& request, const http::RequestContext& peer,
                           std::string_view path, std::string_view query) const;

 private:
  EdgeContext* const context_;
};

}  // namespace podgate::edge
