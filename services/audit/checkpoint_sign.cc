#include "audit/checkpoint_sign.h"

#include <fcntl.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "crypto/sha256.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "nlohmann/json.hpp"

namespace podgate::audit {
namespace {

using podgate::audit::v1::SignedCheckpoint;

constexpr size_t kEd25519SignatureBytes = 64;
// A checkpoint file is read whole; a bigger one is not a checkpoint file.
constexpr std::streamsize kMaxCheckpointFileBytes = 64 << 20;

void PutU32(uint32_t v, std::string* out) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

void PutU64(uint64_t v, std::string* out) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(what, " ", path, ": cannot be read (", std::strerror(errno), ")"));
  }
  std::string text;
  char buffer[65536];
  while (in.read(buffer, sizeof(buffer)) || in.gcount() > 0) {
    text.append(buffer, static_cast<size_t>(in.gcount()));
    if (static_cast<std::streamsize>(text.size()) > kMaxCheckpointFileBytes) {
      return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": larger than 64 MiB"));
    }
  }
  return text;
}

std::string KindName(SignedCheckpoint::Kind kind) {
  switch (kind) {
    case SignedCheckpoint::KIND_HEAD:
      return "head";
    case SignedCheckpoint::KIND_RETENTION_CUT:
      return "retention cut";
    default:
      return "no kind";
  }
}

}  // namespace

absl::StatusOr<std::shared_ptr<const CheckpointKey>> CheckpointKey::LoadPrivate(
    const std::string& path) {
  absl::StatusOr<std::string> pem = ReadSmallFile(path, "checkpoint key");
  if (!pem.ok()) {
    return pem.status();
  }
  return FromPem(*pem, path, /*want_private=*/true);
}

absl::StatusOr<std::shared_ptr<const CheckpointKey>> CheckpointKey::LoadPublic(
    const std::string& path) {
  absl::StatusOr<std::string> pem = ReadSmallFile(path, "public key");
  if (!pem.ok()) {
    return pem.status();
  }
  return FromPem(*pem, path, /*want_private=*/false);
}

absl::StatusOr<std::shared_ptr<const CheckpointKey>> CheckpointKey::PrivateFromPem(
    absl::string_view pem, const std::string& name) {
  return FromPem(pem, name, true);
}

absl::StatusOr<std::shared_ptr<const CheckpointKey>> CheckpointKey::PublicFromPem(
    absl::string_view pem, const std::string& name) {
  return FromPem(pem, name, false);
}

absl::StatusOr<std::shared_ptr<const CheckpointKey>> CheckpointKey::FromPem(absl::string_view pem,
                                                                            const std::string& name,
                                                                            bool want_private) {
  const bool is_public_pem = absl::StrContains(pem, "-----BEGIN PUBLIC KEY-----");
  const bool is_private_pem = absl::StrContains(pem, "PRIVATE KEY-----");
  if (!is_public_pem && !is_private_pem) {
    return absl::InvalidArgumentError(
        absl::StrCat(name,
                     ": not a PEM key (expected -----BEGIN PRIVATE KEY----- or "
                     "-----BEGIN PUBLIC KEY-----)"));
  }
  if (want_private && !is_private_pem) {
    return absl::InvalidArgumentError(
        absl::StrCat(name,
                     ": holds a public key; signing needs the Ed25519 private key (openssl genpkey "
                     "-algorithm ed25519)"));
  }
  crypto::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  crypto::EvpPkeyPtr key(is_private_pem
                             ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)
                             : PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": the PEM key does not parse (damaged or encrypted)"));
  }
  if (EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) {
    const char* type = EVP_PKEY_get0_type_name(key.get());
    return absl::InvalidArgumentError(absl::StrCat(name, ": a ", type != nullptr ? type : "non-",
                                                   " key; checkpoints need an Ed25519 key"));
  }
  unsigned char raw[32];
  size_t raw_len = sizeof(raw);
  if (EVP_PKEY_get_raw_public_key(key.get(), raw, &raw_len) != 1 || raw_len != sizeof(raw)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": no Ed25519 public key inside"));
  }
  std::string key_id =
      crypto::Sha256Hex(std::string_view(reinterpret_cast<const char*>(raw), raw_len))
          .substr(0, 16);
  if (!want_private && is_private_pem) {
    // Keep only the public half: a verifier never needs to sign.
    crypto::EvpPkeyPtr pub(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw, raw_len));
    if (pub == nullptr) {
      return absl::InternalError(absl::StrCat(name, ": cannot derive the public key"));
    }
    key = std::move(pub);
  }
  return std::shared_ptr<const CheckpointKey>(
      new CheckpointKey(std::move(key), want_private, std::move(key_id)));
}

absl::Status CheckpointKey::Sign(SignedCheckpoint* checkpoint) const {
  if (!private_) {
    return absl::FailedPreconditionError("checkpoint key: a public key cannot sign");
  }
  const std::string input = CheckpointSigningInput(*checkpoint);
  crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  unsigned char signature[kEd25519SignatureBytes];
  size_t length = sizeof(signature);
  if (ctx == nullptr || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), signature, &length,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
    return absl::InternalError("checkpoint key: Ed25519 signing failed");
  }
  checkpoint->set_key_id(key_id_);
  checkpoint->set_signature(std::string(reinterpret_cast<const char*>(signature), length));
  return absl::OkStatus();
}

absl::Status CheckpointKey::Check(const SignedCheckpoint& checkpoint) const {
  if (checkpoint.key_id() != key_id_) {
    return absl::PermissionDeniedError(absl::StrCat(DescribeCheckpoint(checkpoint),
                                                    ": signed by key ", checkpoint.key_id(),
                                                    ", not ", key_id_));
  }
  if (checkpoint.signature().empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat(DescribeCheckpoint(checkpoint), ": not signed"));
  }
  const std::string input = CheckpointSigningInput(checkpoint);
  crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1 ||
      EVP_DigestVerify(ctx.get(),
                       reinterpret_cast<const unsigned char*>(checkpoint.signature().data()),
                       checkpoint.signature().size(),
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
    return absl::PermissionDeniedError(
        absl::StrCat(DescribeCheckpoint(checkpoint), ": the signature is not valid"));
  }
  return absl::OkStatus();
}

std::string CheckpointSigningInput(const SignedCheckpoint& c) {
  std::string out = "podgate.audit.checkpoint.v1\n";
  PutU32(static_cast<uint32_t>(c.kind()), &out);
  PutU32(static_cast<uint32_t>(c.chain_id().size()), &out);
  out += c.chain_id();
  PutU64(static_cast<uint64_t>(c.sequence()), &out);
  PutU32(static_cast<uint32_t>(c.hash().size()), &out);
  out += c.hash();
  PutU64(static_cast<uint64_t>(c.time().seconds()), &out);
  PutU32(static_cast<uint32_t>(c.time().nanos()), &out);
  return out;
}

absl::Status CheckCheckpoint(const std::vector<std::shared_ptr<const CheckpointKey>>& keys,
                             const SignedCheckpoint& checkpoint) {
  if (checkpoint.kind() != SignedCheckpoint::KIND_HEAD &&
      checkpoint.kind() != SignedCheckpoint::KIND_RETENTION_CUT) {
    return absl::InvalidArgumentError(
        absl::StrCat(DescribeCheckpoint(checkpoint), ": has no kind (head or retention cut)"));
  }
  if (checkpoint.hash().size() != 32u || checkpoint.sequence() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        DescribeCheckpoint(checkpoint), ": needs a sequence of at least 1 and a 32-byte hash"));
  }
  for (const auto& key : keys) {
    if (key->key_id() == checkpoint.key_id()) {
      return key->Check(checkpoint);
    }
  }
  return absl::PermissionDeniedError(
      absl::StrCat(DescribeCheckpoint(checkpoint), ": signed by key ",
                   checkpoint.key_id().empty() ? "(none)" : checkpoint.key_id(),
                   ", which is not among the public keys given"));
}

std::string DescribeCheckpoint(const SignedCheckpoint& c) {
  return absl::StrCat("chain ", c.chain_id(), " sequence ", c.sequence(), " (", KindName(c.kind()),
                      " checkpoint, signed ", google::protobuf::util::TimeUtil::ToString(c.time()),
                      ")");
}

std::string CheckpointJson(const SignedCheckpoint& checkpoint) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  if (!google::protobuf::util::MessageToJsonString(checkpoint, &json, options).ok()) {
    return "{}";
  }
  return json;
}

absl::StatusOr<std::vector<SignedCheckpoint>> ParseCheckpointLines(absl::string_view text,
                                                                   const std::string& name) {
  std::vector<SignedCheckpoint> out;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    const absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    if (trimmed.empty()) {
      continue;
    }
    const std::string where = absl::StrCat(name, ":", line_number, ": ");
    nlohmann::json object = nlohmann::json::parse(trimmed, nullptr, /*allow_exceptions=*/false);
    if (object.is_discarded() || !object.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, "not a JSON object"));
    }
    if (auto type = object.find("type"); type != object.end()) {
      if (!type->is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(where, "\"type\" is not a string"));
      }
      const std::string value = type->get<std::string>();
      if (value == "record") {
        continue;
      }
      if (value != "checkpoint") {
        return absl::InvalidArgumentError(
            absl::StrCat(where, "\"type\" is \"", value, "\", not checkpoint or record"));
      }
      object.erase(type);
    }
    SignedCheckpoint checkpoint;
    if (auto s = google::protobuf::util::JsonStringToMessage(object.dump(), &checkpoint); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "not a SignedCheckpoint: ", std::string(s.message())));
    }
    out.push_back(std::move(checkpoint));
  }
  return out;
}

absl::StatusOr<std::vector<SignedCheckpoint>> ReadCheckpointFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadSmallFile(path, "checkpoint file");
  if (!text.ok()) {
    return text.status();
  }
  return ParseCheckpointLines(*text, path);
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string temporary = absl::StrCat(path, ".tmp");
  auto fail = [&](const char* what) {
    return absl::UnavailableError(absl::StrCat(what, " ", temporary, ": ", std::strerror(errno)));
  };
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return fail("creating");
  }
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      ::close(fd);
      return fail("writing");
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    return fail("syncing");
  }
  ::close(fd);
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(
        absl::StrCat("renaming ", temporary, " to ", path, ": ", std::strerror(errno)));
  }
  const size_t slash = path.rfind('/');
  const std::string folder = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return absl::OkStatus();
}

}  // namespace podgate::audit
