// The file sink: JSON lines appended to a file and fsynced before a batch counts as delivered,
// rotated by size (<path>.1 newest .. <path>.<max_files>, by rename, the folder fsynced), for a
// log shipper (Fluent Bit, Vector) to tail. Reopens the file when someone else moved or removed
// it (logrotate), so the shipper's rotation and ours do not fight.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "audit/export/sink.h"

namespace podgate::audit::exporting {
namespace {

constexpr int64_t kDefaultMaxBytes = int64_t{100} << 20;
constexpr int kDefaultMaxFiles = 5;

std::string Errno(int error) { return std::strerror(error); }

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    return ".";
  }
  return slash == 0 ? "/" : path.substr(0, slash);
}

class FileSink final : public Sink {
 public:
  FileSink(std::string name, std::string path, int64_t max_bytes, int max_files)
      : name_(std::move(name)),
        path_(std::move(path)),
        dir_(DirName(path_)),
        max_bytes_(max_bytes),
        max_files_(max_files) {}
  ~FileSink() override { Close(); }

  DeliveryResult Deliver(absl::Span<const ExportItem> batch) override {
    std::string data;
    for (const ExportItem& item : batch) {
      absl::StrAppend(&data, ItemJson(item), "\n");
    }
    if (absl::Status s = Prepare(static_cast<int64_t>(data.size())); !s.ok()) {
      return {s, absl::ZeroDuration()};
    }
    size_t written = 0;
    while (written < data.size()) {
      const ssize_t n = ::write(fd_, data.data() + written, data.size() - written);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        const int error = errno;
        // A partial line may be on disk: the batch is delivered again after a reopen; the
        // shipper sees one broken line at worst (appends start on a fresh line, see Prepare).
        Close();
        return {Failure(absl::StrCat("writing ", path_, ": ", Errno(error))), absl::ZeroDuration()};
      }
      written += static_cast<size_t>(n);
    }
    if (::fsync(fd_) != 0) {
      const int error = errno;
      Close();
      return {Failure(absl::StrCat("fsync ", path_, ": ", Errno(error))), absl::ZeroDuration()};
    }
    size_ += static_cast<int64_t>(data.size());
    return {absl::OkStatus(), absl::ZeroDuration()};
  }

 private:
  absl::Status Failure(const std::string& what) const {
    return absl::UnavailableError(absl::StrCat("sink ", name_, ": file: ", what));
  }

  void Close() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

  // Opens (or reopens) the file and rotates it first when `incoming` bytes would push it past
  // max_bytes (a batch larger than max_bytes alone goes into a fresh file).
  absl::Status Prepare(int64_t incoming) {
    if (fd_ >= 0) {
      // Moved or removed behind our back: start a new file at the path.
      struct stat at_path {};
      struct stat open_file {};
      if (::stat(path_.c_str(), &at_path) != 0 || ::fstat(fd_, &open_file) != 0 ||
          at_path.st_ino != open_file.st_ino || at_path.st_dev != open_file.st_dev) {
        Close();
      }
    }
    if (fd_ < 0) {
      if (absl::Status s = Open(); !s.ok()) {
        return s;
      }
    }
    if (size_ > 0 && size_ + incoming > max_bytes_) {
      Close();
      if (absl::Status s = Rotate(); !s.ok()) {
        return s;
      }
      return Open();
    }
    return absl::OkStatus();
  }

  absl::Status Open() {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
      const int error = errno;
      struct stat dir {};
      if (::stat(dir_.c_str(), &dir) != 0) {
        return Failure(absl::StrCat("folder ", dir_, " is missing: ", Errno(errno)));
      }
      if (error == EACCES || error == EROFS) {
        return Failure(absl::StrCat("cannot write ", path_, " (folder ", dir_,
                                    " not writable?): ", Errno(error)));
      }
      return Failure(absl::StrCat("opening ", path_, ": ", Errno(error)));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int error = errno;
      ::close(fd);
      return Failure(absl::StrCat("stat ", path_, ": ", Errno(error)));
    }
    fd_ = fd;
    size_ = st.st_size;
    // A write that failed half-way left a line without its newline: finish it so that the
    // next record starts on a line of its own.
    if (size_ > 0) {
      char last = '\n';
      const int reader = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
      if (reader >= 0) {
        if (::pread(reader, &last, 1, size_ - 1) != 1) {
          last = '\n';
        }
        ::close(reader);
      }
      if (last != '\n' && ::write(fd_, "\n", 1) == 1) {
        ++size_;
      }
    }
    return FsyncDir();
  }

  absl::Status Rotate() {
    // Oldest first: .max_files-1 -> .max_files, ..., path -> .1.
    for (int i = max_files_ - 1; i >= 1; --i) {
      const std::string from = absl::StrCat(path_, ".", i);
      const std::string to = absl::StrCat(path_, ".", i + 1);
      if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
        return Failure(absl::StrCat("rotating ", from, ": ", Errno(errno)));
      }
    }
    const std::string first = absl::StrCat(path_, ".1");
    if (::rename(path_.c_str(), first.c_str()) != 0 && errno != ENOENT) {
      return Failure(absl::StrCat("rotating ", path_, ": ", Errno(errno)));
    }
    return FsyncDir();
  }

  // Makes renames and the file's creation durable.
  absl::Status FsyncDir() {
    const int dir = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
      return Failure(absl::StrCat("opening folder ", dir_, ": ", Errno(errno)));
    }
    const int rc = ::fsync(dir);
    const int error = errno;
    ::close(dir);
    if (rc != 0) {
      return Failure(absl::StrCat("fsync folder ", dir_, ": ", Errno(error)));
    }
    return absl::OkStatus();
  }

  const std::string name_;
  const std::string path_;
  const std::string dir_;
  const int64_t max_bytes_;
  const int max_files_;
  int fd_ = -1;
  int64_t size_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Sink>> MakeFileSink(const podgate::audit::v1::SinkConfig& config) {
  const auto& file = config.file();
  if (file.path().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("sink ", config.name(), ": file.path is empty"));
  }
  if (file.max_bytes() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sink ", config.name(), ": file.max_bytes must not be negative"));
  }
  if (file.max_files() < 0 || file.max_files() > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("sink ", config.name(), ": file.max_files is out of range (0 to 1000)"));
  }
  // A folder that does not exist is a configuration mistake; one that is merely not writable
  // yet (a volume mounted late) shows as delivery failures and a growing lag.
  const std::string dir = DirName(file.path());
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sink ", config.name(), ": file.path: folder ", dir, " does not exist"));
  }
  return std::make_unique<FileSink>(config.name(), file.path(),
                                    file.max_bytes() > 0 ? file.max_bytes() : kDefaultMaxBytes,
                                    file.max_files() > 0 ? file.max_files() : kDefaultMaxFiles);
}

}  // namespace podgate::audit::exporting
