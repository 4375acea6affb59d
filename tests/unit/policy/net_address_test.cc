// Network destinations: every spelling of the metadata and loopback addresses that reached curl
// through the old `url` type, the harmless URLs that must keep working, host lists and paths.
#include "policy/net_address.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace podgate::policy::net {
namespace {

IpAddress V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  IpAddress ip;
  ip.bytes = {a, b, c, d};
  return ip;
}

IpAddress V6(std::string_view text) {
  std::optional<IpAddress> ip = ParseIpv6(text);
  EXPECT_TRUE(ip.has_value()) << text;
  return ip.value_or(IpAddress{});
}

Host HostOf(std::string_view text) {
  std::string error;
  std::optional<Host> host = CanonicaliseHostArgument(text, &error);
  EXPECT_TRUE(host.has_value()) << text << ": " << error;
  return host.value_or(Host{});
}

Url MustParse(std::string_view text) {
  std::string error;
  std::optional<Url> url = ParseUrl(text, &error);
  EXPECT_TRUE(url.has_value()) << text << ": the URL " << error;
  return url.value_or(Url{});
}

std::string RefusalOf(std::string_view text) {
  std::string error;
  std::optional<Url> url = ParseUrl(text, &error);
  EXPECT_FALSE(url.has_value()) << text << " was accepted as " << url->host.ToString();
  EXPECT_FALSE(error.empty()) << text;
  return error;
}

// Whether curl, given `text`, would be kept away from the host: refused by ParseUrl, or parsed
// to a host that AdmitsByDefault refuses.
bool KeptAway(std::string_view text, std::string* why) {
  std::optional<Url> url = ParseUrl(text, why);
  return !url || !AdmitsByDefault(url->host, why);
}

TEST(NetAddressTest, Ipv4InEveryInetAtonForm) {
  const IpAddress metadata = V4(169, 254, 169, 254);
  for (const char* text :
       {"169.254.169.254", "2852039166", "0xa9fea9fe", "0XA9FEA9FE", "0251.0376.0251.0376",
        "169.254.43518", "169.16689662", "0xa9.0xfe.0xa9.0xfe", "0xa9.254.0251.0xfe",
        "00000000251.254.169.254", "0x00000a9.254.169.254", "169.254.169.254."}) {
    EXPECT_EQ(ParseIpv4AnyForm(text), metadata) << text;
  }
  EXPECT_EQ(ParseIpv4AnyForm("127.1"), V4(127, 0, 0, 1));
  EXPECT_EQ(ParseIpv4AnyForm("0177.0.0.1"), V4(127, 0, 0, 1));
  EXPECT_EQ(ParseIpv4AnyForm("0x7f.1"), V4(127, 0, 0, 1));
  EXPECT_EQ(ParseIpv4AnyForm(std::string(300, '0') + "177.1"), V4(127, 0, 0, 1));
  EXPECT_EQ(ParseIpv4AnyForm("0"), V4(0, 0, 0, 0));
  EXPECT_EQ(ParseIpv4AnyForm("00"), V4(0, 0, 0, 0));
  EXPECT_EQ(ParseIpv4AnyForm("4294967295"), V4(255, 255, 255, 255));
  EXPECT_EQ(ParseIpv4AnyForm("1.16777215"), V4(1, 255, 255, 255));
  EXPECT_EQ(ParseIpv4AnyForm("1.2.65535"), V4(1, 2, 255, 255));
  for (const char* bad :
       {"",          ".",         "08",         "09.1",        "1.2.3.08",   "0x",
        "0x.1",      "0xg",       "00x7f",      "1.0x",        "1..2",       "1.2.3.4.5",
        "1.2.3.4..", ".1.2.3",    "4294967296", "0x100000000", "1.16777216", "1.2.65536",
        "256.0.0.1", "1.256.0.1", " 1",         "1 ",          "+1",         "-1",
        "1e1",       "1.2.3.4x",  "::1",        "a.b.c.d"}) {
    EXPECT_FALSE(ParseIpv4AnyForm(bad).has_value()) << bad;
  }
  EXPECT_EQ(ParseIpv4AnyForm("0x7f.1."), V4(127, 0, 0, 1));
}

TEST(NetAddressTest, Ipv6AsInetPtonReadsIt) {
  EXPECT_EQ(V6("::1").ToString(), "::1");
  EXPECT_EQ(V6("::").ToString(), "::");
  EXPECT_EQ(V6("0:0:0:0:0:0:0:1").ToString(), "::1");
  EXPECT_EQ(V6("2001:DB8:0:0:1:0:0:1").ToString(), "2001:db8::1:0:0:1");
  EXPECT_EQ(V6("2001:db8:0:1:1:1:1:1").ToString(), "2001:db8:0:1:1:1:1:1");
  EXPECT_EQ(V6("fe80::").ToString(), "fe80::");
  EXPECT_EQ(V6("0:0:0:0:0:ffff:127.0.0.1").ToString(), "::ffff:127.0.0.1");
  EXPECT_EQ(V6("::ffff:a9fe:a9fe").ToString(), "::ffff:169.254.169.254");
  EXPECT_EQ(V6("::1.2.3.4").ToString(), "::102:304");
  EXPECT_EQ(V6("1::").ToString(), "1::");
  EXPECT_EQ(V6("1:2:3:4:5:6:7::").ToString(), "1:2:3:4:5:6:7:0");
  EXPECT_EQ(V6("::2:3:4:5:6:7:8").ToString(), "0:2:3:4:5:6:7:8");
  for (const char* bad : {"",
                          ":",
                          ":::",
                          "1:::2",
                          ":1",
                          "1:",
                          "1::2::3",
                          "1:2:3:4:5:6:7:8:9",
                          "1:2:3:4:5:6:7",
                          "1::2:3:4:5:6:7:8",
                          "00000::1",
                          "::g",
                          "fe80::1%eth0",
                          "fe80::1%25eth0",
                          "[::1]",
                          "::1.2.3",
                          "::01.2.3.4",
                          "::1.2.3.256",
                          "::1.2.3.4:5",
                          "1.2.3.4",
                          "::ffff:1.2.3.4.",
                          " ::1",
                          "::1 "}) {
    EXPECT_FALSE(ParseIpv6(bad).has_value()) << bad;
  }
}

TEST(NetAddressTest, SensitiveAddresses) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"169.254.169.254", "cloud metadata address 169.254.169.254"},
      {"169.254.170.2", "link-local"},
      {"127.0.0.1", "loopback"},
      {"127.255.255.254", "loopback"},
      {"0.0.0.0", "0.0.0.0/8"},
      {"0.1.2.3", "0.0.0.0/8"},
      {"100.100.100.200", "Alibaba"},
      {"192.0.0.192", "Oracle"},
      {"224.0.0.1", "multicast"},
      {"239.255.255.250", "multicast"},
      {"240.0.0.1", "reserved"},
      {"255.255.255.255", "broadcast"},
      {"::", "unspecified"},
      {"::1", "loopback"},
      {"fe80::1", "link-local"},
      {"febf::1", "link-local"},
      {"fd00:ec2::254", "AWS metadata address"},
      {"fd00:ec2::23", "fd00:ec2::/32"},
      {"ff02::1", "multicast"},
      {"::ffff:169.254.169.254", "IPv4-mapped"},
      {"::ffff:127.0.0.1", "loopback"},
      {"::a9fe:a9fe", "IPv4-compatible"},
      {"::ffff:0:7f00:1", "IPv4-translated"},
      {"64:ff9b::a9fe:a9fe", "NAT64"},
      {"64:ff9b::7f00:1", "loopback"},
      {"64:ff9b:1::a9fe:a9fe", "local-use NAT64"},
      {"64:ff9b:1:a9fe:a9:fe00::", "prefix length"},
      {"2002:a9fe:a9fe::", "6to4"},
      {"2002:7f00:1::1", "loopback"},
      {"2001:0:4136:e378:8000:63bf:5601:5601", "Teredo client"},  // client ~5601:5601
      {"2001:0:a9fe:a9fe::f5f5:f5f5", "Teredo server"},           // client 10.10.10.10
  };
  for (const auto& [text, phrase] : cases) {
    std::string error;
    std::optional<Host> host = CanonicaliseHostArgument(text, &error);
    ASSERT_TRUE(host.has_value()) << text << ": " << error;
    std::optional<std::string> why = SensitiveAddress(host->ip);
    ASSERT_TRUE(why.has_value()) << text;
    EXPECT_NE(why->find(phrase), std::string::npos) << text << ": " << *why;
  }
  // Addresses a cluster uses every day, and the documentation ranges: RFC 5737 and RFC 3849
  // reserve them for examples, no network routes them, so reaching them harms nothing.
  for (const char* text :
       {"10.0.0.1", "172.16.0.1", "192.168.1.1", "8.8.8.8", "100.64.0.1", "192.0.0.1", "192.0.2.1",
        "198.51.100.7", "203.0.113.9", "2001:db8::1", "fd00::1", "fd00:ec3::254", "2600:1f18::1",
        "64:ff9b::a00:1", "2002:a00:1::", "::ffff:10.0.0.1", "fc00::1", "2001:4860::8888"}) {
    Host host = HostOf(text);
    ASSERT_EQ(host.kind, Host::Kind::kIp) << text;
    EXPECT_EQ(SensitiveAddress(host.ip), std::nullopt) << text;
  }
}

TEST(NetAddressTest, SensitiveNames) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"localhost", "local host"},
      {"api.localhost", "local host"},
      {"localhost.localdomain", "hosts file"},
      {"ip6-localhost", "hosts file"},
      {"app.localtest.me", "loopback"},
      {"metadata", "metadata"},
      {"metadata.google.internal", "metadata"},
      {"metadata.goog", "metadata"},
      {"instance-data", "metadata"},
      {"instance-data.ec2.internal", "metadata"},
      {"instance-data.us-east-1.compute.internal", "metadata"},
      {"metadata.azure.com", "metadata"},
      {"host.docker.internal", "host machine"},
      {"kubernetes.docker.internal", "API server"},
      {"control-plane.minikube.internal", "API server"},
      {"ip-10-0-0-1.ec2.internal", "instance"},
      {"gke-pool-1-abcd.c.my-project.internal", "instance"},
      {"kubernetes", "API server"},
      {"kubernetes.default", "API server"},
      {"kubernetes.default.svc", "API server"},
      {"kubernetes.default.svc.cluster.local", "API server"},
      {"kubernetes.default.svc.corp.example", "API server"},
      {"08", "numeric label"},
      {"4294967296", "numeric label"},
      {"1.2.3.4.5", "numeric label"},
      {"example.123", "numeric label"},
      {"0x", "hexadecimal"},
      {"0x100000000", "hexadecimal"},
      {"foo.0xa9", "hexadecimal"},
      {"169.254.169.254.nip.io", "169.254.169.254"},
      {"127.0.0.1.nip.io", "127.0.0.1"},
      {"app.10.0.0.1.nip.io", "10.0.0.1"},
      {"169-254-169-254.sslip.io", "169.254.169.254"},
      {"app-169-254-169-254.sslip.io", "169.254.169.254"},
      {"169-254-169-254-app.nip.io", "169.254.169.254"},
      {"make-169.254.169.254-rr.1u.ms", "169.254.169.254"},
      {"0251.0376.0251.0376.nip.io", "169.254.169.254"},
      {"a9fea9fe.nip.io", "169.254.169.254"},
      {"magic-a9fea9fe.nip.io", "169.254.169.254"},
      {"7f000001.c0a80001.rbndr.us", "127.0.0.1"},
      {"0xa9fea9fe.example.com", "169.254.169.254"},
      {"www--1.sslip.io", "::1"},
      {"fe80--1.sslip.io", "fe80::1"},
      {"2600-1f18--1.sslip.io", "2600:1f18::1"},
  };
  for (const auto& [name, phrase] : cases) {
    std::optional<std::string> why = SensitiveName(name);
    ASSERT_TRUE(why.has_value()) << name;
    EXPECT_NE(why->find(phrase), std::string::npos) << name << ": " << *why;
  }
  // Ordinary names: services, public sites, TLDs made of hex letters, numbers that are not an
  // address, punycode, names that merely start with a sensitive word.
  for (const char* name : {"orders.app-shop.svc.cluster.local",
                           "api-v2.example.com",
                           "db-1.shop.svc",
                           "web-0.web.ns",
                           "orders",
                           "example.de",
                           "example.ca",
                           "shop.cafe",
                           "cafe.example.com",
                           "s3.amazonaws.com",
                           "v1-2-3-4.example",
                           "1.2.3.example",
                           "10.example",
                           "123.example.com",
                           "x1.y2.z3.w4",
                           "xn--80ak6aa92e.com",
                           "metadata.shop.svc.cluster.local",
                           "metadata-api.example.com",
                           "kubernetes-dashboard.kube-system",
                           "kubernetes.example.com",
                           "localhost-proxy.example",
                           "mylocalhost",
                           "orders.internal.example.com",
                           "deadbeef1.example",
                           "build-1a2b3c.example",
                           "my--app.example",
                           "my-app.default.svc.cluster.local",
                           "2024-01-15.example"}) {
    EXPECT_EQ(SensitiveName(name), std::nullopt)
        << name << ": " << SensitiveName(name).value_or("");
  }
}

TEST(NetAddressTest, HostArgumentsAreCanonicalised) {
  std::string error;
  Host host = HostOf("ORDERS.Shop.SVC.");
  EXPECT_EQ(host.kind, Host::Kind::kName);
  EXPECT_EQ(host.name, "orders.shop.svc");
  EXPECT_EQ(host.ToString(), "orders.shop.svc");
  host = HostOf("0x7f.1");
  EXPECT_EQ(host.kind, Host::Kind::kIp);
  EXPECT_EQ(host.ToString(), "127.0.0.1");
  host = HostOf("::FFFF:169.254.169.254");
  EXPECT_EQ(host.ToString(), "[::ffff:169.254.169.254]");
  host = HostOf("08");  // not octal, so a name, and SensitiveName refuses it
  EXPECT_EQ(host.kind, Host::Kind::kName);
  EXPECT_TRUE(SensitiveName(host.name).has_value());
  EXPECT_EQ(HostOf(std::string(63, 'a') + ".b").name.size(), 65u);
  for (const char* bad : {"", ".", "a..b", "-a", "a-", "a_b", "a b", "[::1]", "fe80::1%eth0", "::g",
                          "a.b..", "@8.8.8.8", "é.com", "a/b", "a:80"}) {
    error.clear();
    EXPECT_FALSE(CanonicaliseHostArgument(bad, &error).has_value()) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
  EXPECT_FALSE(CanonicaliseHostArgument(std::string(64, 'a'), &error).has_value());
  std::string long_name;
  while (long_name.size() < 254) {
    long_name += "abcdefghi.";
  }
  EXPECT_FALSE(CanonicaliseHostArgument(long_name.substr(0, 254), &error).has_value());
}

// Every spelling the attackers used, and the ones they will try next: each is refused by the
// parser or parsed to a host that no default rule admits.
TEST(NetAddressTest, AttackerSpellingsAreKeptAway) {
  for (const char* text : {
           "http://2852039166/",
           "http://0xa9fea9fe/",
           "http://0251.0376.0251.0376/",
           "http://169.254.43518/",
           "http://127.1:8080/",
           "http://0:8080/",
           "http://0.0.0.0:8080/",
           "http://[::ffff:a9fe:a9fe]/",
           "http://[fd00:ec2::254]/",
           "http://metadata.google.internal/computeMetadata/v1/",
           "http://metadata.google.internal./",
           "http://METADATA/",
           "http://100.100.100.200/latest/meta-data/",
           "http://169.254.169.254.nip.io/",
           "http://169.254.169.254./",
           "http://%31%36%39.254.169.254/",
           "http://%32852039166/",
           "http://169%2e254%2e169%2e254/",
           "HTTP://LOCALHOST/",
           "http://localhost./",
           "http://[::1]/",
           "http://[0:0:0:0:0:0:0:1]/",
           "http://[::]/",
           "http://[0:0:0:0:0:ffff:127.0.0.1]/",
           "http://[::ffff:7f00:1]/",
           "http://[64:ff9b::a9fe:a9fe]/",
           "http://[2002:a9fe:a9fe::]/",
           "http://[fe80::a9fe:a9fe]/",
           "http://kubernetes.default.svc/api/v1/secrets",
           "https://kubernetes.default.svc.cluster.local:443/",
           "http://127.0.0.1.nip.io/",
           "http://0177.0.0.1/",
           "http://017700000001/",
           "http://127.0.0.1:80@evil/",
           "http://evil@127.0.0.1/",
           "http://user:pass@orders/",
           "http://127.0.0.1\\@evil/",
           "http:\\\\127.0.0.1/",
           "http://evil\\.127.0.0.1/",
           "http://evil.com#@127.0.0.1",
           "http://evil.com/#/../",
           "http://127.0.0.1 /",
           "http://127.0.0.1\t/",
           " http://127.0.0.1/",
           "http://127.0.0.1/\n",
           "http://[::1%25eth0]/",
           "http://[fe80::1%eth0]/",
           "http://08/",
           "http://1.2.3.4.5/",
           "http://4294967296/",
           "http://0x/",
           "http://127.0.0.1%00.evil/",
           "http://127%2e0%2e0%2e1/",
           "http://%5b::1%5d/",
           "http://loc%61lhost/",
           "http://local%68ost./",
           "http://a9fea9fe.nip.io/",
           "http://www--1.sslip.io/",
           "http://169-254-169-254.sslip.io/",
           "//169.254.169.254/",
           "169.254.169.254/latest",
           "http:/169.254.169.254/",
           "http:///169.254.169.254/",
           "http:169.254.169.254/",
           "file:///etc/passwd",
           "file://localhost/etc/passwd",
       }) {
    std::string why;
    EXPECT_TRUE(KeptAway(text, &why)) << text;
    EXPECT_FALSE(why.empty()) << text;
  }
}

TEST(NetAddressTest, RefusalsAreSentences) {
  EXPECT_EQ(RefusalOf("http://127.0.0.1:80@evil/"),
            "carries user information (user@host), which hides the real host");
  EXPECT_EQ(RefusalOf("example.com/x"), "has no scheme (such as http://); curl would guess one");
  EXPECT_EQ(RefusalOf("http:/x"), "does not have exactly two slashes after its scheme");
  EXPECT_NE(RefusalOf("http://x y/").find("a space"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x/\x01").find("control character"), std::string::npos);
  EXPECT_NE(RefusalOf("http://\xc3\xa9.com/").find("outside ASCII"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x\\y/").find("backslash"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x/#f").find("fragment"), std::string::npos);
  EXPECT_NE(RefusalOf("http://[::1%25eth0]/").find("zone"), std::string::npos);
  EXPECT_NE(RefusalOf("http://{a,b}.svc/").find("globbing"), std::string::npos);
  EXPECT_NE(RefusalOf("http://svc[1-3]/").find("globbing"), std::string::npos);
  EXPECT_NE(RefusalOf("http://[1-3]/").find("globbing"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x:0/").find("port 0"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x:65536/").find("above 65535"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x:+80/").find("decimal"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x:8a/").find("decimal"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x:80:81/").find("decimal"), std::string::npos);
  EXPECT_NE(RefusalOf("http://a%zzb/").find("malformed percent"), std::string::npos);
  EXPECT_NE(RefusalOf("http://a%00b/").find("control character"), std::string::npos);
  EXPECT_NE(RefusalOf("http://a%c3%a9/").find("outside ASCII"), std::string::npos);
  EXPECT_NE(RefusalOf("http://a%2fb/").find("'/'"), std::string::npos);
  EXPECT_NE(RefusalOf("http://a_b/").find("'_'"), std::string::npos);
  EXPECT_NE(RefusalOf("http://-a/").find("invalid host name"), std::string::npos);
  EXPECT_NE(RefusalOf("http://a..b/").find("invalid host name"), std::string::npos);
  EXPECT_NE(RefusalOf("http:///x").find("two slashes"), std::string::npos);
  EXPECT_NE(RefusalOf("http://").find("no host"), std::string::npos);
  EXPECT_NE(RefusalOf("http:///").find("two slashes"), std::string::npos);
  EXPECT_NE(RefusalOf("http://:80/").find("no host"), std::string::npos);
  EXPECT_NE(RefusalOf("http://[::1/").find("closing"), std::string::npos);
  EXPECT_NE(RefusalOf("http://[::1]x/").find("not a port"), std::string::npos);
  EXPECT_NE(RefusalOf("http://[::g]/").find("invalid IPv6"), std::string::npos);
  EXPECT_NE(RefusalOf("1http://x/").find("no scheme"), std::string::npos);
  EXPECT_NE(RefusalOf("").find("empty"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x/" + std::string(5000, 'a')).find("longer"), std::string::npos);
  EXPECT_NE(RefusalOf("file:///etc/passwd").find("local files"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x/a/%2e%2e/b").find("'.'"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x/a%2Fb").find("'/'"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x/a%5cb").find("'\\'"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x/a%0d%0aHost:%20evil").find("control"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x/a?b=%0a").find("control"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x/a?b=100%").find("malformed"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x/app/..;/admin").find("dot segment"), std::string::npos);
  EXPECT_NE(RefusalOf("http://x/app/.;x/admin").find("dot segment"), std::string::npos);
}

TEST(NetAddressTest, HarmlessUrlsParseAndAreAdmittedByDefault) {
  Url url = MustParse("http://orders.app-shop.svc.cluster.local:8080/actuator/health");
  EXPECT_EQ(url.scheme, "http");
  EXPECT_EQ(url.host.kind, Host::Kind::kName);
  EXPECT_EQ(url.host.name, "orders.app-shop.svc.cluster.local");
  EXPECT_EQ(url.port, 8080);
  EXPECT_TRUE(url.explicit_port);
  EXPECT_EQ(url.path, "/actuator/health");
  EXPECT_FALSE(url.has_query);
  EXPECT_FALSE(url.has_glob);
  std::string why;
  EXPECT_TRUE(AdmitsByDefault(url.host, &why)) << why;

  url = MustParse("https://example.com/");
  EXPECT_EQ(url.port, 443);
  EXPECT_FALSE(url.explicit_port);
  EXPECT_EQ(url.path, "/");
  EXPECT_TRUE(AdmitsByDefault(url.host, &why)) << why;

  url = MustParse("http://[2001:db8::1]/");
  EXPECT_EQ(url.host.kind, Host::Kind::kIp);
  EXPECT_EQ(url.host.ToString(), "[2001:db8::1]");
  EXPECT_EQ(url.port, 80);
  EXPECT_TRUE(AdmitsByDefault(url.host, &why)) << why;

  url = MustParse("HTTPS://Orders.Shop:08443?x=1&y=%2F");
  EXPECT_EQ(url.scheme, "https");
  EXPECT_EQ(url.host.name, "orders.shop");
  EXPECT_EQ(url.port, 8443);
  EXPECT_EQ(url.path, "/");
  EXPECT_TRUE(url.has_query);
  EXPECT_EQ(url.query, "x=1&y=%2F");

  url = MustParse("http://x:/a?");  // empty port: the default, as in curl
  EXPECT_EQ(url.port, 80);
  EXPECT_FALSE(url.explicit_port);
  EXPECT_TRUE(url.has_query);
  EXPECT_EQ(url.query, "");

  EXPECT_EQ(MustParse("ftp://files.example.com/").port, 21);
  EXPECT_EQ(MustParse("gopher://g.example.com/").port, 70);
  EXPECT_EQ(MustParse("unknown+x://u.example.com/").port, 0);
  EXPECT_EQ(MustParse("http://10.1.2.3/").host.ToString(), "10.1.2.3");
  EXPECT_EQ(MustParse("http://%6frders/").host.name, "orders");
  EXPECT_EQ(MustParse("http://[::FFFF:10.0.0.1]:99/").host.ToString(), "[::ffff:10.0.0.1]");
  EXPECT_EQ(MustParse("http://x/%41%20b").path, "/%41%20b");  // escapes are the server's
}

TEST(NetAddressTest, GlobsAreFlagged) {
  EXPECT_TRUE(MustParse("http://svc/[1-100]").has_glob);
  EXPECT_TRUE(MustParse("http://svc/{a,b}").has_glob);
  EXPECT_TRUE(MustParse("http://svc/?a={x}").has_glob);
  EXPECT_TRUE(MustParse("http://svc/a]").has_glob);
  EXPECT_FALSE(MustParse("http://[::1]:8080/x").has_glob);
  EXPECT_FALSE(MustParse("http://svc/a-b,c").has_glob);
  RefusalOf("http://{a,b}.svc/");
  RefusalOf("http://svc:{80,81}/");
  RefusalOf("http://svc:[80-81]/");
}

TEST(NetAddressTest, DotSegmentsAreRemovedLikeCurl) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"http://x", "/"},
      {"http://x?q", "/"},
      {"http://x/", "/"},
      {"http://x/a/../b/./c/..", "/b/"},
      {"http://x/..", "/"},
      {"http://x/../../a", "/a"},
      {"http://x/a/./b/../../c?x/../y", "/c"},
      {"http://x/.", "/"},
      {"http://x/a/..?q", "/"},
      {"http://x/a/.?q", "/a/"},
      {"http://x/./", "/"},
      {"http://x/a//../b", "/a/b"},
      {"http://x/a/...", "/a/..."},
      {"http://x/.a/..b/../c", "/.a/c"},
      {"http://x/actuator/health/../env", "/actuator/env"},
      {"http://x/actuator/health/./", "/actuator/health/"},
      {"http://x/a/b/c/../../../../d", "/d"},
      {"http://x//a", "//a"},
  };
  for (const auto& [text, path] : cases) {
    EXPECT_EQ(MustParse(text).path, path) << text;
  }
  EXPECT_EQ(MustParse("http://x/a/./b/../../c?x/../y").query, "x/../y");
}

TEST(NetAddressTest, HostListEntries) {
  std::string error;
  std::optional<HostList> list =
      HostList::Parse({"orders", "*.svc.cluster.local", "10.0.0.0/8", "fd00::/8", "192.168.1.7",
                       "0x7f.1", "[fe80::1]", "Metadata.Google.Internal."},
                      &error);
  ASSERT_TRUE(list.has_value()) << error;
  EXPECT_FALSE(list->empty());
  std::string why;
  // Exact names.
  EXPECT_TRUE(list->Admits(HostOf("orders"), &why));
  EXPECT_TRUE(list->Admits(HostOf("ORDERS."), &why));
  EXPECT_FALSE(list->Admits(HostOf("orders2"), &why));
  EXPECT_EQ(why, "orders2 is not among the hosts the rule allows");
  // Suffix: one or more labels in front, never the suffix itself, never a sensitive name.
  EXPECT_TRUE(list->Admits(HostOf("a.svc.cluster.local"), &why));
  EXPECT_TRUE(list->Admits(HostOf("orders.shop.svc.cluster.local"), &why));
  EXPECT_FALSE(list->Admits(HostOf("svc.cluster.local"), &why));
  EXPECT_FALSE(list->Admits(HostOf("evilsvc.cluster.local"), &why));
  EXPECT_FALSE(list->Admits(HostOf("kubernetes.default.svc.cluster.local"), &why));
  EXPECT_NE(why.find("API server"), std::string::npos) << why;
  EXPECT_NE(why.find("exactly"), std::string::npos) << why;
  EXPECT_FALSE(list->Admits(HostOf("169.254.169.254.svc.cluster.local"), &why));
  // CIDR blocks: non-sensitive addresses inside only.
  EXPECT_TRUE(list->Admits(HostOf("10.1.2.3"), &why));
  EXPECT_TRUE(list->Admits(HostOf("012.1.2.3"), &why));  // octal 10.1.2.3
  EXPECT_FALSE(list->Admits(HostOf("11.0.0.1"), &why));
  EXPECT_TRUE(list->Admits(HostOf("fd12::1"), &why));
  EXPECT_FALSE(list->Admits(HostOf("fe00::1"), &why));
  EXPECT_FALSE(list->Admits(HostOf("fd00:ec2::254"), &why));  // inside fd00::/8, but sensitive
  EXPECT_NE(why.find("AWS"), std::string::npos) << why;
  EXPECT_FALSE(list->Admits(HostOf("::ffff:10.0.0.1"), &why));  // another family
  // Exact addresses, in any spelling, admit even a sensitive address.
  EXPECT_TRUE(list->Admits(HostOf("192.168.1.7"), &why));
  EXPECT_TRUE(list->Admits(HostOf("3232235783"), &why));
  EXPECT_FALSE(list->Admits(HostOf("192.168.1.8"), &why));
  EXPECT_TRUE(list->Admits(HostOf("127.0.0.1"), &why));
  EXPECT_TRUE(list->Admits(HostOf("fe80::1"), &why));
  EXPECT_FALSE(list->Admits(HostOf("fe80::2"), &why));
  EXPECT_TRUE(list->Admits(HostOf("metadata.google.internal"), &why));
  // Names never match addresses and the reverse: podgate does not resolve.
  EXPECT_FALSE(list->Admits(HostOf("10.svc"), &why));

  list = HostList::Parse({"*"}, &error);
  ASSERT_TRUE(list.has_value()) << error;
  EXPECT_TRUE(list->Admits(HostOf("example.com"), &why));
  EXPECT_TRUE(list->Admits(HostOf("10.0.0.1"), &why));
  for (const char* sensitive :
       {"169.254.169.254", "127.0.0.1", "::1", "localhost", "kubernetes.default.svc",
        "metadata.google.internal", "127.0.0.1.nip.io", "0", "08"}) {
    EXPECT_FALSE(list->Admits(HostOf(sensitive), &why)) << sensitive;
    EXPECT_NE(why.find("exactly"), std::string::npos) << sensitive << ": " << why;
  }
  list = HostList::Parse({"*", "169.254.169.254"}, &error);
  ASSERT_TRUE(list.has_value()) << error;
  EXPECT_TRUE(list->Admits(HostOf("0xa9fea9fe"), &why));
  EXPECT_FALSE(list->Admits(HostOf("169.254.169.253"), &why));
  list = HostList::Parse({"127.0.0.0/8"}, &error);  // accepted, but never admits loopback
  ASSERT_TRUE(list.has_value()) << error;
  EXPECT_FALSE(list->Admits(HostOf("127.0.0.1"), &why));
  EXPECT_NE(why.find("loopback"), std::string::npos) << why;

  list = HostList::Parse({}, &error);
  ASSERT_TRUE(list.has_value());
  EXPECT_TRUE(list->empty());
  EXPECT_FALSE(list->Admits(HostOf("example.com"), nullptr));

  for (const char* bad :
       {"",          "*.",           "*.*.x",      "a*.x",       "*x",          "**",
        "x.*",       "a b",          "10.0.0.0/0", "10.0.0.1/8", "10.0.0.0/33", "fd00::/129",
        "fd00::1/8", "10.0.0.0/08",  "10.0.0.0/",  "10/8",       "010.0.0.0/8", "[::1",
        "[zz]",      "fe80::1%eth0", "-a.b",       "x_y",        "\xc3\xa9.com"}) {
    error.clear();
    EXPECT_FALSE(HostList::Parse({"ok.example", bad}, &error).has_value()) << bad;
    EXPECT_NE(error.find("hosts entry"), std::string::npos) << bad << ": " << error;
  }
  HostList::Parse({"10.0.0.1/8"}, &error);
  EXPECT_NE(error.find("10.0.0.0/8"), std::string::npos) << error;
  HostList::Parse({"::/0"}, &error);
  EXPECT_NE(error.find("\"*\""), std::string::npos) << error;
}

TEST(NetAddressTest, ToStringRoundTrips) {
  for (const char* text : {"::", "::1", "1::", "1:0:0:1::", "0:1::", "1:0:1:0:1:0:1:0",
                           "2001:db8::1:0:0:1", "::ffff:1.2.3.4", "::1.2.3.4", "::ffff:0:1.2.3.4",
                           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe80::1:2"}) {
    IpAddress ip = V6(text);
    EXPECT_EQ(ParseIpv6(ip.ToString()), ip) << text << " -> " << ip.ToString();
  }
  EXPECT_EQ(V6("1:0:0:1:0:0:0:1").ToString(), "1:0:0:1::1");       // the longer run
  EXPECT_EQ(V6("1:0:0:1:0:0:1:1").ToString(), "1::1:0:0:1:1");     // the first on a tie
  EXPECT_EQ(V6("1:0:1:1:1:1:1:1").ToString(), "1:0:1:1:1:1:1:1");  // never "::" for one group
}

}  // namespace
}  // namespace podgate::policy::net
