#include "integration/edge/recording_backends.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/health_check_service_interface.h"

namespace podgate::testing {

namespace ev1 = podgate::exec::v1;
namespace pv1 = podgate::policy::v1;
namespace av1 = podgate::audit::v1;

struct RecordingBackends::Records {
  mutable absl::Mutex mu;
  Config config;
  std::vector<ev1::ListTargetsRequest> list_targets ABSL_GUARDED_BY(mu);
  std::vector<ev1::OpenSession> session_opens ABSL_GUARDED_BY(mu);
  std::vector<pv1::ListAllowedRequest> list_allowed ABSL_GUARDED_BY(mu);
  std::vector<av1::QueryRequest> audit_queries ABSL_GUARDED_BY(mu);
};

namespace {

// Synchronous handlers: each holds one of gRPC's threads only for a test's few calls.
class FakeExec final : public ev1::ExecService::Service {
 public:
  explicit FakeExec(std::shared_ptr<RecordingBackends::Records> records)
      : records_(std::move(records)) {}

  grpc::Status ListTargets(grpc::ServerContext*, const ev1::ListTargetsRequest* request,
                           ev1::ListTargetsResponse* response) override {
    absl::MutexLock lock(&records_->mu);
    records_->list_targets.push_back(*request);
    *response = records_->config.targets;
    return grpc::Status::OK;
  }

  grpc::Status Session(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<ev1::SessionResponse, ev1::SessionRequest>* stream) override {
    ev1::SessionRequest request;
    if (!stream->Read(&request) || !request.has_open()) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "the first message must be open"};
    }
    std::string default_cluster;
    {
      absl::MutexLock lock(&records_->mu);
      records_->session_opens.push_back(request.open());
      default_cluster = records_->config.default_cluster;
    }
    ev1::SessionResponse ready;
    ev1::SessionReady* r = ready.mutable_ready();
    r->set_session_id(absl::StrCat("fake-", reinterpret_cast<uintptr_t>(stream)));
    r->mutable_principal()->set_user("recorded");
    *r->mutable_target() = request.open().target();
    if (r->target().cluster().empty()) {
      r->mutable_target()->set_cluster(default_cluster);
    }
    if (r->target().container().empty()) {
      r->mutable_target()->set_container("app");
    }
    r->set_mode(request.open().mode());
    stream->Write(ready);
    // Until the client ends the stream; commands are not run.
    while (stream->Read(&request)) {
      if (request.has_close()) {
        ev1::SessionResponse closed;
        closed.mutable_closed()->set_reason(podgate::common::v1::CLOSE_REASON_CLIENT);
        stream->Write(closed);
        break;
      }
    }
    return grpc::Status::OK;
  }

 private:
  std::shared_ptr<RecordingBackends::Records> records_;
};

class FakePolicy final : public pv1::PolicyService::Service {
 public:
  explicit FakePolicy(std::shared_ptr<RecordingBackends::Records> records)
      : records_(std::move(records)) {}

  grpc::Status ListAllowed(grpc::ServerContext*, const pv1::ListAllowedRequest* request,
                           pv1::ListAllowedResponse*) override {
    absl::MutexLock lock(&records_->mu);
    records_->list_allowed.push_back(*request);
    return grpc::Status::OK;
  }

 private:
  std::shared_ptr<RecordingBackends::Records> records_;
};

class FakeAudit final : public av1::AuditService::Service {
 public:
  explicit FakeAudit(std::shared_ptr<RecordingBackends::Records> records)
      : records_(std::move(records)) {}

  grpc::Status Query(grpc::ServerContext*, const av1::QueryRequest* request,
                     grpc::ServerWriter<av1::QueryResponse>* writer) override {
    {
      absl::MutexLock lock(&records_->mu);
      records_->audit_queries.push_back(*request);
    }
    av1::QueryResponse end;
    end.mutable_page_end();
    writer->Write(end);
    return grpc::Status::OK;
  }

  // Acknowledges every event (edge records authentication failures).
  grpc::Status Record(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<av1::RecordResponse, av1::RecordRequest>* stream) override {
    av1::RecordRequest request;
    while (stream->Read(&request)) {
      av1::RecordResponse ack;
      ack.mutable_ack()->add_ids(request.event().id());
      stream->Write(ack);
    }
    return grpc::Status::OK;
  }

 private:
  std::shared_ptr<RecordingBackends::Records> records_;
};

}  // namespace

std::unique_ptr<RecordingBackends> RecordingBackends::Start(Config config) {
  std::unique_ptr<RecordingBackends> b(new RecordingBackends());
  b->records_ = std::make_shared<Records>();
  b->records_->config = std::move(config);
  b->services_.push_back(std::make_unique<FakeExec>(b->records_));
  b->services_.push_back(std::make_unique<FakePolicy>(b->records_));
  b->services_.push_back(std::make_unique<FakeAudit>(b->records_));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &b->port_);
  for (auto& s : b->services_) {
    builder.RegisterService(s.get());
  }
  b->server_ = builder.BuildAndStart();
  if (b->server_ == nullptr || b->port_ == 0) {
    return nullptr;
  }
  return b;
}

RecordingBackends::~RecordingBackends() {
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
}

std::string RecordingBackends::address() const { return absl::StrCat("127.0.0.1:", port_); }

std::vector<ev1::ListTargetsRequest> RecordingBackends::list_targets() const {
  absl::MutexLock lock(&records_->mu);
  return records_->list_targets;
}

std::vector<ev1::OpenSession> RecordingBackends::session_opens() const {
  absl::MutexLock lock(&records_->mu);
  return records_->session_opens;
}

std::vector<pv1::ListAllowedRequest> RecordingBackends::list_allowed() const {
  absl::MutexLock lock(&records_->mu);
  return records_->list_allowed;
}

std::vector<av1::QueryRequest> RecordingBackends::audit_queries() const {
  absl::MutexLock lock(&records_->mu);
  return records_->audit_queries;
}

bool RecordingBackends::WaitForOpenSessions(size_t n, absl::Duration timeout) const {
  absl::MutexLock lock(&records_->mu);
  auto enough = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(records_->mu) {
    return records_->session_opens.size() >= n;
  };
  return records_->mu.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

}  // namespace podgate::testing
