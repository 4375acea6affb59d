#include "edge/static_files.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "crypto/sha256.h"
#include "edge/http_reply.h"

namespace podgate::edge {

namespace bhttp = boost::beast::http;

const char* ContentTypeFor(std::string_view path) {
  static const std::pair<const char*, const char*> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".map", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".woff2", "font/woff2"},
      {".txt", "text/plain; charset=utf-8"},
  };
  for (const auto& [ext, type] : kTypes) {
    if (absl::EndsWith(absl::string_view(path.data(), path.size()), ext)) {
      return type;
    }
  }
  return "application/octet-stream";
}

absl::StatusOr<StaticFiles> StaticFiles::Load(const std::string& root, size_t max_bytes) {
  StaticFiles files;
  if (root.empty()) {
    return files;
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(root, ec)) {
    return absl::InvalidArgumentError(absl::StrCat("--web_root: ", root, " is not a directory"));
  }
  size_t total = 0;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file()) {
      continue;
    }
    std::ifstream in(it->path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    File f;
    f.body = ss.str();
    total += f.body.size();
    if (total > max_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("--web_root: more than ", max_bytes, " bytes of files"));
    }
    std::string rel = "/" + std::filesystem::relative(it->path(), root).generic_string();
    f.content_type = ContentTypeFor(rel);
    // The page itself must be revalidated so new releases load; fingerprinted assets under
    // /assets/ never change under their name.
    f.cache_control =
        absl::StartsWith(rel, "/assets/") ? "public, max-age=31536000, immutable" : "no-cache";
    f.etag = absl::StrCat("\"", crypto::Sha256Hex(f.body).substr(0, 32), "\"");
    files.files_.emplace(rel, std::move(f));
  }
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat("--web_root: ", ec.message()));
  }
  return files;
}

const StaticFiles::File* StaticFiles::Find(const std::string& path) const {
  auto it = files_.find(path == "/" ? "/index.html" : path);
  return it == files_.end() ? nullptr : &it->second;
}

http::Response StaticFiles::Serve(const http::Request& request, std::string_view path) const {
  const File* file = Find(std::string(path));
  if (file == nullptr) {
    return http::MakeResponse(request, bhttp::status::not_found, "text/plain", "not found\n");
  }
  if (Header(request, bhttp::field::if_none_match) == file->etag) {
    http::Response res =
        http::MakeResponse(request, bhttp::status::not_modified, file->content_type, "");
    res.set(bhttp::field::etag, file->etag);
    res.set(bhttp::field::cache_control, file->cache_control);
    SecurityHeaders(res);
    return res;
  }
  http::Response res = http::MakeResponse(request, bhttp::status::ok, file->content_type,
                                          request.method() == bhttp::verb::head ? "" : file->body);
  res.set(bhttp::field::etag, file->etag);
  res.set(bhttp::field::cache_control, file->cache_control);
  SecurityHeaders(res);
  return res;
}

}  // namespace podgate::edge
