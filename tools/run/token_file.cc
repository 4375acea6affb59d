#include "run/token_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace podgate::run {

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  if (path.empty()) {
    return absl::InvalidArgumentError("--token_file is empty; name the file that holds the token");
  }
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    const std::string why =
        absl::StrCat("cannot read the token file ", path, ": ", std::strerror(err));
    return err == ENOENT   ? absl::NotFoundError(why)
           : err == EACCES ? absl::PermissionDeniedError(why)
                           : absl::FailedPreconditionError(why);
  }
  std::string text;
  char buf[8192];
  while (text.size() <= kMaxTokenFileBytes) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      const int err = errno;
      close(fd);
      return absl::FailedPreconditionError(
          absl::StrCat("cannot read the token file ", path, ": ", std::strerror(err)));
    }
    if (n == 0) {
      break;
    }
    text.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  if (text.size() > kMaxTokenFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the token file ", path, " is larger than ",
                                                   kMaxTokenFileBytes / 1024,
                                                   " KiB; it should hold only the token"));
  }
  const absl::string_view token = absl::StripAsciiWhitespace(text);
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the token file ", path, " is empty; it should hold the token"));
  }
  for (const char c : token) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("the token file ", path,
                       " holds spaces, line breaks or control characters inside the token; it "
                       "should hold only the token"));
    }
  }
  return std::string(token);
}

}  // namespace podgate::run
