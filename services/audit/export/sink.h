// An export sink: one destination that stored audit records (and signed checkpoints) are
// delivered to, at least once and in chain order. The exporter (exporter.h) owns the cursor, the
// batching, the retries and the metrics; a sink only delivers one batch at a time.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "podgate/audit/v1/audit.pb.h"
#include "podgate/audit/v1/export.pb.h"

namespace podgate::audit::exporting {

// One thing to deliver: a stored record, or a signed checkpoint of a chain's head.
struct ExportItem {
  enum class Kind { kRecord, kCheckpoint };
  Kind kind = Kind::kRecord;
  // Set when kind is kRecord.
  podgate::audit::v1::AuditRecord record;
  // Set when kind is kCheckpoint.
  podgate::audit::v1::SignedCheckpoint checkpoint;
};

// The outcome of one delivery.
struct DeliveryResult {
  // OK: every item of the batch is delivered (the receiver has it). Otherwise the whole batch is
  // retried later (at least once): UNAVAILABLE / DEADLINE_EXCEEDED for a receiver that is down,
  // slow or answering an error; other codes for a permanent problem (still retried, and logged
  // as such).
  absl::Status status;
  // A delay the receiver asked for (Retry-After); zero when none.
  absl::Duration retry_after;
  // The bytes an OK delivery put on the wire; used by sinks with an unconfirmed window.
  size_t bytes = 0;
};

class Sink {
 public:
  virtual ~Sink() = default;

  // Delivers `batch` (never empty; in chain order within each chain). Called on the sink's own
  // exporter thread, one batch at a time; may block up to the sink's timeout. Must not throw.
  virtual DeliveryResult Deliver(absl::Span<const ExportItem> batch) = 0;

  // Stops a Deliver in progress as soon as possible (called from another thread at shutdown);
  // that Deliver then returns an error. Optional.
  virtual void Cancel() {}

  // How many of the newest delivered bytes the receiver may have acknowledged without having
  // processed them (syslog over TCP: its replay window). 0 (the default): an OK delivery is
  // final. Otherwise the exporter keeps the stored cursor behind at least that many bytes of
  // delivered batches, so that the next process or replica re-sends them: what the sink re-sends
  // after a broken connection then survives a crash of audit or a lease hand-over too.
  virtual size_t UnconfirmedWindowBytes() const { return 0; }
};

// The JSON line of an item (no trailing newline): an AuditRecord's protobuf JSON (field names as
// in the proto, e.g. "chainId", with "type":"record"), or a SignedCheckpoint's with
// "type":"checkpoint". Shared by the file, webhook and syslog sinks so every receiver sees the
// same document.
std::string ItemJson(const ExportItem& item);

// The sinks each kind provides; each checks its own settings and names the problem ("sink
// siem: syslog address: ...").
absl::StatusOr<std::unique_ptr<Sink>> MakeWebhookSink(const podgate::audit::v1::SinkConfig& config);
absl::StatusOr<std::unique_ptr<Sink>> MakeSyslogSink(const podgate::audit::v1::SinkConfig& config);
absl::StatusOr<std::unique_ptr<Sink>> MakeFileSink(const podgate::audit::v1::SinkConfig& config);

}  // namespace podgate::audit::exporting
