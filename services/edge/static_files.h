// The page's static files (--web_root): loaded once at start, bounded, served from memory.
//
// Only files found under the root at start exist: a request path is a key into that set, never
// joined to a directory, so `..`, encoded dots, symlinks created later or absolute paths cannot
// reach anything else. "/" is /index.html; anything else unknown is 404.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "http/server.h"

namespace podgate::edge {

// The Content-Type edge serves a file under (by its extension); application/octet-stream
// for an unknown one.
const char* ContentTypeFor(std::string_view path);

class StaticFiles {
 public:
  // Loads every regular file under `root` (at most `max_bytes` in total). An empty root
  // serves none.
  static absl::StatusOr<StaticFiles> Load(const std::string& root, size_t max_bytes = 32 << 20);
  StaticFiles() = default;

  struct File {
    std::string content_type;
    std::string cache_control;
    std::string etag;
    std::string body;
  };
  // `path` is the request path ("/" means /index.html); null when absent.
  const File* Find(const std::string& path) const;

  // The answer to a GET or HEAD of `path`: the file (no body for HEAD) with its ETag and
  // Cache-Control, 304 when If-None-Match names its ETag, else 404.
  http::Response Serve(const http::Request& request, std::string_view path) const;

  size_t size() const { return files_.size(); }

 private:
  std::map<std::string, File> files_;
};

}  // namespace podgate::edge
