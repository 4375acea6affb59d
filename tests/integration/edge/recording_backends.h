// exec, policy and audit as clients see them over real gRPC, answering with canned data and
// recording every request they receive. For the tests of what a client (edge, podgate-run)
// passes on, such as a target's cluster, while the real services do not yet act on it: the
// request that crossed the wire is the evidence.
//
// One in-process gRPC server on 127.0.0.1, port 0, serving the three services; their gRPC
// health service answers SERVING so that edge's readiness holds.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "podgate/audit/v1/audit.grpc.pb.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "podgate/policy/v1/policy.grpc.pb.h"

namespace podgate::testing {

class RecordingBackends {
 public:
  // What the fake exec answers ListTargets with (whatever the request asked for); and what
  // it names an empty Target.cluster in `ready` (empty: it echoes the target as asked, as an
  // exec from before clusters did).
  struct Config {
    podgate::exec::v1::ListTargetsResponse targets;
    std::string default_cluster;
  };

  static std::unique_ptr<RecordingBackends> Start(Config config);
  ~RecordingBackends();

  std::string address() const;

  // Every request received, oldest first.
  std::vector<podgate::exec::v1::ListTargetsRequest> list_targets() const;
  std::vector<podgate::exec::v1::OpenSession> session_opens() const;
  std::vector<podgate::policy::v1::ListAllowedRequest> list_allowed() const;
  std::vector<podgate::audit::v1::QueryRequest> audit_queries() const;

  // Waits until `session_opens()` has at least `n` entries.
  bool WaitForOpenSessions(size_t n, absl::Duration timeout) const;

  // Called by the services.
  struct Records;

 private:
  RecordingBackends() = default;

  std::shared_ptr<Records> records_;
  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace podgate::testing
