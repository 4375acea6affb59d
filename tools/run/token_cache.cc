#include "run/token_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace podgate::run {

namespace {

// A cache is a few kilobytes; anything much larger is not one.
constexpr size_t kMaxCacheBytes = 256 * 1024;

absl::Status ErrnoError(const std::string& what, const std::string& path, int err) {
  const std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  return err == ENOENT ? absl::NotFoundError(message) : absl::UnavailableError(message);
}

std::string Dirname(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    return ".";
  }
  return slash == 0 ? "/" : path.substr(0, slash);
}

// mkdir -p with mode 0700 for every directory it creates; existing ones are left as they are.
absl::Status MakeParents(const std::string& dir) {
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) {
    return S_ISDIR(st.st_mode) ? absl::OkStatus()
                               : absl::FailedPreconditionError(
                                     absl::StrCat("token cache: ", dir, " is not a directory"));
  }
  if (errno != ENOENT) {
    return ErrnoError("token cache: cannot inspect", dir, errno);
  }
  if (const std::string parent = Dirname(dir); parent != dir) {
    if (absl::Status s = MakeParents(parent); !s.ok()) {
      return s;
    }
  }
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError("token cache: cannot create directory", dir, errno);
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return absl::UnavailableError(std::strerror(n < 0 ? errno : EIO));
    }
    off += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> DefaultTokenCachePath(const Env& env) {
  if (std::optional<std::string> xdg = env("XDG_CONFIG_HOME");
      xdg && !xdg->empty() && (*xdg)[0] == '/') {
    return absl::StrCat(*xdg, "/podgate/token.json");
  }
  if (std::optional<std::string> home = env("HOME"); home && !home->empty()) {
    return absl::StrCat(*home, "/.config/podgate/token.json");
  }
  return absl::FailedPreconditionError(
      "token cache: neither XDG_CONFIG_HOME nor HOME is set; give --token_cache");
}

std::string SerializeToken(const CachedToken& token) {
  nlohmann::json doc = {{"id_token", token.id_token},
                        {"refresh_token", token.refresh_token},
                        {"expiry", absl::ToUnixSeconds(token.expiry)},
                        {"issuer", token.issuer},
                        {"client_id", token.client_id}};
  return doc.dump(2) + "\n";
}

absl::StatusOr<CachedToken> ParseToken(const std::string& text) {
  const nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError("the token cache is not a JSON object");
  }
  CachedToken token;
  for (auto [field, out, required] : std::vector<std::tuple<const char*, std::string*, bool>>{
           {"id_token", &token.id_token, true},
           {"refresh_token", &token.refresh_token, false},
           {"issuer", &token.issuer, true},
           {"client_id", &token.client_id, true}}) {
    auto it = doc.find(field);
    if (it == doc.end() && !required) {
      continue;
    }
    if (it == doc.end() || !it->is_string() || (required && it->get<std::string>().empty())) {
      return absl::InvalidArgumentError(
          absl::StrCat("the token cache has no valid \"", field, "\" (a string)"));
    }
    *out = it->get<std::string>();
  }
  auto expiry = doc.find("expiry");
  if (expiry == doc.end() || !expiry->is_number_integer()) {
    return absl::InvalidArgumentError(
        "the token cache has no valid \"expiry\" (an integer, Unix seconds)");
  }
  token.expiry = absl::FromUnixSeconds(expiry->get<int64_t>());
  return token;
}

absl::StatusOr<CachedToken> ReadTokenCache(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ELOOP) {
      return absl::FailedPreconditionError(
          absl::StrCat("token cache ", path, " is a symbolic link; refusing to use it"));
    }
    return ErrnoError("cannot open token cache", path, errno);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoError("cannot inspect token cache", path, err);
  }
  auto refuse = [&](const std::string& why) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("token cache ", path, " ", why,
                     "; refusing to use it (remove it and run podgate-run login again)"));
  };
  if (!S_ISREG(st.st_mode)) {
    return refuse("is not a regular file");
  }
  if (st.st_uid != geteuid()) {
    return refuse(
        absl::StrCat("is owned by uid ", st.st_uid, ", not by this user (uid ", geteuid(), ")"));
  }
  if ((st.st_mode & 077) != 0) {
    return refuse(absl::StrFormat("has mode %04o: others can read or change it (it must be 0600)",
                                  st.st_mode & 07777));
  }
  if (static_cast<size_t>(st.st_size) > kMaxCacheBytes) {
    return refuse(absl::StrCat("is larger than ", kMaxCacheBytes, " bytes"));
  }
  std::string text;
  char buf[8192];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      const int err = errno;
      close(fd);
      return ErrnoError("cannot read token cache", path, err);
    }
    if (n == 0) {
      break;
    }
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxCacheBytes) {
      return refuse(absl::StrCat("is larger than ", kMaxCacheBytes, " bytes"));
    }
  }
  close(fd);
  absl::StatusOr<CachedToken> token = ParseToken(text);
  if (!token.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("token cache ", path, ": ",
                                                   token.status().message(),
                                                   " (remove it and run podgate-run login again)"));
  }
  return token;
}

absl::Status WriteTokenCache(const std::string& path, const CachedToken& token) {
  const std::string dir = Dirname(path);
  if (absl::Status s = MakeParents(dir); !s.ok()) {
    return s;
  }
  // A temporary file in the same directory (so the rename is atomic), created 0600 by mkstemp.
  std::string tmp = absl::StrCat(dir, "/.token.json.XXXXXX");
  const int fd = mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) {
    return ErrnoError("token cache: cannot create a temporary file in", dir, errno);
  }
  auto fail = [&](const std::string& what, int err) {
    close(fd);
    unlink(tmp.c_str());
    return ErrnoError(absl::StrCat("token cache: cannot ", what), tmp, err);
  };
  if (fchmod(fd, 0600) != 0) {
    return fail("set the mode of", errno);
  }
  if (absl::Status s = WriteAll(fd, SerializeToken(token)); !s.ok()) {
    close(fd);
    unlink(tmp.c_str());
    return absl::UnavailableError(
        absl::StrCat("token cache: cannot write ", tmp, ": ", s.message()));
  }
  if (fsync(fd) != 0) {
    return fail("flush", errno);
  }
  if (close(fd) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return ErrnoError("token cache: cannot close", tmp, err);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return ErrnoError("token cache: cannot rename the temporary file to", path, err);
  }
  return absl::OkStatus();
}

absl::Status RemoveTokenCache(const std::string& path) {
  if (unlink(path.c_str()) != 0) {
    return ErrnoError("cannot remove token cache", path, errno);
  }
  unlink(absl::StrCat(path, ".lock").c_str());
  return absl::OkStatus();
}

absl::StatusOr<TokenCacheLock> TokenCacheLock::Acquire(const std::string& path,
                                                       absl::Duration timeout) {
  const std::string lock = absl::StrCat(path, ".lock");
  const int fd = open(lock.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    return ErrnoError("token cache: cannot open the lock file", lock, errno);
  }
  const absl::Time deadline = absl::Now() + timeout;
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      const int err = errno;
      close(fd);
      return ErrnoError("token cache: cannot lock", lock, err);
    }
    if (absl::Now() >= deadline) {
      close(fd);
      return absl::DeadlineExceededError(
          absl::StrCat("token cache: ", lock, " is still locked by another podgate-run after ",
                       absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return TokenCacheLock(fd);
}

TokenCacheLock::~TokenCacheLock() {
  if (fd_ >= 0) {
    close(fd_);  // releases the lock
  }
}

}  // namespace podgate::run
