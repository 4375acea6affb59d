#include "bench/chain_clients.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "auth/base64url.h"
#include "exec/kube_client.h"
#include "k8s/exec_protocol.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace podgate::bench {
namespace {

constexpr size_t kHeadBytes = 4096;

void KeepHead(std::string* head, const char* data, size_t n) {
  if (head->size() < kHeadBytes) {
    head->append(data, std::min(n, kHeadBytes - head->size()));
  }
}

}  // namespace

absl::StatusOr<DirectExec> DirectExec::FromKubeconfig(const std::string& kubeconfig) {
  absl::StatusOr<exec::KubeConfig> config = exec::LoadKubeconfig(kubeconfig, false);
  if (!config.ok()) {
    return config.status();
  }
  if (config->token.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("kubeconfig ", kubeconfig, ": no bearer token (the direct client needs one)"));
  }
  DirectExec d;
  d.options_.host = config->host;
  d.options_.port = config->port;
  d.options_.tls = true;
  d.options_.ca_file = config->ca_file;
  d.options_.ca_pem = config->ca_pem;
  d.options_.server_name = config->server_name;
  d.options_.headers.emplace_back("Authorization", "Bearer " + config->token);
  d.options_.max_message_bytes = 64 << 20;
  return d;
}

absl::StatusOr<CommandResult> DirectExec::Run(const std::string& ns, const std::string& pod,
                                              const std::string& container,
                                              const std::vector<std::string>& argv,
                                              absl::Duration timeout,
                                              bool answer_launch_report) const {
  const absl::Time deadline = absl::Now() + timeout;
  k8s::ExecOptions query;
  query.command = argv;
  query.container = container;
  query.stdin = answer_launch_report;
  query.stdout = true;
  query.stderr = true;
  http::ClientOptions options = options_;
  options.timeout = timeout;
  const absl::Time start = absl::Now();
  auto ws = http::WebSocketClient::Connect(
      options,
      absl::StrCat("/api/v1/namespaces/", ns, "/pods/", pod, "/exec?", k8s::EncodeExecQuery(query)),
      {std::string(k8s::kProtocolV5)});
  if (!ws.ok()) {
    return ws.status();
  }
  if ((*ws)->subprotocol() != k8s::kProtocolV5) {
    return absl::FailedPreconditionError(
        absl::StrCat("the API server chose '", (*ws)->subprotocol(), "', not v5.channel.k8s.io"));
  }
  CommandResult result;
  result.upgrade = absl::Now() - start;
  std::string stderr_head;
  while (true) {
    absl::StatusOr<http::Message> m = (*ws)->Read(deadline - absl::Now());
    if (!m.ok()) {
      return absl::Status(m.status().code(),
                          absl::StrCat("direct exec of ", absl::StrJoin(argv, " "),
                                       " ended before its status: ", m.status().message()));
    }
    if (m->data.empty()) {
      continue;
    }
    const auto channel = static_cast<uint8_t>(m->data[0]);
    const char* payload = m->data.data() + 1;
    const size_t n = m->data.size() - 1;
    if (channel == k8s::kStdout) {
      result.stdout_bytes += static_cast<int64_t>(n);
      KeepHead(&result.stdout_head, payload, n);
    } else if (channel == k8s::kStderr) {
      KeepHead(&stderr_head, payload, n);
      if (answer_launch_report && absl::StartsWith(stderr_head, "podgate-pid ") &&
          stderr_head.find('\n') != std::string::npos) {
        answer_launch_report = false;  // answered once
        result.launch = absl::Now() - start - result.upgrade;
        std::string go(1, static_cast<char>(k8s::kStdin));
        go += "go\n";
        if (absl::Status s = (*ws)->Write(go, true); !s.ok()) {
          return s;
        }
        stderr_head.clear();  // the report is not the command's stderr
      }
    } else if (channel == k8s::kStatus) {
      absl::StatusOr<int> code = k8s::ParseExitStatus(std::string_view(payload, n));
      if (!code.ok()) {
        return absl::Status(
            code.status().code(),
            absl::StrCat("direct exec: ", code.status().message(), "; stderr: ", stderr_head));
      }
      result.exit_code = *code;
      break;
    }
  }
  // The server closes right after the status; the connection is not reused.
  (*ws)->Abort();
  return result;
}

absl::StatusOr<std::unique_ptr<EdgeSession>> EdgeSession::Open(int port, const std::string& origin,
                                                               const std::string& token,
                                                               const std::string& ns,
                                                               const std::string& pod,
                                                               absl::Duration timeout) {
  http::ClientOptions options;
  options.port = static_cast<uint16_t>(port);
  options.timeout = timeout;
  options.headers.emplace_back("Origin", origin);
  http::ClientResponse refusal;
  auto ws = http::WebSocketClient::Connect(
      options, absl::StrCat("/ws/v1/", ns, "/", pod),
      {"podgate.v1", "base64url.bearer.podgate.v1." + auth::Base64UrlEncode(token)}, &refusal);
  if (!ws.ok()) {
    return absl::Status(ws.status().code(),
                        absl::StrCat("edge v1 handshake: ", ws.status().message(),
                                     refusal.status != 0 ? absl::StrCat(" (HTTP ", refusal.status,
                                                                        ": ", refusal.body, ")")
                                                         : ""));
  }
  absl::StatusOr<http::Message> ready = (*ws)->Read(timeout);
  if (!ready.ok()) {
    return absl::Status(ready.status().code(),
                        absl::StrCat("edge v1: no ready: ", ready.status().message()));
  }
  nlohmann::json j = nlohmann::json::parse(ready->data, nullptr, false);
  if (ready->binary || !j.is_object() || j.value("type", "") != "ready") {
    return absl::FailedPreconditionError(
        absl::StrCat("edge v1: expected ready, got ", ready->data.substr(0, 300)));
  }
  return std::unique_ptr<EdgeSession>(new EdgeSession(*std::move(ws)));
}

absl::StatusOr<CommandResult> EdgeSession::Run(const std::string& line, const std::string& id,
                                               absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  if (absl::Status s =
          ws_->Write(nlohmann::json{{"type", "command"}, {"id", id}, {"line", line}}.dump(), false);
      !s.ok()) {
    return s;
  }
  CommandResult result;
  std::string stderr_head;
  while (true) {
    absl::StatusOr<http::Message> m = ws_->Read(deadline - absl::Now());
    if (!m.ok()) {
      return absl::Status(m.status().code(), absl::StrCat("edge v1: `", line,
                                                          "` did not end: ", m.status().message()));
    }
    if (m->binary) {
      if (m->data.empty()) {
        continue;
      }
      const size_t n = m->data.size() - 1;
      if (m->data[0] == 1) {
        result.stdout_bytes += static_cast<int64_t>(n);
        KeepHead(&result.stdout_head, m->data.data() + 1, n);
      } else {
        KeepHead(&stderr_head, m->data.data() + 1, n);
      }
      continue;
    }
    nlohmann::json j = nlohmann::json::parse(m->data, nullptr, false);
    const std::string type = j.is_object() ? j.value("type", "") : "";
    if (type == "exit") {
      if (j.value("termination", "") != "exited") {
        return absl::InternalError(absl::StrCat("edge v1: `", line, "` ended: ", m->data));
      }
      result.exit_code = j.value("code", -1);
      return result;
    }
    if (type == "denied" || type == "error" || type == "closed") {
      return absl::FailedPreconditionError(
          absl::StrCat("edge v1: `", line, "`: ", m->data, " stderr: ", stderr_head));
    }
  }
}

absl::StatusOr<CommandResult> RunProcess(const std::vector<std::string>& argv,
                                         const std::map<std::string, std::string>& env,
                                         absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  int out[2];
  int err[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    const std::string key = entry.substr(0, entry.find('='));
    if (!absl::StartsWith(key, "PODGATE_") && env.count(key) == 0) {
      env_strings.push_back(std::move(entry));
    }
  }
  for (const auto& [k, v] : env) {
    env_strings.push_back(absl::StrCat(k, "=", v));
  }
  std::vector<char*> envp;
  for (std::string& s : env_strings) {
    envp.push_back(s.data());
  }
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argp;
  for (std::string& s : args) {
    argp.push_back(s.data());
  }
  argp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, argp[0], &actions, &attr, argp.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(out[1]);
  close(err[1]);
  if (spawned != 0) {
    close(out[0]);
    close(err[0]);
    return absl::InternalError(
        absl::StrCat("cannot start ", argv[0], ": ", std::strerror(spawned)));
  }
  CommandResult result;
  std::string stderr_text;
  std::vector<char> buffer(1 << 20);
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  bool timed_out = false;
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    const int64_t wait_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (wait_ms <= 0) {
      timed_out = true;
      break;
    }
    const int ready = poll(fds, 2, static_cast<int>(std::min<int64_t>(wait_ms, 1000)));
    if (ready < 0 && errno != EINTR) {
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) {
        continue;
      }
      const ssize_t n = read(fds[i].fd, buffer.data(), buffer.size());
      if (n <= 0) {
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
          continue;
        }
        close(fds[i].fd);
        fds[i].fd = -1;
        continue;
      }
      if (i == 0) {
        result.stdout_bytes += n;
        KeepHead(&result.stdout_head, buffer.data(), static_cast<size_t>(n));
      } else if (stderr_text.size() < 64 * 1024) {
        stderr_text.append(buffer.data(), static_cast<size_t>(n));
      }
    }
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) {
      close(p.fd);
    }
  }
  if (timed_out) {
    kill(pid, SIGKILL);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(argv[0], " did not finish within ",
                                                    absl::FormatDuration(timeout),
                                                    "; stderr: ", stderr_text));
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (result.exit_code != 0) {
    return absl::InternalError(absl::StrCat(argv[0], " exited with ", result.exit_code,
                                            "; stderr: ", stderr_text.substr(0, 2000)));
  }
  return result;
}

}  // namespace podgate::bench
