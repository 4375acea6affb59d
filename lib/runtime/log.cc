#include "runtime/log.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpc/support/log.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/base_sink.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"
#include "text/utf8.h"

namespace podgate::log {
namespace {

struct LoggerState {
  std::mutex mu;
  std::shared_ptr<spdlog::logger> logger;
  std::string service_json = "\"podgate\"";
  // The buffered writer Init set up (null before, and for InitForTest).
  std::shared_ptr<LineWriter> writer;
  bool exit_flush_registered = false;
};

LoggerState& State() {
  static auto* state = new LoggerState();
  return *state;
}

spdlog::level::level_enum ToSpd(Level level) {
  switch (level) {
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

// Each line: time and level from spdlog's pattern, the rest (already JSON) as the payload.
constexpr char kPattern[] = R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v})";

std::shared_ptr<spdlog::logger> MakeLogger(spdlog::sink_ptr sink, Level level) {
  auto logger = std::make_shared<spdlog::logger>("podgate", std::move(sink));
  logger->set_formatter(
      std::make_unique<spdlog::pattern_formatter>(kPattern, spdlog::pattern_time_type::utc));
  logger->set_level(ToSpd(level));
  logger->flush_on(spdlog::level::trace);
  return logger;
}

// gRPC's own messages become JSON lines too. They go out at debug level: the ones that
// matter surface through podgate's own errors, and the rest (a client's failed handshake)
// would let any peer flood the log.
void GrpcLog(gpr_log_func_args* args) {
  Debug(args->message, {{"component", "grpc"},
                        {"file", args->file != nullptr ? args->file : ""},
                        {"line", args->line},
                        {"grpc_severity", gpr_log_severity_string(args->severity)}});
}

std::string ServiceJson(std::string_view service) {
  std::string json;
  AppendJsonString(service, &json);
  return json;
}

// `service_json`: the service's name as a JSON string literal.
void Install(std::string service_json, Level level, spdlog::sink_ptr sink,
             std::shared_ptr<LineWriter> writer) {
  gpr_set_log_function(&GrpcLog);
  std::shared_ptr<spdlog::logger> logger = MakeLogger(std::move(sink), level);
  LoggerState& state = State();
  std::shared_ptr<LineWriter> previous;
  {
    std::lock_guard<std::mutex> lock(state.mu);
    state.logger = std::move(logger);
    state.service_json = std::move(service_json);
    previous = std::exchange(state.writer, std::move(writer));
  }
  // `previous` (a test's earlier Init) flushes and stops once no logger holds it any more.
}

// The buffered writer Init set up, or null.
std::shared_ptr<LineWriter> CurrentWriter() {
  LoggerState& state = State();
  std::lock_guard<std::mutex> lock(state.mu);
  return state.writer;
}

void FlushAtExit() { Flush(absl::Seconds(2)); }

// Hands each formatted line, without its newline, to a function: the buffered writer's Append,
// or a test's capture.
class LineSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit LineSink(std::function<void(std::string_view)> fn) : fn_(std::move(fn)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    std::string_view line(formatted.data(), formatted.size());
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
      line.remove_suffix(1);
    }
    fn_(line);
  }
  void flush_() override {}

 private:
  std::function<void(std::string_view)> fn_;
};

void Write(Level level, std::string_view msg, Fields fields) {
  std::shared_ptr<spdlog::logger> logger;
  std::string payload;
  {
    LoggerState& state = State();
    std::lock_guard<std::mutex> lock(state.mu);
    if (state.logger == nullptr) {
      state.logger =
          MakeLogger(std::make_shared<spdlog::sinks::stderr_sink_mt>(), Level::kInfo);
    }
    logger = state.logger;
    payload = absl::StrCat("\"service\":", state.service_json);
  }
  if (!logger->should_log(ToSpd(level))) {
    return;
  }
  payload.append(",\"msg\":");
  AppendJsonString(msg, &payload);
  for (const Field& field : fields) {
    payload.push_back(',');
    AppendJsonString(field.key(), &payload);
    payload.push_back(':');
    payload.append(field.json());
  }
  logger->log(ToSpd(level), "{}", payload);
}

// Length of the valid UTF-8 sequence at the start of `s`, or 0 when it is not valid.
size_t Utf8SequenceLength(std::string_view s) { return text::DecodeUtf8(s).length; }

}  // namespace

absl::Status ParseLevel(std::string_view text, Level* level) {
  if (text == "debug") {
    *level = Level::kDebug;
  } else if (text == "info") {
    *level = Level::kInfo;
  } else if (text == "warn") {
    *level = Level::kWarn;
  } else if (text == "error") {
    *level = Level::kError;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown log level '", std::string(text), "' (want debug, info, warn or error)"));
  }
  return absl::OkStatus();
}

Field::Field(std::string_view key, std::string_view value) : key_(key) {
  AppendJsonString(value, &json_);
}
Field::Field(std::string_view key, const char* value) : Field(key, std::string_view(value)) {}
Field::Field(std::string_view key, const std::string& value)
    : Field(key, std::string_view(value)) {}
Field::Field(std::string_view key, int64_t value) : key_(key), json_(absl::StrCat(value)) {}
Field::Field(std::string_view key, int value) : key_(key), json_(absl::StrCat(value)) {}
Field::Field(std::string_view key, uint64_t value) : key_(key), json_(absl::StrCat(value)) {}
Field::Field(std::string_view key, double value) : key_(key), json_(absl::StrCat(value)) {}
Field::Field(std::string_view key, bool value) : key_(key), json_(value ? "true" : "false") {}

void Init(std::string_view service, Level level, size_t buffer_bytes) {
  std::string service_json = ServiceJson(service);
  auto writer = std::make_shared<LineWriter>(STDERR_FILENO, buffer_bytes, service_json);
  Install(std::move(service_json), level,
          std::make_shared<LineSink>([writer](std::string_view line) { writer->Append(line); }),
          writer);
  LoggerState& state = State();
  std::lock_guard<std::mutex> lock(state.mu);
  if (!state.exit_flush_registered) {
    state.exit_flush_registered = true;
    std::atexit(&FlushAtExit);
  }
}

void InitForTest(std::string_view service, Level level,
                 void (*sink)(std::string_view line, void* arg), void* arg) {
  Install(ServiceJson(service), level,
          std::make_shared<LineSink>([sink, arg](std::string_view line) { sink(line, arg); }),
          nullptr);
}

bool Flush(absl::Duration timeout) {
  std::shared_ptr<LineWriter> writer = CurrentWriter();
  return writer == nullptr || writer->Flush(timeout);
}

WriterStats Stats() {
  std::shared_ptr<LineWriter> writer = CurrentWriter();
  return writer == nullptr ? WriterStats() : writer->Stats();
}

void Debug(std::string_view msg, Fields fields) { Write(Level::kDebug, msg, fields); }
void Info(std::string_view msg, Fields fields) { Write(Level::kInfo, msg, fields); }
void Warn(std::string_view msg, Fields fields) { Write(Level::kWarn, msg, fields); }
void Error(std::string_view msg, Fields fields) { Write(Level::kError, msg, fields); }

void AppendJsonString(std::string_view text, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  while (!text.empty()) {
    const auto c = static_cast<unsigned char>(text[0]);
    if (c >= 0x80) {
      const size_t len = Utf8SequenceLength(text);
      if (len == 0) {
        out->append("\\ufffd");
        text.remove_prefix(1);
      } else {
        out->append(text.substr(0, len));
        text.remove_prefix(len);
      }
      continue;
    }
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xF]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
    text.remove_prefix(1);
  }
  out->push_back('"');
}

}  // namespace podgate::log
