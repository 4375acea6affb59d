// edge's HTTP API for the page (and CLI clients), JSON in and out:
//
//   GET  /api/v1/targets[?namespace=&cluster=]           exec ListTargets with the caller's token
//   GET  /api/v1/allowed?namespace=&pod=[&container=&cluster=]  policy ListAllowed for the caller
//   GET  /api/v1/sessions                                exec ListSessions: sessions one may join
//   GET  /api/v1/audit?...                               audit Query (auditor groups only)
//   GET  /api/v1/audit?follow=1&...                      the live tail, streamed (audit_follow.h)
//   GET|POST /api/v1/session                             who the credential names
//   POST /api/v1/login, /api/v1/logout                   set / clear the HttpOnly token cookie
//
// The credential is an Authorization: Bearer header, else the podgate_token cookie. A refused
// or missing one is counted, audited (AuthFailed) and answered 401. Backend calls are deferred
// (RouteResult::deferred), bounded by --backend_timeout, and hold no thread. Every answer is
// counted in podgate_edge_api_requests_total{api,code}. docs/protocol.md is the reference.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "auth/jwt.h"
#include "edge/edge_context.h"
#include "http/server.h"

namespace podgate::edge {

// What edge refuses with follow=1 before streaming: page_token, newest_first, end_time.
absl::Status ValidateFollowQuery(const podgate::audit::v1::QueryRequest& request);

class HttpApi {
 public:
  explicit HttpApi(EdgeContext* context) : context_(context) {}

  // `query` is the part of the target after '?'.
  http::RouteResult Targets(const http::Request& request, const http::RequestContext& peer,
                            std::string_view query) const;
  http::RouteResult Allowed(const http::Request& request, const http::RequestContext& peer,
                            std::string_view query) const;
  http::RouteResult Sessions(const http::Request& request, const http::RequestContext& peer) const;
  http::RouteResult Audit(const http::Request& request, const http::RequestContext& peer,
                          std::string_view query) const;
  // Any method reaches it: one it does not take is answered 405 with Allow.
  http::RouteResult Session(const http::Request& request, const http::RequestContext& peer) const;
  // POST /api/v1/login (`login`) or /api/v1/logout.
  http::RouteResult Login(const http::Request& request, const http::RequestContext& peer,
                          bool login) const;

 private:
  // The caller's token from Authorization or the cookie; empty when none.
  std::string TokenOf(const http::Request& request) const;
  // Verifies the caller's credential (Authorization Bearer, else the cookie) with the shared
  // verifier. A refusal is counted (auth failure by reason, and a 401 for `route`), audited,
  // and comes back as UNAUTHENTICATED with the verifier's reason as the message. In auth-proxy
  // mode (ProxyTrust) the token the proxy forwarded comes first, and identity headers from any
  // other peer, or ones that disagree with the token, are PERMISSION_DENIED (audited, counted
  // as a 403). `token_out`, when given, receives the token used.
  absl::StatusOr<auth::VerifiedToken> Authenticate(const http::Request& request,
                                                   const http::RequestContext& peer,
                                                   const char* route,
                                                   std::string* token_out = nullptr) const;
  // The streamed answer to an auditor's follow=1 (limits checked here: 429 when over).
  http::RouteResult AuditFollow(const http::Request& request, const auth::VerifiedToken& verified,
                                podgate::audit::v1::QueryRequest query_request,
                                bool json_lines) const;
  // Whether the verified caller is in one of --auditor_groups.
  bool IsAuditor(const auth::VerifiedToken& verified) const;

  EdgeContext* const context_;
};

}  // namespace podgate::edge
