// The webhook sink: each batch is one HTTP(S) POST of {"items":[ItemJson...]} to a URL, with a
// bearer token read from a file (re-read when the file changes) and an idempotency header
// (Podgate-Batch-Id) so a receiver can drop a batch it already has. The receiver's answer maps
// to a DeliveryResult (see MakeWebhookSink in sink.h for the factory); the exporter retries.
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "audit/export/sink.h"

namespace podgate::audit::exporting {

// The longest Retry-After honoured; a longer one is cut to this.
inline constexpr absl::Duration kMaxRetryAfter = absl::Minutes(10);

// A Retry-After header value as a delay from `now`: delta-seconds ("120") or an HTTP-date
// ("Wed, 21 Oct 2026 07:28:00 GMT", also the obsolete RFC 850 and asctime forms), capped at
// kMaxRetryAfter. Zero when empty, unparseable or in the past.
absl::Duration ParseRetryAfter(absl::string_view value, absl::Time now);

// The Podgate-Batch-Id of a batch: "<first item>..<last item>", an item being
// "<chain>/<sequence>" for a record and "<chain>/<sequence>/checkpoint" for a checkpoint (the
// chain percent-encoded). The same items give the same id, whenever they are sent.
std::string BatchId(absl::Span<const ExportItem> batch);

// The request body: {"items":[<ItemJson(item)>,...]}.
std::string BatchJson(absl::Span<const ExportItem> batch);

}  // namespace podgate::audit::exporting
