// The example policy (deploy/policy/example.yaml) against a table of allowed and denied
// commands: the design note's diagnostics are allowed, every escape in the product brief
// (section 7) and the usual tricks (Unicode look-alikes, '-' values, path traversal, huge
// argv) are denied, and every decision names its rule and gives a reason.
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "policy/policy_loader.h"
#include "policy/text_checks.h"

namespace podgate::policy {
namespace {

using podgate::common::v1::VERDICT_ALLOW;
using podgate::common::v1::VERDICT_DENY;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Case {
  std::vector<std::string> argv;
  bool allow = false;
  std::string rule;
  std::string reason;  // a substring the reason must contain; empty: any
  std::string user = "dana";
  std::vector<std::string> groups = {"developers"};
  std::string ns = "app-shop";
  std::string pod = "shop-7d9f";
  std::string container = "app";
  bool shell = false;

  Case&& As(std::string u, std::vector<std::string> g) && {
    user = std::move(u);
    groups = std::move(g);
    return std::move(*this);
  }
  Case&& In(std::string n, std::string c = "app") && {
    ns = std::move(n);
    container = std::move(c);
    return std::move(*this);
  }
};

Case Allow(std::vector<std::string> argv, std::string rule) {
  Case c;
  c.argv = std::move(argv);
  c.allow = true;
  c.rule = std::move(rule);
  return c;
}

Case Deny(std::vector<std::string> argv, std::string rule, std::string reason = "") {
  Case c;
  c.argv = std::move(argv);
  c.rule = std::move(rule);
  c.reason = std::move(reason);
  return c;
}

Case Shell(bool allow, std::string rule) {
  Case c;
  c.shell = true;
  c.allow = allow;
  c.rule = std::move(rule);
  return c;
}

const std::vector<std::string> kSre = {"sre"};
const std::vector<std::string> kAdmin = {"platform-admins"};

std::vector<Case> Table() {
  std::vector<Case> t;
  const auto add = [&](Case c) { t.push_back(std::move(c)); };
  // ---- The design note's diagnostics are allowed. ----
  add(Allow({"jstack", "1"}, "dev-jstack"));
  add(Allow({"jstack", "-l", "4242"}, "dev-jstack"));
  add(Allow({"/usr/bin/jstack", "4242"}, "dev-jstack"));
  add(Allow({"jstack", "4194304"}, "dev-jstack"));
  add(Allow({"jmap", "-histo", "1"}, "dev-jmap-histo"));
  add(Allow({"jmap", "-histo:live", "1"}, "sre-jmap-histo-live").As("sam", kSre));
  add(Deny({"jmap", "-histo:live", "1"}, "dev-jmap-histo", "flag -histo:live is not allowed"));
  add(Allow({"jcmd", "1", "GC.heap_info"}, "dev-jcmd"));
  add(Allow({"jcmd", "77", "Thread.print"}, "dev-jcmd"));
  add(Allow({"jcmd", "77", "VM.flags"}, "dev-jcmd"));
  add(Allow({"free"}, "dev-free"));
  add(Allow({"free", "-h"}, "dev-free"));
  add(Allow({"free", "-m"}, "dev-free"));
  add(Allow({"df", "-h"}, "dev-df"));
  add(Allow({"ps"}, "dev-ps"));
  add(Allow({"ps", "-e", "-o", "pid,user,pcpu,rss,comm"}, "dev-ps"));
  add(Allow({"ps", "-eo", "pid,comm"}, "dev-ps"));
  add(Allow({"ps", "-A"}, "dev-ps"));
  add(Deny({"ps", "-A", "-f"}, "dev-ps", "flag -f is not allowed"));
  add(Deny({"ps", "aux"}, "dev-ps", "unexpected argument"));
  add(Deny({"ps", "-eo", "pid,args"}, "dev-ps", "does not match"));
  add(Allow({"top", "-b", "-n", "1"}, "dev-top"));
  add(Allow({"top", "-n", "1", "-b"}, "dev-top"));
  add(Allow({"curl", "-I", "https://orders.app-shop.svc"}, "dev-curl"));
  add(Allow({"curl", "-s", "http://api.app-shop.svc.cluster.local:8080/health"}, "dev-curl"));
  add(Allow({"curl", "-m", "5", "https://orders.app-shop.svc/"}, "dev-curl"));
  add(Allow({"curl", "-s", "-I", "-m", "10", "https://orders.app-shop.svc/status?q=1"},
            "dev-curl"));
  add(Allow({"curl", "--max-time=5", "https://orders.app-shop.svc:8443/readyz"}, "dev-curl"));
  add(Deny({"curl", "https://example.com/"}, "dev-curl", "not among the hosts"));
  add(Deny({"curl", "--max-time", "5", "http://10.0.0.1/"}, "dev-curl", "not among the hosts"));
  add(Deny({"curl", "https://[::1]:8443/"}, "dev-curl", "loopback"));
  add(Allow({"nslookup", "example.com"}, "dev-nslookup"));
  add(Deny({"nslookup", "db.internal", "10.0.0.10"}, "dev-nslookup", "unexpected argument"));
  add(Allow({"dig", "example.com"}, "dev-dig"));
  add(Allow({"dig", "example.com", "AAAA"}, "dev-dig"));
  add(Allow({"dig", "example.com", "MX", "+short"}, "dev-dig"));
  add(Allow({"ping", "-c", "3", "example.com"}, "dev-ping"));
  add(Allow({"ping", "-c", "1", "10.0.0.1"}, "dev-ping"));
  add(Allow({"ss"}, "dev-ss"));
  add(Allow({"ss", "-tnlp"}, "dev-ss"));
  add(Allow({"ss", "-s"}, "dev-ss"));
  add(Allow({"netstat", "-tnlp"}, "dev-netstat"));
  add(Allow({"cat", "/var/log/app/app.log"}, "dev-cat-logs"));
  add(Allow({"cat", "/var/log/app/a.log", "/var/log/app/b.log"}, "dev-cat-logs"));
  add(Allow({"cat", "/var/log/app//app.log"}, "dev-cat-logs"));
  add(Allow({"cat", "/var/log/app/./x/y.log"}, "dev-cat-logs"));
  add(Allow({"tail", "/var/log/app/app.log"}, "dev-tail-logs"));
  add(Allow({"tail", "-n", "100", "/var/log/app/app.log"}, "dev-tail-logs"));
  add(Allow({"jstack", "1"}, "dev-jstack").As("sam", kSre).In("staging"));
  add(Allow({"free"}, "dev-free").In("staging", "sidecar"));
  add(Allow({"ls", "-la", "/"}, "platform-superuser").As("pat", kAdmin).In("kube-system"));
  add(Allow({"jmap", "-histo", "1"}, "platform-superuser").As("pat", kAdmin));
  add(Allow({"/bin/ls"}, "platform-superuser").As("pat", kAdmin));
  add(Shell(true, "sre-shell").As("sam", kSre).In("staging", "app"));
  add(Shell(true, "sre-shell").As("sam", kSre).In("staging", "debug"));

  // ---- BRIEF section 7: programs that run programs. ----
  add(Deny({"find", "/", "-exec", "sh", "-c", "id", ";"}, "deny-program-runners",
           "find is denied"));
  add(Deny({"find", ".", "-name", "x"}, "deny-program-runners"));
  add(Deny({"tar", "--to-command=sh", "-xf", "a.tar"}, "deny-program-runners"));
  add(Deny({"awk", "BEGIN{system(\"sh\")}"}, "deny-program-runners"));
  add(Deny({"env", "sh"}, "deny-program-runners"));
  add(Deny({"xargs", "sh"}, "deny-program-runners"));
  add(Deny({"nice", "sh"}, "deny-program-runners"));
  add(Deny({"timeout", "0", "sh"}, "deny-program-runners"));
  add(Deny({"nohup", "sh"}, "deny-program-runners"));
  add(Deny({"/usr/bin/env", "sh"}, "deny-program-runners"));
  add(Deny({"sh", "-c", "id"}, "deny-program-runners"));
  add(Deny({"bash"}, "deny-program-runners"));
  add(Deny({"busybox", "sh"}, "deny-program-runners"));
  add(Deny({"python3", "-c", "import os"}, "deny-program-runners"));
  add(Deny({"perl", "-e", "exec '/bin/sh'"}, "deny-program-runners"));
  add(Deny({"sed", "-n", "1e id", "/var/log/app/x"}, "deny-program-runners"));
  add(Deny({"vi", "/var/log/app/x"}, "deny-program-runners"));
  // ---- curl: files, config files, schemes. ----
  add(Deny({"curl", "-o", "/tmp/x", "https://example.com"}, "deny-curl-writes-and-redirection",
           "argument '-o' is denied for curl"));
  add(Deny({"curl", "-O", "https://example.com/x"}, "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "-K", "/tmp/cfg", "https://example.com"}, "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "--config", "/tmp/cfg"}, "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "--config=/tmp/cfg"}, "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "file:///etc/passwd"}, "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "FILE:///etc/passwd"}, "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "-so", "/tmp/x", "https://example.com"}, "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "--output", "/tmp/x", "https://example.com"},
           "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "-T", "/etc/passwd", "https://example.com"},
           "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "--upload-file", "/etc/passwd", "https://example.com"},
           "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "https://example.com", "-o", "x"}, "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "-Iso", "x", "https://example.com"}, "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "gopher://example.com/"}, "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "ftp://example.com/"}, "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "ldapx://orders.app-shop.svc/"}, "dev-curl", "scheme ldapx"));
  add(Deny({"curl", "dict://example.com:11211/"}, "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "https://user:pw@example.com/"}, "dev-curl", "user information"));
  add(Deny({"curl", "-m", "31", "https://example.com"}, "dev-curl", "out of range"));
  add(Deny({"curl", "-m", "-1", "https://example.com"}, "dev-curl"));
  add(Deny({"curl", "-m", "5s", "https://example.com"}, "dev-curl", "not a decimal integer"));
  add(Deny({"curl", "-m", "05", "https://example.com"}, "dev-curl"));
  add(Deny({"curl"}, "dev-curl", "<url> is missing"));
  add(Deny({"curl", "https://a.svc", "https://b.svc"}, "dev-curl", "unexpected argument"));
  add(Deny({"curl", "-I", "-I", "https://example.com"}, "dev-curl", "more than once"));
  add(Deny({"curl", "--max-time=abc", "https://example.com"}, "dev-curl"));
  add(Deny({"curl", "-I=x", "https://example.com"}, "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "-I=y", "https://a.svc"}, "dev-curl", "flag -I=y is not allowed"));
  add(Deny({"curl", "-L", "https://example.com"}, "deny-curl-writes-and-redirection",
           "argument '-L' is denied for curl"));
  add(Deny({"curl", "-k", "https://a.svc"}, "dev-curl",
           "flag -k is not allowed for curl (rule dev-curl)"));
  add(Deny({"curl", "-x", "http://proxy:3128", "https://example.com"},
           "deny-curl-writes-and-redirection"));
  add(Deny({"curl", "-H", "Host: x", "https://example.com"}, "dev-curl"));
  add(Deny({"curl", "-I", "--", "https://example.com"}, "dev-curl", "'--' is not allowed"));
  add(Deny({"curl", "https://exa mple.com"}, "dev-curl"));
  add(Deny({"curl", "https://example.com#frag"}, "dev-curl"));
  add(Deny({"curl", "http://example.com:99999/"}, "dev-curl", "port above 65535"));
  add(Deny({"curl", "example.com"}, "dev-curl", "no scheme"));
  // ---- jcmd and jmap. ----
  add(Deny({"jcmd", "1", "-f", "/tmp/cmds"}, "deny-jcmd-dangerous"));
  add(Deny({"jcmd", "1", "JVMTI.agent_load", "/tmp/a.so"}, "deny-jcmd-dangerous"));
  add(Deny({"jcmd", "1", "VM.set_flag", "HeapDumpPath", "/tmp"}, "deny-jcmd-dangerous"));
  add(Deny({"jcmd", "1", "GC.heap_dump", "/tmp/h"}, "deny-jcmd-dangerous"));
  add(Deny({"jcmd", "1", "ManagementAgent.start"}, "deny-jcmd-dangerous"));
  add(Deny({"jcmd", "1", "VM.system_properties"}, "deny-jcmd-dangerous"));
  add(Deny({"jcmd", "1", "VM.info"}, "dev-jcmd", "is not one of"));
  add(Deny({"jcmd", "1", "GC.heap_dump /tmp/h"}, "deny-jcmd-dangerous"));
  add(Deny({"jcmd", "1", "help"}, "dev-jcmd"));
  add(Deny({"jcmd", "1"}, "dev-jcmd", "<command> is missing"));
  add(Deny({"jcmd", "GC.heap_info"}, "dev-jcmd", "not a decimal integer"));
  add(Deny({"jcmd", "0", "GC.heap_info"}, "dev-jcmd", "out of range"));
  add(Deny({"jcmd", "4194305", "GC.heap_info"}, "dev-jcmd", "out of range"));
  add(Deny({"jcmd", "1", "GC.heap_info", "extra"}, "dev-jcmd", "unexpected argument"));
  add(Deny({"jcmd", "-l"}, "dev-jcmd", "flag -l is not allowed"));
  add(Allow({"jps"}, "dev-jps"));
  add(Deny({"jps", "-lvm"}, "dev-jps", "flag -lvm is not allowed"));
  add(Deny({"jcmd", "-l", "1"}, "dev-jcmd", "flag -l is not allowed"));
  add(Deny({"jmap", "-dump:file=/tmp/h", "1"}, "deny-jmap-dump"));
  add(Deny({"jmap", "-dump:live,format=b,file=/tmp/h.bin", "1"}, "deny-jmap-dump"));
  add(Deny({"jmap", "-F", "-histo", "1"}, "deny-jmap-dump"));
  add(Deny({"jmap", "1"}, "dev-jmap-histo", "flag -histo is required"));
  add(Deny({"jmap", "-histo", "-histo:live", "1"}, "dev-jmap-histo"));
  add(Deny({"jmap", "-histo", "1", "2"}, "dev-jmap-histo", "unexpected argument"));
  add(Deny({"jmap", "-histo", "abc"}, "dev-jmap-histo"));
  add(Deny({"jmap", "-heap", "1"}, "dev-jmap-histo", "flag -heap is not allowed"));
  add(Deny({"jstack", "-F", "1"}, "dev-jstack"));
  add(Deny({"jstack"}, "dev-jstack", "<pid> is missing"));
  add(Deny({"jstack", "1", "2"}, "dev-jstack"));
  add(Deny({"jstack", "--", "1"}, "dev-jstack", "'--' is not allowed"));
  add(Deny({"jstack", "-1"}, "dev-jstack", "flag -1 is not allowed"));
  add(Deny({"jstack", "1.0"}, "dev-jstack"));
  add(Deny({"jstack", "0x10"}, "dev-jstack"));
  add(Deny({"jstack", " 1"}, "dev-jstack"));
  // ---- ps without environments, top, df, free. ----
  add(Deny({"ps", "e"}, "deny-ps-environment", "argument 'e' is denied for ps"));
  add(Allow({"ps", "-e"}, "dev-ps"));
  add(Deny({"ps", "aux", "e"}, "deny-ps-environment"));
  add(Deny({"ps", "auxe"}, "deny-ps-environment"));
  add(Deny({"ps", "-ef"}, "dev-ps"));
  add(Deny({"ps", "eww", "1"}, "deny-ps-environment"));
  add(Allow({"ps", "-o", "pid"}, "dev-ps"));
  add(Deny({"ps", "x"}, "dev-ps"));
  add(Deny({"ps", "aux", "ax"}, "dev-ps"));
  add(Deny({"top"}, "dev-top", "is required"));
  add(Deny({"top", "-b"}, "dev-top", "flag -n is required"));
  add(Deny({"top", "-b", "-n", "2"}, "dev-top", "out of range"));
  add(Deny({"top", "-b", "-n", "1", "-d", "1"}, "dev-top"));
  add(Deny({"top", "-b", "-n"}, "dev-top", "needs a value"));
  add(Deny({"df"}, "dev-df", "flag -h is required"));
  add(Deny({"df", "-h", "/"}, "dev-df", "unexpected argument"));
  add(Deny({"free", "-s", "1"}, "dev-free"));
  // ---- DNS, ping, sockets. ----
  add(Deny({"nslookup", "-query=any", "example.com"}, "dev-nslookup"));
  add(Deny({"nslookup", "example.com", "dns.example"}, "dev-nslookup", "unexpected argument"));
  add(Deny({"nslookup", "-example.com"}, "dev-nslookup"));
  add(Deny({"nslookup", "exa_mple.com"}, "dev-nslookup", "not a host name"));
  add(Allow({"nslookup", "example.com."}, "dev-nslookup"));
  add(Deny({"dig", "-f", "/etc/hosts"}, "dev-dig", "flag -f is not allowed"));
  add(Deny({"dig", "@8.8.8.8", "example.com"}, "dev-dig"));
  add(Deny({"dig", "-x", "10.0.0.1"}, "dev-dig"));
  add(Deny({"dig", "example.com", "ANY"}, "dev-dig"));
  add(Deny({"ping", "example.com"}, "dev-ping", "flag -c is required"));
  add(Deny({"ping", "-c", "100", "example.com"}, "dev-ping", "out of range"));
  add(Deny({"ping", "-c", "3", "-f", "example.com"}, "dev-ping", "flag -f is not allowed"));
  add(Deny({"ping", "-c", "3", "-i", "0", "example.com"}, "dev-ping"));
  add(Deny({"ping", "-c", "3", "host;id"}, "dev-ping"));
  add(Deny({"ping", "-c", "3", "$(id)"}, "dev-ping"));
  add(Deny({"ss", "-K"}, "dev-ss", "flag -K is not allowed"));
  add(Deny({"ss", "-tnlpK"}, "dev-ss"));
  add(Deny({"netstat"}, "dev-netstat"));
  add(Deny({"netstat", "-a"}, "dev-netstat"));
  // ---- Paths: traversal, prefixes, relative paths. ----
  add(Deny({"cat", "/etc/passwd"}, "dev-cat-logs", "is outside /var/log/app"));
  add(Deny({"cat", "/var/log/app/../../etc/shadow"}, "dev-cat-logs", "without '..'"));
  add(Deny({"cat", "/var/log/app/.."}, "dev-cat-logs"));
  add(Deny({"cat", "/var/log/app/x/../../../etc/shadow"}, "dev-cat-logs"));
  add(Deny({"cat", "/var/log/app2/x"}, "dev-cat-logs", "outside"));
  add(Deny({"cat", "/var/log/application.log"}, "dev-cat-logs"));
  add(Deny({"cat", "var/log/app/x"}, "dev-cat-logs"));
  add(Deny({"cat", "./x"}, "dev-cat-logs"));
  add(Deny({"cat", "~/x"}, "dev-cat-logs"));
  add(Deny({"cat", "-n", "/var/log/app/x"}, "dev-cat-logs", "flag -n is not allowed"));
  add(Deny({"cat", "-", "/var/log/app/x"}, "dev-cat-logs"));
  add(Deny({"cat"}, "dev-cat-logs", "<file> is missing"));
  add(Deny(
      {"cat", "/var/log/app/1", "/var/log/app/2", "/var/log/app/3", "/var/log/app/4",
       "/var/log/app/5", "/var/log/app/6", "/var/log/app/7", "/var/log/app/8", "/var/log/app/9"},
      "dev-cat-logs", "too many"));
  add(Deny({"cat", "/proc/self/environ"}, "dev-cat-logs"));
  add(Deny({"cat", "--", "/etc/passwd"}, "dev-cat-logs", "'--' is not allowed"));
  add(Deny({"tail", "-f", "/var/log/app/x"}, "dev-tail-logs", "flag -f is not allowed"));
  add(Deny({"tail", "-n", "-5", "/var/log/app/x"}, "dev-tail-logs"));
  add(Deny({"tail", "-n", "0", "/var/log/app/x"}, "dev-tail-logs"));
  add(Deny({"tail", "-n", "10001", "/var/log/app/x"}, "dev-tail-logs"));
  add(Deny({"tail", "-n", "1e3", "/var/log/app/x"}, "dev-tail-logs"));
  add(Deny({"tail", "-n", "5", "/var/log/app/../../../etc/shadow"}, "dev-tail-logs"));
  add(Deny({"tail", "-n", "-f", "/var/log/app/x"}, "dev-tail-logs"));
  // ---- argv[0] is matched exactly. ----
  add(Deny({"./jstack", "1"}, "default-deny", "relative path"));
  add(Deny({"bin/jstack", "1"}, "default-deny", "relative path"));
  add(Deny({"\\jstack", "1"}, "default-deny", "backslash"));
  add(Deny({"/bin/jstack", "1"}, "default-deny", "path no rule lists"));
  add(Deny({"/usr/bin/../bin/jstack", "1"}, "default-deny"));
  add(Deny({"/usr//bin/jstack", "1"}, "default-deny"));
  add(Deny({"JSTACK", "1"}, "default-deny"));
  add(Deny({"jstack ", "1"}, "default-deny"));
  add(Deny({"-jstack", "1"}, "default-deny", "starts with '-'"));
  add(Deny({"rm", "-rf", "/"}, "default-deny", "no rule allows 'rm'"));
  add(Deny({"kill", "-9", "1"}, "default-deny"));
  // ---- Unicode and control characters. ----
  add(Deny({"\xef\xbd\x8a\xef\xbd\x93\xef\xbd\x94\xef\xbd\x81\xef\xbd\x83\xef\xbd\x8b", "1"},
           "argv-check", "fullwidth look-alike U+FF4A of 'j'"));
  add(Deny({"curl", "\xc2\xa0-o", "https://example.com"}, "argv-check", "non-ASCII space U+00A0"));
  add(Deny({"jstack", "1\xe2\x80\xae"}, "argv-check", "bidi control U+202E"));
  add(Deny({"cat", "/var/log/app/\xe2\x81\xa6x"}, "argv-check", "bidi control U+2066"));
  add(Deny({"free\xe2\x80\x8b"}, "argv-check", "invisible character U+200B"));
  add(Deny({"fr\xd0\xb5\xd0\xb5"}, "argv-check", "non-ASCII character U+0435"));
  // Text in other languages goes where the value type holds text: file names under a path
  // prefix, not pids, hosts or URLs.
  add(Allow({"cat", "/var/log/app/\xe6\x97\xa5\xe5\xbf\x97.log"}, "dev-cat-logs"));
  add(Allow({"tail", "-n", "5",
             "/var/log/app/\xe9\x94\x99\xe8\xaf\xaf\xef\xbc\x8c"
             "1.log"},
            "dev-tail-logs"));
  add(Deny({"jstack", "\xe4\xb8\x80"}, "dev-jstack", "contains non-ASCII text"));
  add(Deny({"curl", "https://\xe4\xbe\x8b\xe5\xad\x90.cn"}, "dev-curl", "contains non-ASCII text"));
  add(Deny({"cat",
            "/var/log/app/a\xe3\x80\x80"
            "b"},
           "argv-check", "non-ASCII space U+3000"));
  add(Deny({"cat", "/var/log/app\xef\xbc\x8fx"}, "argv-check",
           "fullwidth look-alike U+FF0F of '/'"));
  add(Deny({"cat", "/var/log/\xe6\x97\xa5\xe5\xbf\x97.log"}, "dev-cat-logs", "is outside"));
  add(Deny({"jstack", std::string("1\0", 2)}, "argv-check", "NUL byte"));
  add(Deny({"jstack", "1\x1b[2J"}, "argv-check", "control character U+001B"));
  add(Deny({"jstack", "1\nid"}, "argv-check", "control character U+000A"));
  add(Deny({"jstack", "\t1"}, "argv-check", "control character U+0009"));
  add(Deny({"jstack", "1\x7f"}, "argv-check", "control character U+007F"));
  add(Deny({"jstack", "\xff"}, "argv-check", "invalid UTF-8"));
  add(Deny({"cat", "/var/log/app/\xc0\xaf"}, "argv-check", "invalid UTF-8"));
  add(Deny({"jstack", "\xed\xa0\x80"}, "argv-check", "invalid UTF-8"));
  add(Deny({"ps", "\xc2\x85"}, "argv-check", "control character U+0085"));
  add(Deny({"curl", "-\xc2\xado", "https://example.com"}, "argv-check", "U+00AD"));
  add(Deny({"curl", "\xef\xbc\x8do", "https://example.com"}, "argv-check", "fullwidth"));
  add(Deny({"jstack", "\xef\xbc\x91"}, "argv-check", "fullwidth"));
  // ---- Sizes are refused before anything else. ----
  add(Deny(std::vector<std::string>(129, "1"), "argv-check", "129 arguments"));
  add(Deny({"cat", std::string(5000, 'a')}, "argv-check", "5000 bytes long"));
  add(Deny(std::vector<std::string>(10, std::string(4000, 'a')), "argv-check", "40000 bytes long"));
  add(Deny({}, "argv-check", "empty"));
  add(Deny({"", "1"}, "argv-check", "program name is empty"));
  // ---- Who and where. ----
  add(Deny({"jstack", "1"}, "default-deny").As("eve", {}));
  add(Deny({"jstack", "1"}, "default-deny").As("eve", {"developers "}));
  add(Deny({"jstack", "1"}, "default-deny").As("eve", {"Developers"}));
  add(Deny({"jstack", "1"}, "default-deny").In("prod"));
  add(Deny({"jstack", "1"}, "default-deny").In("kube-system"));
  add(Deny({"jstack", "1"}, "default-deny").In("app"));
  add(Deny({"jstack", "1"}, "invalid-request", "no user").As("", {"developers"}));
  add(Deny({"jstack", "1"}, "invalid-request", "no namespace").In(""));
  // ---- Shells. ----
  add(Shell(false, "default-deny"));
  add(Shell(false, "default-deny").As("sam", kSre).In("staging", ""));
  add(Shell(false, "default-deny").As("sam", kSre).In("staging", "sidecar"));
  add(Shell(false, "default-deny").As("sam", kSre).In("app-shop"));
  add(Shell(false, "deny-shell-in-production").As("sam", kSre).In("prod"));
  add(Shell(false, "deny-shell-in-production").As("pat", kAdmin).In("prod-eu"));
  add(Shell(false, "default-deny").As("pat", kAdmin));
  // ---- Superusers bypass grammars, never explicit denials. ----
  add(Deny({"sh", "-c", "id"}, "deny-program-runners").As("pat", kAdmin));
  add(Deny({"curl", "-o", "/tmp/x", "http://x"}, "deny-curl-writes-and-redirection")
          .As("pat", kAdmin));
  add(Deny({"jmap", "-dump:file=x", "1"}, "deny-jmap-dump").As("pat", kAdmin));
  add(Deny({"ps", "e"}, "deny-ps-environment").As("pat", kAdmin));
  add(Deny({"./x"}, "default-deny", "relative path").As("pat", kAdmin));
  add(Deny({"ls\xe2\x80\xae"}, "argv-check").As("pat", kAdmin));
  return t;
}

class ExamplePolicyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    LoadResult result = LoadPolicy(ReadFile(PODGATE_EXAMPLE_POLICY), PODGATE_EXAMPLE_POLICY);
    for (const LoadIssue& issue : result.issues) {
      ADD_FAILURE() << issue.ToString();
    }
    policy_ = new std::shared_ptr<const CompiledPolicy>(result.policy);
  }
  static void TearDownTestSuite() { delete policy_; }
  static std::shared_ptr<const CompiledPolicy>* policy_;
};

std::shared_ptr<const CompiledPolicy>* ExamplePolicyTest::policy_ = nullptr;

TEST_F(ExamplePolicyTest, LoadsWithoutIssues) { ASSERT_NE(*policy_, nullptr); }

TEST_F(ExamplePolicyTest, TableOfAllowedAndDeniedCommands) {
  ASSERT_NE(*policy_, nullptr);
  const std::vector<Case> table = Table();
  EXPECT_GE(table.size(), 150u);
  int allowed = 0;
  for (const Case& c : table) {
    podgate::policy::v1::AuthorizeRequest request;
    request.mutable_principal()->set_user(c.user);
    for (const std::string& g : c.groups) {
      request.mutable_principal()->add_groups(g);
    }
    request.mutable_target()->set_namespace_(c.ns);
    request.mutable_target()->set_pod(c.pod);
    request.mutable_target()->set_container(c.container);
    if (c.shell) {
      request.mutable_shell();
    } else {
      request.mutable_command();
      for (const std::string& a : c.argv) {
        request.mutable_command()->add_argv(a);
      }
    }
    const std::string label =
        absl::StrCat(c.shell ? "<shell>" : absl::StrJoin(c.argv, " ").substr(0, 80), " as ", c.user,
                     " in ", c.ns, "/", c.container);
    const podgate::common::v1::Decision d = (*policy_)->Evaluate(request);
    EXPECT_EQ(d.verdict(), c.allow ? VERDICT_ALLOW : VERDICT_DENY) << label << ": " << d.reason();
    EXPECT_EQ(d.rule(), c.rule) << label << ": " << d.reason();
    EXPECT_FALSE(d.reason().empty()) << label;
    EXPECT_EQ(d.policy_version(), (*policy_)->version()) << label;
    if (!c.reason.empty()) {
      EXPECT_NE(d.reason().find(c.reason), std::string::npos)
          << label << ": reason '" << d.reason() << "' lacks '" << c.reason << "'";
    }
    if (d.rule() != kDefaultDenyRule && d.rule() != kArgvCheckRule &&
        d.rule() != kInvalidRequestRule) {
      EXPECT_NE(d.reason().find(absl::StrCat("(rule ", d.rule(), ")")), std::string::npos)
          << label << ": " << d.reason();
    }
    allowed += c.allow ? 1 : 0;
  }
  EXPECT_GE(allowed, 45);
  EXPECT_GE(static_cast<int>(table.size()) - allowed, 150);
}

TEST_F(ExamplePolicyTest, AllowedDecisionsCarryTheRuleLimits) {
  podgate::policy::v1::AuthorizeRequest request;
  request.mutable_principal()->set_user("dana");
  request.mutable_principal()->add_groups("developers");
  request.mutable_target()->set_namespace_("app-shop");
  request.mutable_target()->set_pod("shop-1");
  request.mutable_target()->set_container("app");
  request.mutable_command()->add_argv("curl");
  request.mutable_command()->add_argv("https://orders.app-shop.svc/health");
  auto d = (*policy_)->Evaluate(request);
  ASSERT_EQ(d.verdict(), VERDICT_ALLOW) << d.reason();
  // The rule's fixed arguments come first: -q is honoured only as curl's first argument.
  EXPECT_EQ(absl::StrJoin(d.argv(), " "),
            "curl -q -g --proto =http,https --noproxy * --max-redirs 0 "
            "https://orders.app-shop.svc/health");
  EXPECT_EQ(d.limits().time_limit().seconds(), 35);
  EXPECT_EQ(d.limits().output_limit_bytes(), 262144);
  EXPECT_FALSE(d.root_allowed());

  request.mutable_command()->clear_argv();
  request.mutable_command()->add_argv("free");
  d = (*policy_)->Evaluate(request);
  ASSERT_EQ(d.verdict(), VERDICT_ALLOW);
  EXPECT_EQ(d.limits().time_limit().seconds(), 30);  // defaults
  EXPECT_EQ(d.limits().output_limit_bytes(), 1048576);

  request.mutable_principal()->set_user("pat");
  request.mutable_principal()->set_groups(0, "platform-admins");
  d = (*policy_)->Evaluate(request);
  ASSERT_EQ(d.verdict(), VERDICT_ALLOW);
  EXPECT_EQ(d.rule(), "platform-superuser");
  EXPECT_TRUE(d.root_allowed());
}

TEST_F(ExamplePolicyTest, ExplainListsEveryRuleConsidered) {
  podgate::policy::v1::AuthorizeRequest request;
  request.mutable_principal()->set_user("dana");
  request.mutable_principal()->add_groups("sre");
  request.mutable_target()->set_namespace_("app-shop");
  request.mutable_target()->set_pod("shop-1");
  request.mutable_target()->set_container("app");
  for (const char* a : {"jmap", "-histo:live", "1"}) {
    request.mutable_command()->add_argv(a);
  }
  std::vector<std::string> explanation;
  auto d = (*policy_)->Evaluate(request, &explanation);
  ASSERT_EQ(d.rule(), "sre-jmap-histo-live");
  ASSERT_EQ(d.checks_size(), 1);
  EXPECT_EQ(d.checks(0).kind(), podgate::common::v1::ContainerCheck::KIND_JVM_PID);
  EXPECT_EQ(d.checks(0).arg_index(), 2u);
  const std::string all = absl::StrJoin(explanation, "\n");
  EXPECT_NE(all.find("rule deny-jmap-dump: no denied argument present"), std::string::npos) << all;
  EXPECT_NE(all.find("rule dev-jmap-histo: flag -histo:live is not allowed for jmap"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("rule sre-jmap-histo-live: the grammar accepts the argv"), std::string::npos)
      << all;
  EXPECT_NE(all.find("decision: allow by sre-jmap-histo-live"), std::string::npos) << all;
}

TEST_F(ExamplePolicyTest, ListAllowedGivesHintsForThePage) {
  podgate::policy::v1::ListAllowedRequest request;
  request.mutable_principal()->set_user("dana");
  request.mutable_principal()->add_groups("developers");
  request.mutable_target()->set_namespace_("app-shop");
  request.mutable_target()->set_pod("shop-1");
  auto list = (*policy_)->ListAllowed(request);
  EXPECT_FALSE(list.shell_allowed());
  EXPECT_FALSE(list.superuser());
  EXPECT_EQ(list.policy_version(), (*policy_)->version());
  std::vector<std::string> programs;
  for (const auto& c : list.commands()) {
    programs.push_back(absl::StrCat(c.program(), "/", c.rule()));
    EXPECT_FALSE(c.usage().empty());
  }
  EXPECT_EQ(absl::StrJoin(programs, " "),
            "cat/dev-cat-logs curl/dev-curl df/dev-df dig/dev-dig free/dev-free "
            "jcmd/dev-jcmd jmap/dev-jmap-histo jps/dev-jps jstack/dev-jstack "
            "netstat/dev-netstat nslookup/dev-nslookup ping/dev-ping ps/dev-ps ss/dev-ss "
            "tail/dev-tail-logs top/dev-top");
  for (const auto& c : list.commands()) {
    if (c.rule() == "dev-jcmd") {
      EXPECT_EQ(c.usage(), "jcmd <pid> GC.heap_info|Thread.print|VM.flags|VM.uptime|VM.version");
      EXPECT_EQ(absl::StrJoin(c.subcommands(), ","),
                "GC.heap_info,Thread.print,VM.flags,VM.uptime,VM.version");
    }
    if (c.rule() == "dev-curl") {
      ASSERT_EQ(c.flags_size(), 6);
      EXPECT_EQ(c.flags(4).name(), "-m");
      EXPECT_TRUE(c.flags(4).takes_value());
      EXPECT_EQ(c.flags(4).value_type(), "integer(1..30)");
      EXPECT_EQ(c.usage(),
                "curl [-I] [-s] [-S] [-v] [-m <integer(1..30)>] [--max-time <integer(1..30)>] "
                "<url>");
      ASSERT_EQ(c.args_size(), 1);
      EXPECT_EQ(c.args(0).kind(), "url");
      EXPECT_TRUE(c.args(0).path_prefixes().empty());
    }
    // Argument hints, for completion: a path's prefixes, a pid that must be a JVM's.
    if (c.rule() == "dev-cat-logs") {
      ASSERT_EQ(c.args_size(), 1);
      EXPECT_EQ(c.args(0).name(), "file");
      EXPECT_EQ(c.args(0).kind(), "path");
      EXPECT_EQ(absl::StrJoin(c.args(0).path_prefixes(), ","), "/var/log/app");
      EXPECT_TRUE(c.args(0).repeated());
      EXPECT_FALSE(c.args(0).optional());
      EXPECT_FALSE(c.args(0).jvm());
    }
    if (c.rule() == "dev-jstack") {
      ASSERT_EQ(c.args_size(), 1);
      EXPECT_EQ(c.args(0).name(), "pid");
      EXPECT_EQ(c.args(0).kind(), "pid");
      EXPECT_TRUE(c.args(0).jvm());
      EXPECT_FALSE(c.args(0).repeated());
    }
    if (c.rule() == "dev-jps") {
      EXPECT_EQ(c.args_size(), 0);
    }
  }

  request.mutable_principal()->set_user("sam");
  request.mutable_principal()->set_groups(0, "sre");
  request.mutable_target()->set_namespace_("staging");
  request.mutable_target()->set_container("app");
  list = (*policy_)->ListAllowed(request);
  EXPECT_TRUE(list.shell_allowed());

  request.mutable_principal()->set_user("eve");
  request.mutable_principal()->clear_groups();
  list = (*policy_)->ListAllowed(request);
  EXPECT_EQ(list.commands_size(), 0);
  EXPECT_FALSE(list.shell_allowed());
}

}  // namespace
}  // namespace podgate::policy

namespace podgate::policy {
namespace {

// Random hostile argvs (random bytes, random near-miss mutations of allowed commands) against
// the example policy: every decision names a rule and a reason, an argv with a character that
// is never accepted (or invalid UTF-8) is refused by the argv check, and a mutation is only
// allowed when a grammar accepts it.
TEST_F(ExamplePolicyTest, RandomHostileArgvsAlwaysGetARuleAndAReason) {
  ASSERT_NE(*policy_, nullptr);
  std::mt19937 rng(20261128);  // fixed seed: the test is deterministic
  const std::vector<std::vector<std::string>> seeds = {{"jstack", "1"},
                                                       {"curl", "-s", "https://example.com"},
                                                       {"cat", "/var/log/app/x"},
                                                       {"jcmd", "1", "VM.flags"},
                                                       {"ps", "aux"},
                                                       {"tail", "-n", "5", "/var/log/app/x"}};
  const std::string alphabet = "-./:=e~$;|&`'\"\\ oOKf0129ax";
  int allowed = 0;
  for (int i = 0; i < 20000; ++i) {
    std::vector<std::string> argv = seeds[rng() % seeds.size()];
    const int mutations = 1 + static_cast<int>(rng() % 3);
    for (int m = 0; m < mutations; ++m) {
      std::string& arg = argv[rng() % argv.size()];
      switch (rng() % 4) {
        case 0:  // a random byte anywhere, including NUL, controls and UTF-8 lead bytes
          arg.insert(arg.begin() + static_cast<long>(rng() % (arg.size() + 1)),
                     static_cast<char>(rng() % 256));
          break;
        case 1:  // a shell-ish character
          arg.insert(arg.begin() + static_cast<long>(rng() % (arg.size() + 1)),
                     alphabet[rng() % alphabet.size()]);
          break;
        case 2:  // drop a character
          if (!arg.empty()) {
            arg.erase(arg.begin() + static_cast<long>(rng() % arg.size()));
          }
          break;
        default:  // an extra argument
          argv.push_back(std::string(1, alphabet[rng() % alphabet.size()]));
          break;
      }
    }
    podgate::policy::v1::AuthorizeRequest request;
    request.mutable_principal()->set_user("dana");
    request.mutable_principal()->add_groups("developers");
    request.mutable_target()->set_namespace_("app-shop");
    request.mutable_target()->set_pod("shop-1");
    request.mutable_target()->set_container("app");
    for (const std::string& a : argv) {
      request.mutable_command()->add_argv(a);
    }
    const auto d = (*policy_)->Evaluate(request);
    ASSERT_FALSE(d.rule().empty());
    ASSERT_FALSE(d.reason().empty());
    // Random bytes side by side can make valid non-ASCII text: refused by the argv check only
    // when it holds a character that is never accepted (or the program name is not ASCII).
    bool safe = DescribeForbiddenCharacter(argv[0]) == std::nullopt;
    for (const std::string& a : argv) {
      safe = safe && !DescribeUnsafeCharacter(a).has_value();
    }
    if (!safe) {
      ASSERT_EQ(d.rule(), kArgvCheckRule) << absl::StrJoin(argv, " ");
    }
    if (d.verdict() == VERDICT_ALLOW) {
      ++allowed;
      ASSERT_TRUE(safe);
      // An allowed argv is accepted by the grammar of the rule that allowed it.
      const Rule* rule = nullptr;
      for (const Rule& r : (*policy_)->rules()) {
        if (r.id == d.rule()) {
          rule = &r;
        }
      }
      ASSERT_NE(rule, nullptr);
      ASSERT_FALSE(rule->grammar.Match(argv).has_value()) << absl::StrJoin(argv, " ");
      // No shell ever sees the argv, so a quote inside a log file name is just a byte; what
      // matters is that a flag never slips through.
      for (size_t k = 1; k < argv.size(); ++k) {
        if (argv[k].size() > 1 && argv[k][0] == '-') {
          ASSERT_TRUE(rule->grammar.flag_index.contains(argv[k]) || argv[k].rfind("--", 0) == 0 ||
                      ParseStrictInteger(argv[k]).has_value())
              << absl::StrJoin(argv, " ");
        }
      }
    }
  }
  // Some mutations stay inside the grammars (e.g. a changed pid), most do not.
  EXPECT_GT(allowed, 0);
  EXPECT_LT(allowed, 20000 / 2);
}

}  // namespace
}  // namespace podgate::policy
