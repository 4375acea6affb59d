// A blocking HTTP/1.1 client connection to one server that stays open between requests
// (keep-alive) and can be cancelled from another thread, for a caller that sends request after
// request to the same place on a thread of its own (audit's webhook export sink). Fetch (client.h)
// is the one-shot form; both share ClientOptions, the TLS context and the error mapping.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "http/client.h"

namespace podgate::http {

class ClientConnection {
 public:
  // Builds the TLS context (INVALID_ARGUMENT when a certificate, key or CA cannot be loaded);
  // connects on the first Request.
  static absl::StatusOr<std::unique_ptr<ClientConnection>> Create(const ClientOptions& options);

  virtual ~ClientConnection() = default;

  // One request with options.headers and `headers` (which win). options.timeout bounds the whole
  // exchange: resolve, connect, TLS handshake, write and read. Reuses the open connection when
  // the server kept it alive; when a reused connection turns out closed by the server before any
  // byte of the answer, the request is sent once more on a new connection. Errors as NetError
  // (DEADLINE_EXCEEDED, UNAVAILABLE naming the step); FAILED_PRECONDITION when the server's
  // certificate does not verify (naming OpenSSL's reason); CANCELLED after Cancel.
  virtual absl::StatusOr<ClientResponse> Request(
      const std::string& method, const std::string& target, const std::string& body,
      const std::vector<std::pair<std::string, std::string>>& headers = {}) = 0;

  // From any thread: aborts the request in progress (its socket is closed, so it returns at once
  // with CANCELLED) and makes every later Request return CANCELLED. Final.
  virtual void Cancel() = 0;

  // Connections opened so far (a reused connection counts once).
  virtual uint64_t connections_opened() const = 0;
};

}  // namespace podgate::http
