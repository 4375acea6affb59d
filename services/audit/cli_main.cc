// podgate-audit-cli: queries and verifies a running podgate audit service.
//
//   podgate-audit-cli [--server=host:port] query [--user=alice,bob] [--namespace=shop] ...
//   podgate-audit-cli [--server=host:port] verify [--chain_id=ID]
//       [--checkpoint=FILE,... --public_key=KEY.pem,...] [--max_unsigned_records=N]
//   podgate-audit-cli [--server=host:port] tail [-f|--follow] [--lines=10] [query filters]
//   podgate-audit-cli [--server=host:port] checkpoint >> checkpoints.jsonl
//
// tail -f prints new records as they are committed until interrupted (SIGINT or SIGTERM end
// it cleanly, exit 0).
//
// Exit status: 0 success (verify: every chain intact and attested), 1 verify found a problem,
// 2 usage or connection error.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "audit/cli.h"
#include "runtime/flags.h"
#include "runtime/tls.h"

ABSL_FLAG(std::string, server, "127.0.0.1:7103",
          "The audit service's gRPC address. Default 127.0.0.1:7103.");
ABSL_FLAG(absl::Duration, connect_timeout, absl::Seconds(10),
          "How long to wait for a connection to --server, trying again after a refused or "
          "broken attempt, before the command fails with the last attempt's reason (0: one "
          "attempt). Default 10s.");
ABSL_FLAG(absl::Duration, timeout, absl::Minutes(10),
          "The longest one call may take: a verify, a checkpoint, a page of query, tail without "
          "--follow (tail --follow runs until interrupted). 0: no limit. Default 10m.");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA bundle of the server's certificate; empty: plaintext.");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate for mutual TLS. Default: none.");
ABSL_FLAG(std::string, tls_key, "", "PEM key of --tls_cert. Default: none.");
ABSL_FLAG(std::vector<std::string>, user, {}, "query: principal user names, comma separated.");
ABSL_FLAG(std::vector<std::string>, user_prefix, {},
          "query: prefixes of principal user names, comma separated (with --user: any of them).");
ABSL_FLAG(std::vector<std::string>, group, {}, "query: principal groups, comma separated.");
ABSL_FLAG(std::vector<std::string>, cluster, {},
          "query: target clusters (\"\" selects events from an exec before clusters).");
ABSL_FLAG(std::vector<std::string>, namespace, {}, "query: target namespaces.");
ABSL_FLAG(std::vector<std::string>, pod, {}, "query: target pods.");
ABSL_FLAG(std::vector<std::string>, container, {}, "query: target containers.");
ABSL_FLAG(std::vector<std::string>, kind, {},
          "query: event kinds, e.g. command_request,decision,command_result.");
ABSL_FLAG(std::vector<std::string>, verdict, {}, "query: allow and/or deny.");
ABSL_FLAG(std::vector<std::string>, rule, {}, "query: deciding rule ids.");
ABSL_FLAG(std::vector<std::string>, session, {}, "query: session ids.");
ABSL_FLAG(std::vector<std::string>, trace_id, {},
          "query: W3C trace ids (32 hex digits, as edge's traceresponse header names them).");
ABSL_FLAG(std::string, since, "", "query: events at or after this RFC 3339 time.");
ABSL_FLAG(std::string, until, "", "query: events before this RFC 3339 time.");
ABSL_FLAG(std::string, argv_contains, "", "query: text the command line or argv contains.");
ABSL_FLAG(int64_t, limit, 100, "query: the most records printed; 0 prints all. Default 100.");
ABSL_FLAG(bool, newest_first, false, "query: newest records first. Default false.");
ABSL_FLAG(std::string, format, "table", "query: table or json (JSON lines). Default table.");
ABSL_FLAG(bool, follow, false,
          "tail: after the last --lines records, print new ones as they are committed until "
          "interrupted. Default false.");
ABSL_FLAG(bool, f, false, "tail: the same as --follow.");
ABSL_FLAG(int32_t, lines, 10,
          "tail: how many of the newest records to print first (1 to 1000). "
          "Default 10.");
ABSL_FLAG(std::string, chain_id, "", "verify: one chain; empty checks every chain.");
ABSL_FLAG(std::vector<std::string>, checkpoint, {},
          "verify: files of signed checkpoints (JSON lines: audit's --checkpoint_state file, a "
          "file sink's output, `checkpoint` output), comma separated; needs --public_key. "
          "Default none.");
ABSL_FLAG(std::vector<std::string>, public_key, {},
          "verify: PEM Ed25519 public keys of the audit replicas (openssl pkey -pubout), comma "
          "separated; checkpoints and retention cuts must be signed by one. Default none.");
ABSL_FLAG(int64_t, max_unsigned_records, 0,
          "verify: records a chain may hold after its newest signed checkpoint. Default 0.");

namespace {

[[noreturn]] void Fail(const std::string& message) {
  std::cerr << "podgate-audit-cli: " << message << "\n";
  std::exit(2);
}

template <typename T>
T OrFail(absl::StatusOr<T> value) {
  if (!value.ok()) {
    Fail(std::string(value.status().message()));
  }
  return *std::move(value);
}

}  // namespace

int main(int argc, char** argv) {
  namespace cli = podgate::audit::cli;
  std::vector<char*> args = podgate::runtime::ParseFlags(
      argc, argv,
      "podgate-audit-cli [flags] query|verify|checkpoint: queries (table or JSON lines), "
      "verifies and checkpoints a podgate audit service.\nEvery flag may also be set as "
      "PODGATE_<FLAG>.");
  if (args.size() != 2) {
    Fail("expected one command: query, tail, verify or checkpoint (see --help)");
  }
  const std::string command = args[1];
  const bool follow = command == "tail" && (absl::GetFlag(FLAGS_follow) || absl::GetFlag(FLAGS_f));
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  if (follow) {
    // Before any thread starts (gRPC's inherit the mask): the signals wait for sigwait below.
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  }
  podgate::runtime::ChannelTlsOptions tls;
  tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  tls.key_file = absl::GetFlag(FLAGS_tls_key);
  const absl::Duration connect_timeout = absl::GetFlag(FLAGS_connect_timeout);
  if (connect_timeout < absl::ZeroDuration()) {
    Fail("--connect_timeout: must be 0 or more");
  }
  absl::Duration timeout = absl::GetFlag(FLAGS_timeout);
  if (timeout < absl::ZeroDuration()) {
    Fail("--timeout: must be 0 (no limit) or more");
  }
  if (timeout == absl::ZeroDuration()) {
    timeout = absl::InfiniteDuration();
  }
  auto channel = OrFail(podgate::runtime::CreateServiceChannel(absl::GetFlag(FLAGS_server), tls));
  auto stub = podgate::audit::v1::AuditService::NewStub(channel);
  // Called once the command's flags are checked: a usage error does not wait for the server.
  // Not ready by the deadline: the first call fails and says why.
  auto connect = [&] {
    podgate::runtime::WaitForChannelReady(*channel, absl::Now() + connect_timeout);
  };

  if (command == "verify") {
    cli::VerifyFlags flags;
    flags.chain_id = absl::GetFlag(FLAGS_chain_id);
    flags.checkpoint_files = absl::GetFlag(FLAGS_checkpoint);
    flags.public_key_files = absl::GetFlag(FLAGS_public_key);
    flags.max_unsigned_records = absl::GetFlag(FLAGS_max_unsigned_records);
    flags.timeout = timeout;
    connect();
    const bool intact = OrFail(cli::RunVerify(*stub, flags, std::cout));
    return intact ? 0 : 1;
  }
  if (command == "checkpoint") {
    connect();
    OrFail(cli::RunCheckpoint(*stub, std::cout, timeout));
    return 0;
  }
  if (command != "query" && command != "tail") {
    Fail(absl::StrCat("unknown command \"", command,
                      "\": expected query, tail, verify or checkpoint"));
  }
  podgate::audit::v1::QueryRequest request;
  for (const auto& v : absl::GetFlag(FLAGS_user)) request.add_users(v);
  for (const auto& v : absl::GetFlag(FLAGS_user_prefix)) request.add_user_prefixes(v);
  for (const auto& v : absl::GetFlag(FLAGS_group)) request.add_groups(v);
  for (const auto& v : absl::GetFlag(FLAGS_cluster)) request.add_clusters(v);
  for (const auto& v : absl::GetFlag(FLAGS_namespace)) request.add_namespaces(v);
  for (const auto& v : absl::GetFlag(FLAGS_pod)) request.add_pods(v);
  for (const auto& v : absl::GetFlag(FLAGS_container)) request.add_containers(v);
  for (const auto& v : absl::GetFlag(FLAGS_kind)) request.add_kinds(OrFail(cli::ParseKind(v)));
  for (const auto& v : absl::GetFlag(FLAGS_verdict)) {
    request.add_verdicts(OrFail(cli::ParseVerdict(v)));
  }
  for (const auto& v : absl::GetFlag(FLAGS_rule)) request.add_rules(v);
  for (const auto& v : absl::GetFlag(FLAGS_trace_id)) request.add_trace_ids(v);
  for (const auto& v : absl::GetFlag(FLAGS_session)) request.add_session_ids(v);
  if (!absl::GetFlag(FLAGS_since).empty()) {
    *request.mutable_start_time() = OrFail(cli::ParseTime(absl::GetFlag(FLAGS_since)));
  }
  if (!absl::GetFlag(FLAGS_until).empty()) {
    *request.mutable_end_time() = OrFail(cli::ParseTime(absl::GetFlag(FLAGS_until)));
  }
  request.set_argv_contains(absl::GetFlag(FLAGS_argv_contains));
  if (command == "tail") {
    const cli::Format format = OrFail(cli::ParseFormat(absl::GetFlag(FLAGS_format)));
    if (absl::Status s = cli::CheckLines(absl::GetFlag(FLAGS_lines)); !s.ok()) {
      Fail(std::string(s.message()));
    }
    grpc::ClientContext ctx;
    static std::atomic<bool> calling{false};
    if (!follow) {
      cli::SetTimeout(ctx, timeout);
    } else {
      // The signal ends the call; RunTail then returns normally. While still connecting there
      // is no call to end: the command stops there (exit 130, as for an interrupt).
      std::thread([&ctx, stop_signals] {
        int signal = 0;
        sigwait(&stop_signals, &signal);
        if (!calling.load()) {
          std::_Exit(130);
        }
        ctx.TryCancel();  // before the call starts too: gRPC cancels it when it does
      }).detach();
    }
    connect();
    calling.store(true);
    OrFail(
        cli::RunTail(*stub, request, absl::GetFlag(FLAGS_lines), follow, format, std::cout, &ctx));
    std::exit(0);  // the signal thread may still wait; no destructors race it
  }
  request.set_newest_first(absl::GetFlag(FLAGS_newest_first));
  const int64_t limit = absl::GetFlag(FLAGS_limit);
  if (limit < 0) {
    Fail("--limit: must be 0 (all) or more");
  }
  request.set_page_size(static_cast<int32_t>(limit > 0 && limit < 1000 ? limit : 1000));
  const cli::Format format = OrFail(cli::ParseFormat(absl::GetFlag(FLAGS_format)));
  connect();
  OrFail(cli::RunQuery(*stub, request, limit, format, std::cout, timeout));
  return 0;
}
