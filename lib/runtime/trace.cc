#include "runtime/trace.h"

#include <openssl/rand.h>
#include <pthread.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace podgate::runtime {
namespace {

constexpr char kHex[] = "0123456789abcdef";

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// Whether `s` is exactly `length` lowercase hex digits.
bool LowerHex(std::string_view s, size_t length) {
  if (s.size() != length) {
    return false;
  }
  for (char c : s) {
    if (!IsLowerHex(c)) {
      return false;
    }
  }
  return true;
}

bool AllZero(std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; }

int HexValue(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

// Trace and span ids are correlation ids, not secrets: they travel in headers and log lines.
// A RAND_bytes call costs about 1.8 us whatever its length (OpenSSL's DRBG takes its lock and
// checks for a fork on every call), and every traced call makes one or two ids, so they are cut
// from a per-thread pool of kPoolBytes drawn from RAND_bytes at once. A forked child must not
// take the ids its parent takes next: a pthread_atfork handler bumps a generation, and a pool of
// an older generation is drawn again. Secrets (session ids, resume tokens: runtime/ids.h) keep
// drawing from RAND_bytes each time.
constexpr size_t kPoolBytes = 512;
std::atomic<uint64_t> fork_generation{0};

struct RandomPool {
  unsigned char bytes[kPoolBytes];
  size_t used = kPoolBytes;  // empty until its first draw
  uint64_t generation = 0;
};

void DrawRandom(unsigned char* out, size_t n) {
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr,
                   [] { fork_generation.fetch_add(1, std::memory_order_relaxed); });
    return true;
  }();
  (void)registered;
  thread_local RandomPool pool;
  const uint64_t generation = fork_generation.load(std::memory_order_relaxed);
  if (pool.generation != generation || kPoolBytes - pool.used < n) {
    if (RAND_bytes(pool.bytes, static_cast<int>(kPoolBytes)) != 1) {
      std::abort();  // no randomness: ids would collide
    }
    pool.used = 0;
    pool.generation = generation;
  }
  std::memcpy(out, pool.bytes + pool.used, n);
  std::memset(pool.bytes + pool.used, 0, n);  // an id handed out is not kept
  pool.used += n;
}

// `bytes` (at most 16) random bytes as lowercase hex; retried until not all zero (an all-zero id
// is invalid).
std::string RandomHex(size_t bytes) {
  unsigned char buf[16];
  std::string out;
  do {
    DrawRandom(buf, bytes);
    out.clear();
    for (size_t i = 0; i < bytes; ++i) {
      out.push_back(kHex[buf[i] >> 4]);
      out.push_back(kHex[buf[i] & 0xF]);
    }
  } while (AllZero(out));
  return out;
}

absl::Status Invalid(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("traceparent: ", std::string(what)));
}

}  // namespace

bool TraceContext::valid() const {
  return LowerHex(trace_id, 32) && !AllZero(trace_id) && LowerHex(span_id, 16) && !AllZero(span_id);
}

std::string TraceContext::Header() const {
  const uint8_t f = flags & 0x01;
  return absl::StrCat("00-", trace_id, "-", span_id, "-", std::string(1, kHex[f >> 4]),
                      std::string(1, kHex[f & 0xF]));
}

absl::StatusOr<TraceContext> ParseTraceparent(std::string_view value) {
  if (value.size() > kMaxTraceparentLength) {
    return Invalid(absl::StrCat("longer than ", kMaxTraceparentLength, " characters"));
  }
  // version(2) '-' trace-id(32) '-' parent-id(16) '-' flags(2): 55 characters.
  constexpr size_t kLength = 55;
  if (value.size() < 2 || !LowerHex(value.substr(0, 2), 2)) {
    return Invalid("the version is not two lowercase hex digits");
  }
  const std::string_view version = value.substr(0, 2);
  if (version == "ff") {
    return Invalid("version ff is invalid");
  }
  if (value.size() < kLength) {
    return Invalid(absl::StrCat("too short (", value.size(), " characters, want 55)"));
  }
  if (version == "00" && value.size() != kLength) {
    return Invalid(absl::StrCat("version 00 is 55 characters, not ", value.size()));
  }
  // A future version may append fields after a '-'; only the first four are read.
  if (value.size() > kLength && value[kLength] != '-') {
    return Invalid("a future version's extra fields must follow a '-'");
  }
  if (value[2] != '-' || value[35] != '-' || value[52] != '-') {
    return Invalid("fields are not separated by '-'");
  }
  TraceContext trace;
  const std::string_view trace_id = value.substr(3, 32);
  const std::string_view parent_id = value.substr(36, 16);
  const std::string_view flags = value.substr(53, 2);
  if (!LowerHex(trace_id, 32)) {
    return Invalid("the trace-id is not 32 lowercase hex digits");
  }
  if (AllZero(trace_id)) {
    return Invalid("the trace-id is all zeros");
  }
  if (!LowerHex(parent_id, 16)) {
    return Invalid("the parent-id is not 16 lowercase hex digits");
  }
  if (AllZero(parent_id)) {
    return Invalid("the parent-id is all zeros");
  }
  if (!LowerHex(flags, 2)) {
    return Invalid("the trace-flags are not two lowercase hex digits");
  }
  trace.trace_id = std::string(trace_id);
  trace.span_id = std::string(parent_id);
  trace.flags = static_cast<uint8_t>(HexValue(flags[0]) * 16 + HexValue(flags[1]));
  return trace;
}

TraceContext NewTrace() {
  TraceContext trace;
  trace.trace_id = RandomHex(16);
  trace.span_id = RandomHex(8);
  return trace;
}

std::string NewSpanId() { return RandomHex(8); }

bool IsTraceId(std::string_view text) { return LowerHex(text, 32) && !AllZero(text); }

TraceContext ChildSpan(const TraceContext& parent) {
  TraceContext child;
  child.trace_id = parent.trace_id;
  child.span_id = NewSpanId();
  child.flags = parent.flags & 0x01;
  return child;
}

TraceContext ContinueOrStart(std::string_view incoming, std::string* error) {
  if (error != nullptr) {
    error->clear();
  }
  if (incoming.empty()) {
    return NewTrace();
  }
  absl::StatusOr<TraceContext> parent = ParseTraceparent(incoming);
  if (!parent.ok()) {
    if (error != nullptr) {
      *error = std::string(parent.status().message());
    }
    return NewTrace();
  }
  return ChildSpan(*parent);
}

}  // namespace podgate::runtime
