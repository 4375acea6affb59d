#include "probe/probe.h"

#include <chrono>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "http/client.h"
#include "http/url.h"
#include "runtime/tls.h"
#include "wire/status.h"

namespace podgate::probe {
namespace {

using grpc::health::v1::HealthCheckResponse;

// At most this much of an answer's body is read and the first line of it shown.
constexpr size_t kMaxBodyBytes = 64 * 1024;
constexpr size_t kMaxShownBytes = 200;

// The first line of `text`, control characters replaced, at most kMaxShownBytes.
std::string OneLine(const std::string& text) {
  std::string out = text.substr(0, text.find('\n'));
  if (out.size() > kMaxShownBytes) {
    out = absl::StrCat(out.substr(0, kMaxShownBytes), "...");
  }
  for (char& c : out) {
    if (absl::ascii_iscntrl(static_cast<unsigned char>(c))) {
      c = ' ';
    }
  }
  return std::string(absl::StripAsciiWhitespace(out));
}

absl::StatusOr<ProbeResult> CheckGrpc(const ProbeOptions& o) {
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!o.ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    absl::StatusOr<std::string> ca = runtime::ReadPemFile("ca", o.ca_file);
    if (!ca.ok()) {
      return ca.status();
    }
    ssl.pem_root_certs = *std::move(ca);
    if (!o.cert_file.empty()) {
      absl::StatusOr<std::string> cert = runtime::ReadPemFile("cert", o.cert_file);
      if (!cert.ok()) {
        return cert.status();
      }
      absl::StatusOr<std::string> key = runtime::ReadPemFile("key", o.key_file);
      if (!key.ok()) {
        return key.status();
      }
      ssl.pem_cert_chain = *std::move(cert);
      ssl.pem_private_key = *std::move(key);
    }
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  if (!o.server_name.empty()) {
    args.SetSslTargetNameOverride(o.server_name);
  }
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(o.address, creds, args);
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(o.timeout));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(o.service);
  HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  ProbeResult result;
  const std::string subject = absl::StrCat(o.address, " service \"", o.service, "\": ");
  if (!status.ok()) {
    result.line = absl::StrCat(subject, wire::StatusCodeName(status.error_code()), ": ",
                               OneLine(status.error_message()));
    return result;
  }
  result.line = absl::StrCat(subject, HealthCheckResponse::ServingStatus_Name(response.status()));
  result.exit_code = response.status() == HealthCheckResponse::SERVING ? 0 : 1;
  return result;
}

absl::StatusOr<ProbeResult> CheckHttp(const ProbeOptions& o) {
  absl::StatusOr<http::HttpUrl> url = http::ParseHttpUrl(o.http_url);
  if (!url.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--http: ", url.status().message()));
  }
  http::ClientOptions client = http::ClientOptionsFor(*url, o.ca_file, o.timeout, kMaxBodyBytes);
  client.client_cert_file = o.cert_file;
  client.client_key_file = o.key_file;
  if (!o.server_name.empty()) {
    client.server_name = o.server_name;
  }
  absl::StatusOr<http::ClientResponse> response = http::Fetch(client, "GET", url->target);
  ProbeResult result;
  if (!response.ok()) {
    if (response.status().code() == absl::StatusCode::kInvalidArgument) {
      return response.status();  // a certificate, key or CA file that cannot be loaded
    }
    result.line =
        absl::StrCat(url->ToString(), ": ", OneLine(std::string(response.status().message())));
    return result;
  }
  result.exit_code = response->status >= 200 && response->status < 300 ? 0 : 1;
  result.line = absl::StrCat(url->ToString(), ": HTTP ", response->status);
  if (const std::string body = OneLine(response->body); !body.empty()) {
    absl::StrAppend(&result.line, " ", body);
  }
  return result;
}

}  // namespace

absl::Status ValidateProbeOptions(const ProbeOptions& o) {
  if (o.address.empty() == o.http_url.empty()) {
    return absl::InvalidArgumentError("give exactly one of --address (gRPC health) and --http");
  }
  if (!o.http_url.empty() && !o.service.empty()) {
    return absl::InvalidArgumentError("--service is for gRPC health checks (--address)");
  }
  if (o.cert_file.empty() != o.key_file.empty()) {
    return absl::InvalidArgumentError("--cert and --key must be given together");
  }
  if (!o.address.empty() && !o.cert_file.empty() && o.ca_file.empty()) {
    return absl::InvalidArgumentError("--cert and --key need --ca: mutual TLS is TLS first");
  }
  if (!o.address.empty() && !o.server_name.empty() && o.ca_file.empty()) {
    return absl::InvalidArgumentError("--server_name needs --ca (it names the TLS certificate)");
  }
  if (!o.http_url.empty()) {
    absl::StatusOr<http::HttpUrl> url = http::ParseHttpUrl(o.http_url);
    if (!url.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--http: ", url.status().message()));
    }
    if (!url->tls && (!o.ca_file.empty() || !o.cert_file.empty() || !o.server_name.empty())) {
      return absl::InvalidArgumentError(
          "--ca, --cert, --key and --server_name need an https:// URL");
    }
  }
  if (o.timeout <= absl::ZeroDuration() || o.timeout > absl::Minutes(5)) {
    return absl::InvalidArgumentError(absl::StrCat("--timeout: ", absl::FormatDuration(o.timeout),
                                                   " is out of range (over 0s, up to 5m)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ProbeResult> RunProbe(const ProbeOptions& options) {
  if (absl::Status s = ValidateProbeOptions(options); !s.ok()) {
    return s;
  }
  return options.address.empty() ? CheckHttp(options) : CheckGrpc(options);
}

}  // namespace podgate::probe
