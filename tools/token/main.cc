// podgate-token: mints a signed JWT for local demos, tests and scripts.
//
//   podgate-token --key_file=secret --algorithm=HS256 --issuer=https://podgate.local
//       --subject=alice --groups=dev --ttl=8h
//
// Production tokens come from the organisation's identity provider; this tool exists so a
// developer can try podgate without one.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "auth/jwt.h"
#include "runtime/flags.h"

ABSL_FLAG(std::string, key_file, "",
          "Signing key: an HMAC secret file (HS256) or a PEM private key (RS256, ES256). "
          "Required.");
ABSL_FLAG(std::string, algorithm, "HS256", "HS256, RS256 or ES256. Default HS256.");
ABSL_FLAG(std::string, key_id, "", "kid header. Default: none.");
ABSL_FLAG(std::string, issuer, "https://podgate.local", "iss claim. Default https://podgate.local.");
ABSL_FLAG(std::string, audience, "podgate", "aud claim. Default podgate.");
ABSL_FLAG(std::string, subject, "", "sub claim: the user name. Required.");
ABSL_FLAG(std::string, groups, "", "groups claim, comma separated. Default: none.");
ABSL_FLAG(absl::Duration, ttl, absl::Hours(8), "Lifetime (exp - iat), at most 30 days. Default 8h.");

int main(int argc, char** argv) {
  podgate::runtime::ParseFlags(argc, argv, "podgate-token: mint a signed JWT for podgate.");
  const std::string subject = absl::GetFlag(FLAGS_subject);
  if (subject.empty()) {
    std::fprintf(stderr, "podgate-token: --subject is required\n");
    return 2;
  }
  const absl::Duration ttl = absl::GetFlag(FLAGS_ttl);
  if (ttl <= absl::ZeroDuration() || ttl > absl::Hours(24 * 30)) {
    std::fprintf(stderr, "podgate-token: --ttl must be between 1s and 30 days\n");
    return 2;
  }
  absl::StatusOr<podgate::auth::Algorithm> alg =
      podgate::auth::ParseAlgorithm(absl::GetFlag(FLAGS_algorithm));
  if (!alg.ok()) {
    std::fprintf(stderr, "podgate-token: --algorithm: %s\n",
                 std::string(alg.status().message()).c_str());
    return 2;
  }
  absl::StatusOr<podgate::auth::Key> key = podgate::auth::LoadSigningKey(
      absl::GetFlag(FLAGS_key_file), *alg, absl::GetFlag(FLAGS_key_id));
  if (!key.ok()) {
    std::fprintf(stderr, "podgate-token: --key_file: %s\n",
                 std::string(key.status().message()).c_str());
    return 2;
  }
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  nlohmann::json claims = {{"iss", absl::GetFlag(FLAGS_issuer)},
                           {"aud", absl::GetFlag(FLAGS_audience)},
                           {"sub", subject},
                           {"iat", now},
                           {"nbf", now},
                           {"exp", now + absl::ToInt64Seconds(ttl)}};
  std::vector<std::string> groups =
      absl::StrSplit(absl::GetFlag(FLAGS_groups), ',', absl::SkipWhitespace());
  if (!groups.empty()) {
    claims["groups"] = groups;
  }
  absl::StatusOr<std::string> token = podgate::auth::Sign(claims, *key);
  if (!token.ok()) {
    std::fprintf(stderr, "podgate-token: %s\n", std::string(token.status().message()).c_str());
    return 1;
  }
  std::printf("%s\n", token->c_str());
  return 0;
}
