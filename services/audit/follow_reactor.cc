#include "audit/follow_reactor.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "wire/status.h"

namespace podgate::audit {

absl::Status ValidateFollow(const podgate::audit::v1::QueryRequest& request) {
  if (!request.page_token().empty()) {
    return absl::InvalidArgumentError(
        "page_token: a follow has no pages; it starts with the last page_size records");
  }
  if (request.newest_first()) {
    return absl::InvalidArgumentError(
        "newest_first: a follow sends records oldest first (new ones last); leave it false");
  }
  if (request.has_end_time()) {
    return absl::InvalidArgumentError(
        "end_time: a follow never ends, so an end time excludes every new record; use a plain "
        "query");
  }
  return absl::OkStatus();
}

FollowReactor::FollowReactor(FollowHub* hub, Store* store, Executor* executor,
                             AuditMetrics* metrics, const podgate::audit::v1::QueryRequest& request)
    : hub_(hub), store_(store), metrics_(metrics), request_(request) {
  absl::Status valid = ValidateFollow(request_);
  if (valid.ok()) {
    valid = ValidateQuery(request_).status();
  }
  if (!valid.ok()) {
    Finish(wire::ToGrpcStatus(valid));
    return;
  }
  if (absl::Status reserved = hub_->Reserve(); !reserved.ok()) {
    Finish(wire::ToGrpcStatus(reserved));
    return;
  }
  reserved_ = true;
  if (!executor->TrySubmit([this] { Start(); })) {
    metrics_->Error("executor_full").Increment();
    Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "too many queries in progress; retry later"));
  }
}

void FollowReactor::Start() {
  absl::StatusOr<ChainCursors> cursors = hub_->Register(this);
  std::deque<podgate::audit::v1::QueryResponse> backlog;
  absl::Status failed;
  if (!cursors.ok()) {
    failed = cursors.status();
  } else {
    registered_ = true;
    // The last page_size matching records, cut at the cursors: what is newer comes live.
    podgate::audit::v1::QueryRequest last = request_;
    last.set_newest_first(true);
    last.set_follow(false);
    absl::StatusOr<QueryPage> page = store_->Query(last);
    if (!page.ok()) {
      failed = page.status();
    } else {
      for (auto& record : page->records) {
        auto cursor = cursors->find(record.chain_id());
        if (cursor != cursors->end() && record.sequence() <= cursor->second) {
          backlog.emplace_front().set_allocated_record(
              new podgate::audit::v1::AuditRecord(std::move(record)));
        }
      }
      backlog.emplace_back().mutable_page_end();
    }
  }
  absl::MutexLock lock(&mu_);
  started_ = true;
  if (!failed.ok()) {
    metrics_->Error("query_failed").Increment();
    FinishLocked(wire::ToGrpcStatus(failed));
    return;
  }
  backlog_ = std::move(backlog);
  if (pending_finish_.has_value()) {
    FinishLocked(*pending_finish_);
    return;
  }
  WriteNextLocked();
}

void FollowReactor::Deliver(const podgate::audit::v1::AuditRecord& record) {
  absl::MutexLock lock(&mu_);
  if (finished_ || pending_finish_.has_value()) {
    return;
  }
  if (live_.size() >= hub_->options().queue_records) {
    metrics_->followers_dropped().Increment();
    live_.clear();
    FinishLocked(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("the follower fell behind: ", hub_->options().queue_records,
                     " new records were waiting to be sent; follow again (and read faster)")));
    return;
  }
  live_.push_back(record);
  if (started_ && !write_in_flight_) {
    WriteNextLocked();
  }
}

void FollowReactor::EndForDrain() {
  absl::MutexLock lock(&mu_);
  FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "the audit server is shutting down; follow again"));
}

void FollowReactor::OnCancel() {
  absl::MutexLock lock(&mu_);
  FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
}

void FollowReactor::FinishLocked(grpc::Status status) {
  if (finished_) {
    return;
  }
  if (!started_ || write_in_flight_) {
    if (!pending_finish_.has_value()) {
      pending_finish_ = std::move(status);
    }
    return;
  }
  finished_ = true;
  Finish(std::move(status));
}

void FollowReactor::WriteNextLocked() {
  message_.Clear();
  if (!backlog_.empty()) {
    message_ = std::move(backlog_.front());
    backlog_.pop_front();
  } else if (!live_.empty()) {
    *message_.mutable_record() = std::move(live_.front());
    live_.pop_front();
  } else {
    return;
  }
  if (message_.has_record()) {
    metrics_->follow_records_sent().Increment();
  }
  write_in_flight_ = true;
  StartWrite(&message_);
}

void FollowReactor::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  write_in_flight_ = false;
  if (!ok) {
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    return;
  }
  if (pending_finish_.has_value()) {
    FinishLocked(*pending_finish_);
    return;
  }
  WriteNextLocked();
}

void FollowReactor::OnDone() {
  if (registered_) {
    hub_->Unregister(this);
  }
  if (reserved_) {
    hub_->Release();
  }
  delete this;
}

}  // namespace podgate::audit
