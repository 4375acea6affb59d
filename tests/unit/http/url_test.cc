// The strict URL parser for podgate's own outbound clients: what it accepts, what it refuses
// and why, and, for what it accepts, the same host, port and path as libcurl's URL parser.
#include "http/url.h"

#include <curl/curl.h>

#include "absl/strings/ascii.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podgate::http {
namespace {

using ::testing::HasSubstr;

TEST(UrlTest, AcceptsPlainUrls) {
  struct Case {
    const char* text;
    bool tls;
    const char* host;
    uint16_t port;
    const char* target;
  };
  for (const Case& c : std::vector<Case>{
           {"https://idp.example.com", true, "idp.example.com", 443, "/"},
           {"https://IdP.Example.COM/realms/x/protocol/openid-connect/certs", true,
            "idp.example.com", 443, "/realms/x/protocol/openid-connect/certs"},
           {"HTTP://127.0.0.1:8080/jwks?v=1", false, "127.0.0.1", 8080, "/jwks?v=1"},
           {"http://localhost?x", false, "localhost", 80, "/?x"},
           {"https://[::1]:8443/keys", true, "::1", 8443, "/keys"},
           {"https://[2001:db8::1]/", true, "2001:db8::1", 443, "/"},
       }) {
    absl::StatusOr<HttpUrl> url = ParseHttpUrl(c.text);
    ASSERT_TRUE(url.ok()) << c.text << ": " << url.status();
    EXPECT_EQ(url->tls, c.tls) << c.text;
    EXPECT_EQ(url->host, c.host) << c.text;
    EXPECT_EQ(url->port, c.port) << c.text;
    EXPECT_EQ(url->target, c.target) << c.text;
  }
}

TEST(UrlTest, RefusesWhatIsNotPlainlyAUrlAndSaysWhy) {
  struct Case {
    std::string text;
    const char* why;
  };
  for (const Case& c : std::vector<Case>{
           {"idp.example.com/jwks", "not an absolute URL"},
           {"ftp://idp.example.com/", "not http or https"},
           {"file:///etc/passwd", "not http or https"},
           {"https://user:pw@idp.example.com/", "user information"},
           {"https://idp.example.com@evil.test/", "user information"},
           {"https://idp.example.com/#frag", "fragment"},
           {"https:///jwks", "no host"},
           {"https://:443/jwks", "no host"},
           {"https://idp.example.com:/", "empty port"},
           {"https://idp.example.com:0/", "not 1..65535"},
           {"https://idp.example.com:65536/", "not 1..65535"},
           {"https://idp.example.com:+443/", "not 1..65535"},
           {"https://idp.example.com:44a/", "not 1..65535"},
           {"https://idp_example.com/", "not a DNS name"},
           {"https://-idp.example.com/", "not a DNS name"},
           {"https://idp..example.com/", "not a DNS name"},
           {"https://[::1/", "closing ]"},
           {"https://[::g]/", "IPv6"},
           {"https://[::1]x/", "after the IPv6"},
           {"https://idp.example.com/a b", "space"},
           {"https://idp.example.com/\r\nX: y", "control"},
           {"https://idp.example.com/\xc3\xa9", "non-ASCII"},
           {"https://idp.example.com/" + std::string(3000, 'a'), "longer than"},
       }) {
    absl::StatusOr<HttpUrl> url = ParseHttpUrl(c.text);
    ASSERT_FALSE(url.ok()) << c.text;
    EXPECT_EQ(url.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(url.status().message(), HasSubstr(c.why)) << c.text;
  }
}

TEST(UrlTest, AgreesWithLibcurlOnWhatItAccepts) {
  for (const char* text : {"https://idp.example.com", "https://IdP.Example.COM:8443/a/b?c=d",
                           "http://127.0.0.1:8080/jwks?v=1", "https://[::1]:8443/keys",
                           "http://localhost?x", "https://a-b.c-d.example/%2e%2e/x"}) {
    absl::StatusOr<HttpUrl> ours = ParseHttpUrl(text);
    ASSERT_TRUE(ours.ok()) << text;
    CURLU* u = curl_url();
    ASSERT_EQ(curl_url_set(u, CURLUPART_URL, text, 0), CURLUE_OK) << text;
    char* host = nullptr;
    char* port = nullptr;
    char* path = nullptr;
    char* query = nullptr;
    ASSERT_EQ(curl_url_get(u, CURLUPART_HOST, &host, 0), CURLUE_OK);
    ASSERT_EQ(curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT), CURLUE_OK);
    ASSERT_EQ(curl_url_get(u, CURLUPART_PATH, &path, 0), CURLUE_OK);
    std::string target = path;
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK) {
      target += std::string("?") + query;
    }
    std::string curl_host = host;
    if (curl_host.size() > 2 && curl_host.front() == '[') {
      curl_host = curl_host.substr(1, curl_host.size() - 2);
    }
    EXPECT_EQ(ours->host, absl::AsciiStrToLower(curl_host)) << text;
    EXPECT_EQ(std::to_string(ours->port), port) << text;
    EXPECT_EQ(ours->target, target) << text;
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
  }
}

TEST(UrlTest, LoopbackAndPrinting) {
  EXPECT_TRUE(ParseHttpUrl("http://127.9.9.9/")->IsLoopback());
  EXPECT_TRUE(ParseHttpUrl("http://[::1]/")->IsLoopback());
  EXPECT_TRUE(ParseHttpUrl("http://LOCALHOST/")->IsLoopback());
  EXPECT_FALSE(ParseHttpUrl("http://128.0.0.1/")->IsLoopback());
  EXPECT_FALSE(ParseHttpUrl("http://localhost.evil.test/")->IsLoopback());
  EXPECT_FALSE(ParseHttpUrl("http://2130706433/")->IsLoopback());
  EXPECT_EQ(ParseHttpUrl("https://[::1]:443/x")->ToString(), "https://[::1]/x");
  EXPECT_EQ(ParseHttpUrl("http://h:81")->ToString(), "http://h:81/");
}

}  // namespace
}  // namespace podgate::http
