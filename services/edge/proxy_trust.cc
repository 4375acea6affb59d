#include "edge/proxy_trust.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "runtime/log.h"

namespace podgate::edge {

namespace bhttp = boost::beast::http;

namespace {

// Every line of header `name`, joined by "," in order; nullopt when there is none.
std::optional<std::string> Combined(const http::Request& request, std::string_view name) {
  std::optional<std::string> joined;
  auto range = request.equal_range(boost::beast::string_view(name.data(), name.size()));
  for (auto it = range.first; it != range.second; ++it) {
    std::string_view line(it->value().data(), it->value().size());
    if (!joined.has_value()) {
      joined.emplace(line);
    } else {
      joined->append(",").append(line);
    }
  }
  return joined;
}

prometheus::Counter* Add(prometheus::Family<prometheus::Counter>* family, const char* result) {
  return family == nullptr ? nullptr : &family->Add({{"result", result}});
}

}  // namespace

ProxyTrust::ProxyTrust(ProxyOptions options, prometheus::Registry* registry)
    : options_(std::move(options)) {
  prometheus::Family<prometheus::Counter>* forwarded = nullptr;
  prometheus::Family<prometheus::Counter>* proxy = nullptr;
  if (registry != nullptr) {
    forwarded = &prometheus::BuildCounter()
                     .Name("podgate_edge_forwarded_address_total")
                     .Help(
                         "Requests carrying the forwarding header (X-Forwarded-For or "
                         "Forwarded) by result: trusted (the client's address was taken from "
                         "it), untrusted_ignored (the peer is not a trusted proxy), malformed "
                         "(from a trusted proxy but unparseable: the peer's address was used)")
                     .Register(*registry);
    proxy = &prometheus::BuildCounter()
                 .Name("podgate_edge_auth_proxy_total")
                 .Help(
                     "Requests carrying auth-proxy headers by result: accepted (the verified "
                     "token agreed with them), untrusted (from a peer that is not an auth "
                     "proxy: refused), mismatch (they disagreed with the token: refused), "
                     "missing_token (the proxy forwarded no token: refused)")
                 .Register(*registry);
  }
  forwarded_trusted_ = Add(forwarded, "trusted");
  forwarded_untrusted_ = Add(forwarded, "untrusted_ignored");
  forwarded_malformed_ = Add(forwarded, "malformed");
  proxy_accepted_ = Add(proxy, "accepted");
  proxy_untrusted_ = Add(proxy, "untrusted");
  proxy_mismatch_ = Add(proxy, "mismatch");
  proxy_missing_token_ = Add(proxy, "missing_token");
}

http::RequestContext ProxyTrust::ClientContext(const http::Request& request,
                                               const http::RequestContext& peer) const {
  http::RequestContext client = peer;
  if (options_.trusted_proxies.empty()) {
    return client;
  }
  const bool forwarded = options_.forwarded_header == ForwardedHeader::kForwarded;
  ClientAddress resolved =
      ResolveClient(options_.trusted_proxies, options_.forwarded_header, peer.remote_address,
                    Combined(request, forwarded ? "Forwarded" : "X-Forwarded-For"));
  switch (resolved.outcome) {
    case ClientAddress::Outcome::kPeer:
      break;
    case ClientAddress::Outcome::kTrusted:
      Count(forwarded_trusted_);
      client.proxy_address = peer.remote_address;
      client.remote_address = std::move(resolved.address);
      break;
    case ClientAddress::Outcome::kUntrustedIgnored:
      Count(forwarded_untrusted_);
      break;
    case ClientAddress::Outcome::kMalformed: {
      Count(forwarded_malformed_);
      const uint64_t n = malformed_.fetch_add(1) + 1;
      const uint64_t every = std::max<uint64_t>(1, options_.log_malformed_every);
      if (n % every == 1 || every == 1) {
        log::Warn("forwarding header from a trusted proxy is malformed: using the proxy's address",
                  {{"header", forwarded ? "Forwarded" : "X-Forwarded-For"},
                   {"error", resolved.error.substr(0, 200)},
                   {"proxy", peer.remote_address},
                   {"malformed_total", static_cast<int64_t>(n)}});
      }
      break;
    }
  }
  return client;
}

bool ProxyTrust::IsAuthProxy(const http::RequestContext& peer) const {
  if (!options_.auth_proxy_cidrs.empty()) {
    std::optional<IpAddress> ip = ParseRemoteAddress(TcpPeer(peer));
    if (ip.has_value() && InAny(options_.auth_proxy_cidrs, *ip)) {
      return true;
    }
  }
  if (peer.tls && !options_.auth_proxy_client_names.empty()) {
    for (const std::string& name : options_.auth_proxy_client_names) {
      if (!peer.peer_common_name.empty() && name == peer.peer_common_name) {
        return true;
      }
      if (std::find(peer.peer_dns_names.begin(), peer.peer_dns_names.end(), name) !=
          peer.peer_dns_names.end()) {
        return true;
      }
    }
  }
  return false;
}

absl::StatusOr<AuthProxyRequest> ProxyTrust::Inspect(const http::Request& request,
                                                     const http::RequestContext& peer) const {
  AuthProxyRequest result;
  if (!auth_proxy_mode()) {
    return result;
  }
  std::optional<std::string> user = Combined(request, options_.user_header);
  std::optional<std::string> groups;
  if (!options_.groups_header.empty()) {
    groups = Combined(request, options_.groups_header);
  }
  std::optional<std::string> token = Combined(request, kForwardedAccessTokenHeader);
  const bool identity_headers = user.has_value() || groups.has_value() || token.has_value();
  const bool is_proxy = IsAuthProxy(peer);
  if (identity_headers && !is_proxy) {
    Count(proxy_untrusted_);
    return absl::PermissionDeniedError(
        absl::StrCat("identity headers (", user.has_value() ? options_.user_header : "",
                     user.has_value() && (groups.has_value() || token.has_value()) ? ", " : "",
                     groups.has_value() ? options_.groups_header : "",
                     groups.has_value() && token.has_value() ? ", " : "",
                     token.has_value() ? kForwardedAccessTokenHeader : "",
                     ") are accepted only from the configured auth proxy"));
  }
  if (!is_proxy) {
    return result;
  }
  if (token.has_value()) {
    // One token: a second line (joined by ',') is not a token, and fails verification.
    result.token = *token;
  } else if (auto authorization = request.find(bhttp::field::authorization);
             authorization != request.end()) {
    // oauth2-proxy --pass-authorization-header.
    result.token = auth::BearerToken(std::string(authorization->value())).value_or("");
  }
  if (user.has_value()) {
    result.from_proxy = true;
    result.user = *user;
    if (groups.has_value()) {
      std::vector<std::string> list;
      for (absl::string_view g : absl::StrSplit(*groups, ',')) {
        g = absl::StripAsciiWhitespace(g);
        if (!g.empty()) {
          list.emplace_back(g);
        }
      }
      result.groups = std::move(list);
    }
  }
  return result;
}

absl::Status ProxyTrust::CheckIdentity(const AuthProxyRequest& proxy,
                                       const auth::VerifiedToken& verified) const {
  if (!proxy.from_proxy) {
    return absl::OkStatus();
  }
  if (proxy.user != verified.principal.user()) {
    Count(proxy_mismatch_);
    return absl::PermissionDeniedError(
        "the auth proxy's user header does not name the user of the forwarded token");
  }
  if (proxy.groups.has_value()) {
    for (const std::string& g : *proxy.groups) {
      if (std::find(verified.principal.groups().begin(), verified.principal.groups().end(), g) ==
          verified.principal.groups().end()) {
        Count(proxy_mismatch_);
        return absl::PermissionDeniedError(
            "the auth proxy's groups header names a group the forwarded token does not");
      }
    }
  }
  Count(proxy_accepted_);
  return absl::OkStatus();
}

void ProxyTrust::CountMissingToken() const { Count(proxy_missing_token_); }

bool ProxyTrust::IsTrustedProxy(const std::string& address) const {
  std::optional<IpAddress> ip = ParseIp(address);
  return ip.has_value() && InAny(options_.trusted_proxies, *ip);
}

std::shared_ptr<void> ProxyTrust::AcquireClientSlot(const std::string& client) const {
  {
    absl::MutexLock lock(&mu_);
    size_t& n = clients_[client];
    if (options_.max_websockets_per_client > 0 && n >= options_.max_websockets_per_client) {
      if (n == 0) {
        clients_.erase(client);
      }
      return nullptr;
    }
    ++n;
  }
  // The handle owns nothing (it points at this object, which outlives every session); its
  // deleter gives the place back.
  return std::shared_ptr<void>(const_cast<ProxyTrust*>(this), [this, client](void*) {
    absl::MutexLock lock(&mu_);
    auto it = clients_.find(client);
    if (it != clients_.end() && --it->second == 0) {
      clients_.erase(it);  // memory follows the open connections, not every address ever seen
    }
  });
}

}  // namespace podgate::edge
