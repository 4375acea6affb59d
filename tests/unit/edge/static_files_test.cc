// The page's static files: loading (bounds, errors), lookup, content types, and the answers
// (ETag, 304, HEAD, Cache-Control), without a socket.
#include "edge/static_files.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/test_pki.h"

namespace podgate::edge {
namespace {

namespace bhttp = boost::beast::http;
using ::testing::HasSubstr;

class StaticFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = testing::MakeTempDir("edge-static");
    std::filesystem::create_directories(root_ + "/assets/fonts");
    Write("/index.html", "<html>page</html>");
    Write("/assets/app.js", "js");
    Write("/assets/fonts/a.woff2", "font");
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }
  void Write(const std::string& rel, const std::string& body) {
    std::ofstream(root_ + rel, std::ios::binary) << body;
  }
  static std::string HeaderOf(const http::Response& res, bhttp::field field) {
    auto it = res.find(field);
    return it == res.end() ? "" : std::string(it->value());
  }

  std::string root_;
};

TEST_F(StaticFilesTest, ContentTypesFollowTheExtension) {
  EXPECT_STREQ(ContentTypeFor("/index.html"), "text/html; charset=utf-8");
  EXPECT_STREQ(ContentTypeFor("/a.js"), "text/javascript; charset=utf-8");
  EXPECT_STREQ(ContentTypeFor("/a.mjs"), "text/javascript; charset=utf-8");
  EXPECT_STREQ(ContentTypeFor("/a.css"), "text/css; charset=utf-8");
  EXPECT_STREQ(ContentTypeFor("/a.js.map"), "application/json");
  EXPECT_STREQ(ContentTypeFor("/a.svg"), "image/svg+xml");
  EXPECT_STREQ(ContentTypeFor("/f.woff2"), "font/woff2");
  // Unknown (and look-alike) extensions are opaque bytes, never sniffed as HTML.
  EXPECT_STREQ(ContentTypeFor("/a.exe"), "application/octet-stream");
  EXPECT_STREQ(ContentTypeFor("/html"), "application/octet-stream");
  EXPECT_STREQ(ContentTypeFor("/a.HTML"), "application/octet-stream");
  EXPECT_STREQ(ContentTypeFor(""), "application/octet-stream");
}

TEST_F(StaticFilesTest, LoadsEveryFileUnderTheRootByItsPath) {
  absl::StatusOr<StaticFiles> files = StaticFiles::Load(root_);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(files->size(), 3u);
  ASSERT_NE(files->Find("/"), nullptr);
  EXPECT_EQ(files->Find("/")->body, "<html>page</html>");
  EXPECT_EQ(files->Find("/"), files->Find("/index.html"));
  ASSERT_NE(files->Find("/assets/fonts/a.woff2"), nullptr);
  EXPECT_EQ(files->Find("/assets/fonts/a.woff2")->content_type, "font/woff2");
  EXPECT_EQ(files->Find("/assets/app.js")->cache_control, "public, max-age=31536000, immutable");
  EXPECT_EQ(files->Find("/index.html")->cache_control, "no-cache");
  // The ETag is a quoted content hash: same bytes, same tag; other bytes, another.
  EXPECT_EQ(files->Find("/index.html")->etag.size(), 34u);
  EXPECT_NE(files->Find("/index.html")->etag, files->Find("/assets/app.js")->etag);
  for (const char* absent :
       {"", "index.html", "/assets", "/assets/", "/../index.html", "/assets/../index.html",
        "/./index.html", "//index.html", "/INDEX.HTML", "/index.html%00", "/fonts/a.woff2"}) {
    EXPECT_EQ(files->Find(absent), nullptr) << absent;
  }
}

TEST_F(StaticFilesTest, AnEmptyRootServesNothingAndBadRootsFailToLoad) {
  absl::StatusOr<StaticFiles> none = StaticFiles::Load("");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->size(), 0u);
  EXPECT_EQ(none->Find("/"), nullptr);

  absl::StatusOr<StaticFiles> missing = StaticFiles::Load(root_ + "/nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.status().message(), HasSubstr("--web_root: "));
  EXPECT_THAT(missing.status().message(), HasSubstr("is not a directory"));
  EXPECT_FALSE(StaticFiles::Load(root_ + "/index.html").ok());
}

TEST_F(StaticFilesTest, MoreThanTheBoundFailsToLoad) {
  // 17 + 2 + 4 bytes: a bound of 22 is one short.
  EXPECT_TRUE(StaticFiles::Load(root_, 23).ok());
  absl::StatusOr<StaticFiles> over = StaticFiles::Load(root_, 22);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over.status().message(), HasSubstr("more than 22 bytes"));
}

TEST_F(StaticFilesTest, ServesFilesWithTheirHeadersRevalidatesAnd404sTheRest) {
  absl::StatusOr<StaticFiles> files = StaticFiles::Load(root_);
  ASSERT_TRUE(files.ok()) << files.status();
  const std::string etag = files->Find("/index.html")->etag;

  http::Request get(bhttp::verb::get, "/", 11);
  http::Response page = files->Serve(get, "/");
  EXPECT_EQ(page.result(), bhttp::status::ok);
  EXPECT_EQ(page.body(), "<html>page</html>");
  EXPECT_EQ(HeaderOf(page, bhttp::field::content_type), "text/html; charset=utf-8");
  EXPECT_EQ(HeaderOf(page, bhttp::field::etag), etag);
  // The file's own Cache-Control, the other security headers added.
  EXPECT_EQ(HeaderOf(page, bhttp::field::cache_control), "no-cache");
  EXPECT_EQ(page["X-Content-Type-Options"], "nosniff");

  http::Request head(bhttp::verb::head, "/index.html", 11);
  http::Response head_page = files->Serve(head, "/index.html");
  EXPECT_EQ(head_page.result(), bhttp::status::ok);
  EXPECT_EQ(head_page.body(), "");
  EXPECT_EQ(HeaderOf(head_page, bhttp::field::etag), etag);

  http::Request again(bhttp::verb::get, "/index.html", 11);
  again.set(bhttp::field::if_none_match, etag);
  http::Response not_modified = files->Serve(again, "/index.html");
  EXPECT_EQ(not_modified.result(), bhttp::status::not_modified);
  EXPECT_EQ(not_modified.body(), "");
  EXPECT_EQ(HeaderOf(not_modified, bhttp::field::etag), etag);
  again.set(bhttp::field::if_none_match, "\"other\"");
  EXPECT_EQ(files->Serve(again, "/index.html").result(), bhttp::status::ok);

  http::Request traversal(bhttp::verb::get, "/../index.html", 11);
  http::Response refused = files->Serve(traversal, "/../index.html");
  EXPECT_EQ(refused.result(), bhttp::status::not_found);
  EXPECT_EQ(refused.body(), "not found\n");
}

}  // namespace
}  // namespace podgate::edge
