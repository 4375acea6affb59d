// Differential test of net::ParseUrl against curl's own URL parser (Debian 12's libcurl, the one
// the curl in the containers runs), and of the address parsers against glibc's inet_aton and
// inet_pton.
//
// The property: whenever ParseUrl accepts a URL, curl accepts it too and reaches the same
// destination (host, port) with the same path and query. ParseUrl may refuse what curl accepts
// (that is its job); the test prints how many inputs each side accepted so a change that makes
// ParseUrl refuse everything does not pass unnoticed.
#include <arpa/inet.h>
#include <curl/curl.h>

#include <cstdint>
#include <cstring>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "policy/net_address.h"

namespace podgate::policy::net {
namespace {

// A small deterministic generator (xorshift64*): the corpus is the same on every run and
// every machine, so a failure can be reproduced from its input alone.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1DULL;
  }
  size_t Below(size_t n) { return static_cast<size_t>(Next() % n); }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Below(v.size())];
  }

 private:
  uint64_t state_;
};

std::string Lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Fragments the URL corpus is built from.

const std::vector<std::string> kSchemes = {
    "http://", "https://", "HTTP://", "HtTpS://", "ftp://", "gopher://", "dict://",    "ldap://",
    "smtp://", "pop3s://", "rtsp://", "tftp://",  "scp://", "ws://",     "foo+bar://", "x-y.z://",
    "1x://",   "",         "http:/",  "http:///", "http:",  "file://",   "//"};

const std::vector<std::string> kHosts = {
    // IPv4 in many spellings, valid and not.
    "169.254.169.254", "2852039166", "0xa9fea9fe", "0XA9FEA9FE", "0251.0376.0251.0376",
    "169.254.43518", "169.16689662", "0xa9.0xfe.0xa9.0xfe", "000251.254.169.254", "127.1",
    "127.0.1", "0177.1", "0x7f.1", "0", "00", "0x0", "4294967295", "4294967296", "0x100000000",
    "017777777777", "08", "09.1", "1.2.3.08", "0x", "0xg", "00x7f", "1.2.3.4.5", "256.1.1.1",
    "1.16777216", "1.2.3.4.", "1.2.3.4..", "127.1.", ".1.2.3", "1..2", "10.0.0.1", "192.168.0.1",
    "8.8.8.8",
    // Names.
    "orders", "Orders.Shop.SVC", "orders.app-shop.svc.cluster.local", "example.com.", "a-b", "-a",
    "a-", "a_b", "a..b", ".a", "a.", "..", ".", "xn--80ak6aa92e.com", "localhost", "LOCALHOST",
    "metadata.google.internal", "169.254.169.254.nip.io", "a9fea9fe.nip.io", "www--1.sslip.io",
    "kubernetes.default.svc", "1e1", "0x7f.example", "example.0x7f", "a~b", "a|b", "a!b", "a*b",
    "a$b", "a'b", "a,b", "a;b", "a=b", "a+b", "a&b", "a(b)",
    // Percent-encoded hosts.
    "%31%36%39.254.169.254", "%32852039166", "%30x7f.1", "loc%61lhost", "a%2eb", "a%2Eb", "a%2fb",
    "a%00b", "a%zzb", "a%2", "%", "a%25b", "a%2541", "a%c3%a9", "%5b::1%5d", "a%5fb", "a%20b",
    "x%2e", "%6frders", "%4fRDERS",
    // IPv6.
    "[::1]", "[::]", "[0:0:0:0:0:0:0:1]", "[::ffff:a9fe:a9fe]", "[::FFFF:169.254.169.254]",
    "[0:0:0:0:0:ffff:127.0.0.1]", "[fd00:ec2::254]", "[64:ff9b::a9fe:a9fe]", "[2002:a9fe:a9fe::]",
    "[2001:db8::1]", "[2001:DB8:0:0:1:0:0:1]", "[fe80::1]", "[::1%25eth0]", "[fe80::1%eth0]",
    "[1::2::3]", "[:1]", "[1:]", "[::01.2.3.4]", "[00000::1]", "[0000:0::1]", "[::1.2.3.4]",
    "[1:2:3:4:5:6:7:8]", "[1:2:3:4:5:6:7:8:9]", "[::g]", "[::1", "::1]", "[]", "[1-2]", "[v1.x]",
    // Odd authorities.
    "", "evil@127.0.0.1", "127.0.0.1:80@evil", "u:p@orders", "@orders", "{a,b}.svc", "svc{1,2}",
    "a b", "a\tb", "a\\b", "a#b", "a?b"};

const std::vector<std::string> kPorts = {
    "",    ":",      ":80",    ":080",     ":0",
    ":1",  ":65535", ":65536", ":+1",      ":8a",
    ": 1", ":-1",    ":8080",  ":0000443", ":99999999999999999999"};

const std::vector<std::string> kPaths = {"",
                                         "/",
                                         "/a",
                                         "/a/../b",
                                         "/./",
                                         "/a/.",
                                         "/..",
                                         "/a/b/../../..",
                                         "/a//../b",
                                         "/%2e%2e/",
                                         "/a%20b",
                                         "/[1-2]",
                                         "/{a,b}",
                                         "/a/..;/b",
                                         "?q",
                                         "/x?y/../z",
                                         "/a/.?q",
                                         "/a/..?q",
                                         "#frag",
                                         "/a#b",
                                         "/actuator/health/../env",
                                         "/.a/..b/../c",
                                         "/a/...",
                                         "//a",
                                         "/a?",
                                         "?",
                                         "/a?b?c",
                                         "/%41%42",
                                         "/a%zz",
                                         "/a%0a",
                                         "/a b",
                                         "/\\..",
                                         "/a/%2F"};

// Every hand-written URL of the unit test, as well: they are the ones attackers tried.
const std::vector<std::string> kHandWritten = {
    "http://2852039166/",
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://127.1:8080/",
    "http://0:8080/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[fd00:ec2::254]/",
    "http://metadata.google.internal/",
    "http://100.100.100.200/",
    "http://169.254.169.254.nip.io/",
    "http://169.254.169.254./",
    "http://%31%36%39.254.169.254/",
    "HTTP://LOCALHOST/",
    "http://[::1]/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://kubernetes.default.svc/",
    "http://127.0.0.1.nip.io",
    "http://0177.0.0.1/",
    "http://127.0.0.1:80@evil/",
    "http:\\\\127.0.0.1/",
    "http://evil.com#@127.0.0.1",
    "http://127.0.0.1 /",
    "http://[::1%25eth0]/",
    "http://svc/[1-100]",
    "http://{a,b}.svc/",
    "http://orders.app-shop.svc.cluster.local:8080/actuator/health",
    "https://example.com/",
    "http://[2001:db8::1]/",
    "http://x:/a?",
    "HTTPS://Orders.Shop:08443?x=1&y=%2F"};

std::string Mutate(std::string s, Rng& rng) {
  static const std::string kAlphabet = "/?#@:[]{}%.\\ -_0123456789abcdefxX~!$&'()*+,;=AZaz\t";
  const size_t steps = 1 + rng.Below(3);
  for (size_t i = 0; i < steps; ++i) {
    const size_t at = s.empty() ? 0 : rng.Below(s.size() + 1);
    switch (rng.Below(4)) {
      case 0:  // insert
        s.insert(at, 1, kAlphabet[rng.Below(kAlphabet.size())]);
        break;
      case 1:  // delete
        if (at < s.size()) {
          s.erase(at, 1);
        }
        break;
      case 2:  // replace
        if (at < s.size()) {
          s[at] = kAlphabet[rng.Below(kAlphabet.size())];
        }
        break;
      default:  // percent-encode one byte
        if (at < s.size()) {
          char buf[4];
          std::snprintf(buf, sizeof(buf), "%%%02X", static_cast<unsigned char>(s[at]));
          s.replace(at, 1, buf);
        }
        break;
    }
  }
  return s;
}

std::vector<std::string> UrlCorpus() {
  std::set<std::string> corpus(kHandWritten.begin(), kHandWritten.end());
  for (const std::string& host : kHosts) {
    corpus.insert("http://" + host + "/");
  }
  Rng rng(0x706f64676174650fULL);
  while (corpus.size() < 8000) {
    // One draw per statement: the order in which operands of + are evaluated is unspecified,
    // and the corpus must not depend on the compiler.
    std::string url = rng.Pick(kSchemes);
    url += rng.Pick(kHosts);
    url += rng.Pick(kPorts);
    url += rng.Pick(kPaths);
    corpus.insert(url);
  }
  const std::vector<std::string> base(corpus.begin(), corpus.end());
  while (corpus.size() < 12000) {
    corpus.insert(Mutate(rng.Pick(base), rng));
  }
  return {corpus.begin(), corpus.end()};
}

// ---------------------------------------------------------------------------------------------
// curl's reading of a URL.

struct CurlReading {
  bool ok = false;
  std::string scheme, host, port, path, query;
  bool has_query = false;
};

std::string Get(CURLU* u, CURLUPart part, unsigned flags, CURLUcode* rc) {
  char* value = nullptr;
  *rc = curl_url_get(u, part, &value, flags);
  std::string out = value != nullptr ? value : "";
  curl_free(value);
  return out;
}

// The flags lib/url.c of curl 7.88 passes when the curl tool hands it a URL.
CurlReading CurlRead(const std::string& text) {
  CurlReading r;
  CURLU* u = curl_url();
  if (curl_url_set(u, CURLUPART_URL, text.c_str(), CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) ==
      CURLUE_OK) {
    CURLUcode rc;
    r.ok = true;
    r.scheme = Get(u, CURLUPART_SCHEME, 0, &rc);
    r.host = Get(u, CURLUPART_HOST, 0, &rc);
    r.ok = rc == CURLUE_OK;
    r.port = Get(u, CURLUPART_PORT, CURLU_DEFAULT_PORT, &rc);
    if (rc != CURLUE_OK) {
      r.port = "0";  // a scheme curl knows no default port for
    }
    r.path = Get(u, CURLUPART_PATH, 0, &rc);
    r.query = Get(u, CURLUPART_QUERY, 0, &rc);
    r.has_query = rc == CURLUE_OK;
  }
  curl_url_cleanup(u);
  return r;
}

std::optional<IpAddress> GlibcAton(const std::string& text) {
  in_addr addr{};
  // inet_aton stops at white space; getaddrinfo's inet_aton_exact does not, so neither do we.
  if (text.find_first_of(" \t\n\r\v\f") != std::string::npos ||
      inet_aton(text.c_str(), &addr) != 1) {
    return std::nullopt;
  }
  IpAddress ip;
  std::memcpy(ip.bytes.data(), &addr.s_addr, 4);
  return ip;
}

std::optional<IpAddress> GlibcPton6(const std::string& text) {
  IpAddress ip;
  ip.v6 = true;
  if (inet_pton(AF_INET6, text.c_str(), ip.bytes.data()) != 1) {
    return std::nullopt;
  }
  return ip;
}

// Whether curl's host denotes the same destination as ours. curl 7.88 returns an IPv6 address
// bracketed and as typed (zone id apart), an IPv4 address it recognised normalised to a dotted
// quad, and anything else as a name, percent-decoded but not lower-cased, trailing dot kept; the
// resolver (glibc getaddrinfo) then reads a name that inet_aton accepts as that address
// ("0x7f.1" after "%30x7f.1" was decoded). A dotted quad with a trailing dot ("1.2.3.4.") is a
// name to curl that no DNS answers (no top-level domain is numeric), which ParseUrl reads as the
// address: the stricter reading, since the address is then judged.
std::string SameHost(const Host& ours, const std::string& curl_host) {
  if (!curl_host.empty() && curl_host.front() == '[') {
    std::optional<IpAddress> ip = GlibcPton6(curl_host.substr(1, curl_host.size() - 2));
    if (!ip || ours.kind != Host::Kind::kIp || !(ours.ip == *ip)) {
      return "curl reads IPv6 host " + curl_host;
    }
    return "";
  }
  std::string name = curl_host;
  if (name.size() > 1 && name.back() == '.') {
    name.pop_back();
  }
  if (std::optional<IpAddress> ip = GlibcAton(name)) {
    if (ours.kind != Host::Kind::kIp || !(ours.ip == *ip)) {
      return "curl reaches address " + ip->ToString();
    }
    return "";
  }
  if (ours.kind != Host::Kind::kName || ours.name != Lower(name)) {
    return "curl reads host name " + curl_host;
  }
  return "";
}

TEST(UrlCurlOracleTest, CurlAgreesWheneverParseUrlAccepts) {
  const std::vector<std::string> corpus = UrlCorpus();
  size_t ours_accepted = 0, curl_accepted = 0, both = 0;
  for (const std::string& text : corpus) {
    std::string error;
    const std::optional<Url> url = ParseUrl(text, &error);
    const CurlReading curl = CurlRead(text);
    ours_accepted += url.has_value();
    curl_accepted += curl.ok;
    if (!url) {
      EXPECT_FALSE(error.empty()) << text;
      continue;
    }
    ASSERT_TRUE(curl.ok) << "ParseUrl accepts what curl refuses: " << text;
    ++both;
    EXPECT_EQ(url->scheme, curl.scheme) << text;
    EXPECT_EQ(SameHost(url->host, curl.host), "")
        << text << " (ours: " << url->host.ToString() << ")";
    EXPECT_EQ(std::to_string(url->port), curl.port) << text;
    EXPECT_EQ(url->path, curl.path) << text;
    EXPECT_EQ(url->query, curl.query) << text;
    EXPECT_EQ(url->has_query, curl.has_query) << text;
  }
  std::cout << "[ oracle ] " << corpus.size() << " URLs: ParseUrl accepted " << ours_accepted
            << ", curl accepted " << curl_accepted << ", both " << both << "\n";
  // Both sides must accept a good share, or the corpus tests nothing.
  EXPECT_GT(both, corpus.size() / 10);
  EXPECT_GT(curl_accepted, ours_accepted);
}

// ---------------------------------------------------------------------------------------------
// The address parsers against glibc.

std::vector<std::string> Ipv4Corpus() {
  std::set<std::string> corpus;
  for (const std::string& host : kHosts) {
    corpus.insert(host);
  }
  Rng rng(0x6970763461746f6eULL);
  const std::string alphabet = "0123456789abcdefxX.";
  while (corpus.size() < 3000) {
    std::string s;
    const size_t len = 1 + rng.Below(16);
    for (size_t i = 0; i < len; ++i) {
      s += alphabet[rng.Below(alphabet.size())];
    }
    corpus.insert(s);
  }
  // Structured: 1-4 parts, each decimal, octal or hex, some padded with zeros, some too big.
  while (corpus.size() < 8000) {
    const size_t parts = 1 + rng.Below(4);
    std::string s;
    for (size_t i = 0; i < parts; ++i) {
      const uint64_t limit = (i + 1 == parts) ? (0xFFFFFFFFULL >> (8 * i)) : 0xFF;
      uint64_t value = rng.Below(8) == 0 ? limit + 1 + rng.Below(300) : rng.Next() % (limit + 1);
      if (rng.Below(3) == 0) {
        value %= 256;
      }
      char buf[32];
      switch (rng.Below(3)) {
        case 0:
          std::snprintf(buf, sizeof(buf), "%llu", static_cast<unsigned long long>(value));
          break;
        case 1:
          std::snprintf(buf, sizeof(buf), "0%llo", static_cast<unsigned long long>(value));
          break;
        default:
          std::snprintf(buf, sizeof(buf), rng.Below(2) ? "0x%llx" : "0X%llX",
                        static_cast<unsigned long long>(value));
          break;
      }
      if (i != 0) {
        s += '.';
      }
      // Zero padding, now and then far longer than any address (inet_aton takes any).
      size_t padding = 0;
      if (rng.Below(4) == 0) {
        padding = rng.Below(12);
      } else if (rng.Below(40) == 0) {
        padding = 60 + rng.Below(200);
      }
      s += std::string(padding, '0') + buf;
    }
    if (rng.Below(10) == 0) {
      s += '.';
    }
    corpus.insert(s);
  }
  return {corpus.begin(), corpus.end()};
}

TEST(UrlCurlOracleTest, Ipv4AnyFormIsInetAton) {
  size_t accepted = 0;
  const std::vector<std::string> corpus = Ipv4Corpus();
  for (const std::string& text : corpus) {
    std::optional<IpAddress> ours = ParseIpv4AnyForm(text);
    accepted += ours.has_value();
    // One trailing dot is accepted on top of inet_aton's forms (see SameHost).
    std::string glibc_text = text;
    if (glibc_text.size() > 1 && glibc_text.back() == '.') {
      glibc_text.pop_back();
      if (glibc_text.back() == '.') {
        EXPECT_FALSE(ours.has_value()) << text;
        continue;
      }
    }
    EXPECT_EQ(ours, GlibcAton(glibc_text)) << text;
  }
  std::cout << "[ oracle ] " << corpus.size() << " IPv4-like strings: " << accepted
            << " are addresses to both ParseIpv4AnyForm and inet_aton\n";
  EXPECT_GT(accepted, corpus.size() / 4);
}

TEST(UrlCurlOracleTest, Ipv6IsInetPton) {
  std::set<std::string> corpus;
  Rng rng(0x6970763670746f6eULL);
  const std::string alphabet = "0123456789abcdefABCDEF:.%";
  while (corpus.size() < 3000) {
    std::string s;
    const size_t len = 1 + rng.Below(24);
    for (size_t i = 0; i < len; ++i) {
      s += alphabet[rng.Below(alphabet.size())];
    }
    corpus.insert(s);
  }
  // Structured: groups of 0-5 hex digits, one "::" at a random place, a dotted tail sometimes.
  while (corpus.size() < 8000) {
    const size_t groups = 1 + rng.Below(9);
    const size_t gap = rng.Below(groups + 2);
    std::string s;
    for (size_t i = 0; i < groups; ++i) {
      if (i == gap) {
        s += "::";
      } else if (i != 0) {
        s += ':';
      }
      const size_t digits = rng.Below(6) == 0 ? 5 : 1 + rng.Below(4);
      for (size_t d = 0; d < digits; ++d) {
        s += alphabet[rng.Below(22)];
      }
    }
    if (gap == groups) {
      s += "::";
    }
    if (rng.Below(4) == 0) {
      for (size_t part = 0; part < 3; ++part) {
        s += (part == 0 ? ":" : ".") + std::to_string(rng.Below(part == 0 ? 300 : 256));
      }
      s += rng.Below(5) == 0 ? ".01" : ".7";
    }
    corpus.insert(s);
  }
  size_t accepted = 0;
  for (const std::string& text : corpus) {
    std::optional<IpAddress> ours = ParseIpv6(text);
    accepted += ours.has_value();
    EXPECT_EQ(ours, GlibcPton6(text)) << text;
    if (ours) {
      EXPECT_EQ(ParseIpv6(ours->ToString()), ours) << text;
    }
  }
  std::cout << "[ oracle ] " << corpus.size() << " IPv6-like strings: " << accepted
            << " are addresses to both ParseIpv6 and inet_pton\n";
  EXPECT_GT(accepted, corpus.size() / 10);
}

}  // namespace
}  // namespace podgate::policy::net
