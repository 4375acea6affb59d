#include "runtime/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "crypto/openssl_ptr.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/channel_arguments.h"

namespace podgate::runtime {
namespace {

// How long one connection attempt to a peer may take (gRPC's GRPC_ARG_MIN_RECONNECT_BACKOFF_MS).
constexpr int kPeerConnectTimeoutMs = 20000;

using crypto::BioPtr;
using crypto::X509Ptr;
using KeyPtr = crypto::EvpPkeyPtr;

BioPtr MemBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

absl::Status Invalid(const std::string& flag, const std::string& path, const std::string& what) {
  ERR_clear_error();
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": '", path, "' ", what));
}

// Parses every certificate in `pem`; at least one must be there.
absl::StatusOr<X509Ptr> FirstCertificate(const std::string& flag, const std::string& path,
                                         const std::string& pem) {
  BioPtr bio = MemBio(pem);
  X509Ptr first(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (first == nullptr) {
    return Invalid(flag, path, "holds no PEM certificate");
  }
  // The rest of a chain or bundle must parse too.
  while (true) {
    X509Ptr next(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (next == nullptr) {
      const unsigned long err = ERR_peek_last_error();
      if (ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
        break;
      }
      if (err != 0) {
        return Invalid(flag, path, "holds a certificate that does not parse");
      }
      break;
    }
  }
  ERR_clear_error();
  return first;
}

absl::StatusOr<KeyPtr> PrivateKey(const std::string& flag, const std::string& path,
                                  const std::string& pem) {
  BioPtr bio = MemBio(pem);
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return Invalid(flag, path, "holds no PEM private key (encrypted keys are not supported)");
  }
  return key;
}

// Reads and checks a certificate/key pair.
absl::Status CheckPair(const std::string& cert_flag, const std::string& cert_file,
                       const std::string& cert_pem, const std::string& key_flag,
                       const std::string& key_file, const std::string& key_pem) {
  absl::StatusOr<X509Ptr> cert = FirstCertificate(cert_flag, cert_file, cert_pem);
  if (!cert.ok()) {
    return cert.status();
  }
  absl::StatusOr<KeyPtr> key = PrivateKey(key_flag, key_file, key_pem);
  if (!key.ok()) {
    return key.status();
  }
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    return Invalid(key_flag, key_file, absl::StrCat("does not match the certificate in '",
                                                    cert_file, "' (--", cert_flag, ")"));
  }
  return absl::OkStatus();
}

// The certificates loaded, keyed by (usage, path); read at each scrape.
struct CertificateBook {
  absl::Mutex mu;
  std::map<std::pair<std::string, std::string>, double> not_after ABSL_GUARDED_BY(mu);
};

CertificateBook& Book() {
  static CertificateBook* const book = new CertificateBook();  // never destroyed
  return *book;
}

// Remembers the expiry of a file that was just loaded and checked.
void NoteCertificate(const std::string& usage, const std::string& path, const std::string& pem) {
  absl::StatusOr<double> not_after = EarliestNotAfter(pem);
  if (!not_after.ok()) {
    return;
  }
  CertificateBook& book = Book();
  absl::MutexLock lock(&book.mu);
  book.not_after[{usage, path}] = *not_after;
}

}  // namespace

absl::StatusOr<double> EarliestNotAfter(const std::string& pem) {
  BioPtr bio = MemBio(pem);
  bool any = false;
  double earliest = 0;
  while (true) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert == nullptr) {
      break;
    }
    std::tm tm{};
    if (ASN1_TIME_to_tm(X509_get0_notAfter(cert.get()), &tm) != 1) {
      continue;
    }
    const double seconds = static_cast<double>(timegm(&tm));
    if (!any || seconds < earliest) {
      earliest = seconds;
    }
    any = true;
  }
  ERR_clear_error();
  if (!any) {
    return absl::InvalidArgumentError("no PEM certificate with a readable notAfter");
  }
  return earliest;
}

std::vector<LoadedCertificate> LoadedCertificates() {
  CertificateBook& book = Book();
  absl::MutexLock lock(&book.mu);
  std::vector<LoadedCertificate> out;
  for (const auto& [key, not_after] : book.not_after) {
    out.push_back(LoadedCertificate{key.first, key.second, not_after});
  }
  return out;
}

absl::StatusOr<std::string> ReadPemFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": cannot read '", path, "': ", std::strerror(errno)));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": cannot read '", path, "': ", std::strerror(errno)));
  }
  return contents.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options) {
  if (options.cert_file.empty() && options.key_file.empty()) {
    if (!options.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca needs --tls_cert and --tls_key: mutual TLS is TLS first");
    }
    return grpc::InsecureServerCredentials();
  }
  if (options.cert_file.empty()) {
    return absl::InvalidArgumentError("--tls_key is set but --tls_cert is not");
  }
  if (options.key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert is set but --tls_key is not");
  }
  absl::StatusOr<std::string> cert = ReadPemFile("tls_cert", options.cert_file);
  if (!cert.ok()) {
    return cert.status();
  }
  absl::StatusOr<std::string> key = ReadPemFile("tls_key", options.key_file);
  if (!key.ok()) {
    return key.status();
  }
  if (absl::Status s = CheckPair("tls_cert", options.cert_file, *cert, "tls_key",
                                 options.key_file, *key);
      !s.ok()) {
    return s;
  }
  NoteCertificate("server", options.cert_file, *cert);
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  if (!options.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPemFile("tls_client_ca", options.client_ca_file);
    if (!ca.ok()) {
      return ca.status();
    }
    if (absl::StatusOr<X509Ptr> parsed =
            FirstCertificate("tls_client_ca", options.client_ca_file, *ca);
        !parsed.ok()) {
      return parsed.status();
    }
    NoteCertificate("client_ca", options.client_ca_file, *ca);
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ChannelTlsOptions& options) {
  const std::string& p = options.flag_prefix;
  const std::string ca_flag = absl::StrCat(p, p.empty() ? "" : "_", "tls_ca");
  const std::string cert_flag = absl::StrCat(p, p.empty() ? "" : "_", "tls_cert");
  const std::string key_flag = absl::StrCat(p, p.empty() ? "" : "_", "tls_key");
  if (options.ca_file.empty()) {
    if (!options.cert_file.empty() || !options.key_file.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", cert_flag, "/--", key_flag, " need --", ca_flag, ": mutual TLS is TLS first"));
    }
    return grpc::InsecureChannelCredentials();
  }
  absl::StatusOr<std::string> ca = ReadPemFile(ca_flag, options.ca_file);
  if (!ca.ok()) {
    return ca.status();
  }
  if (absl::StatusOr<X509Ptr> parsed = FirstCertificate(ca_flag, options.ca_file, *ca);
      !parsed.ok()) {
    return parsed.status();
  }
  NoteCertificate("ca", options.ca_file, *ca);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = *ca;
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", cert_flag, " and --", key_flag, " must be set together"));
  }
  if (!options.cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPemFile(cert_flag, options.cert_file);
    if (!cert.ok()) {
      return cert.status();
    }
    absl::StatusOr<std::string> key = ReadPemFile(key_flag, options.key_file);
    if (!key.ok()) {
      return key.status();
    }
    if (absl::Status s =
            CheckPair(cert_flag, options.cert_file, *cert, key_flag, options.key_file, *key);
        !s.ok()) {
      return s;
    }
    NoteCertificate("client", options.cert_file, *cert);
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  return grpc::SslCredentials(ssl);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateServiceChannel(
    const std::string& target, const ChannelTlsOptions& options, ChannelCalls calls) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
      MakeChannelCredentials(options);
  if (!creds.ok()) {
    return creds.status();
  }
  grpc::ChannelArguments args;
  args.SetLoadBalancingPolicyName("round_robin");
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Reconnect within about a second of a peer coming back. gRPC's default backoff grows x1.6
  // to 120 s, so after a long outage the next attempt could be tens of seconds away while the
  // peer was already serving, and every call failed fast meanwhile. The peers are our own
  // services on the cluster network: a connection attempt a second is cheap.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // Despite its name, gRPC reads this as the least time one connection attempt may take (its
  // connect deadline), not a backoff. At 250 ms, a peer slower than that to answer (a TLS
  // handshake on a loaded node, a replica busy starting) was abandoned on every attempt and
  // every call failed UNAVAILABLE; a refused connection still fails at once. gRPC's default.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kPeerConnectTimeoutMs);
  if (!options.server_name_override.empty()) {
    args.SetSslTargetNameOverride(options.server_name_override);
  }
  if (calls == ChannelCalls::kSessionStreams) {
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  }
  return grpc::CreateCustomChannel(target, *creds, args);
}

bool WaitForChannelReady(grpc::Channel& channel, absl::Time deadline) {
  while (true) {
    const grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
    if (state == GRPC_CHANNEL_READY) {
      return true;
    }
    if (state == GRPC_CHANNEL_SHUTDOWN ||
        !channel.WaitForStateChange(state, absl::ToChronoTime(deadline))) {
      return false;
    }
  }
}

}  // namespace podgate::runtime
