// Fuzzes exec::SplitCommandLine, the splitter every typed command goes through. Besides crashes
// and undefined behaviour it checks what exec relies on:
//  - an accepted line gives 1..max_args elements of at most max_arg_bytes, each valid UTF-8
//    without control or bidirectional-text characters (the first pass refuses those anywhere);
//  - re-quoting the argv ('...' around each element, ' written as '\'') and splitting again
//    gives the same argv: what the user typed means exactly the argv that runs;
//  - elements made only of "plain" characters need no quoting: joined by spaces they split
//    back the same;
//  - a refusal says why (a column, or which limit), and the result is deterministic.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "exec/command_line.h"
#include "require.h"

using podgate::fuzz::Require;

namespace {

std::string SingleQuote(const std::string& arg) {
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  out += "'";
  return out;
}

bool Plain(const std::string& arg) {
  if (arg.empty() || arg[0] == '~' || arg[0] == '#') {
    return false;
  }
  for (char c : arg) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == '/' || c == ':' || c == '=' ||
                    c == ',' || c == '@' || c == '+' || c == '%';
    if (!ok) {
      return false;
    }
  }
  return true;
}

bool ValidUtf8WithoutControls(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    size_t len;
    if (b0 < 0x80) {
      cp = b0;
      len = 1;
    } else if ((b0 & 0xE0) == 0xC0) {
      cp = b0 & 0x1F;
      len = 2;
    } else if ((b0 & 0xF0) == 0xE0) {
      cp = b0 & 0x0F;
      len = 3;
    } else if ((b0 & 0xF8) == 0xF0) {
      cp = b0 & 0x07;
      len = 4;
    } else {
      return false;
    }
    if (i + len > s.size()) {
      return false;
    }
    for (size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (b & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) || cp == 0x061C || cp == 0x200E ||
        cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069)) {
      return false;
    }
    i += len;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // Small limits so that the fuzzer reaches them; the re-split uses roomy ones (quoting grows
  // the line).
  podgate::exec::CommandLineLimits limits;
  limits.max_line_bytes = 512;
  limits.max_args = 16;
  limits.max_arg_bytes = 128;
  podgate::exec::CommandLineLimits roomy;
  roomy.max_line_bytes = 1 << 16;
  roomy.max_args = limits.max_args;
  roomy.max_arg_bytes = limits.max_arg_bytes;

  const absl::StatusOr<std::vector<std::string>> argv =
      podgate::exec::SplitCommandLine(absl::string_view(input.data(), input.size()), limits);
  const absl::StatusOr<std::vector<std::string>> again =
      podgate::exec::SplitCommandLine(absl::string_view(input.data(), input.size()), limits);
  Require(argv.ok() == again.ok() && (!argv.ok() || *argv == *again), "deterministic", input);

  if (!argv.ok()) {
    Require(argv.status().code() == absl::StatusCode::kInvalidArgument, "InvalidArgument", input);
    Require(!argv.status().message().empty(), "a refusal says why", input);
    // The same line with default (larger) limits is refused too unless a limit was the reason.
    const absl::string_view message = argv.status().message();
    const bool limit = message.rfind("the line is", 0) == 0 || message.rfind("argument ", 0) == 0 ||
                       message.rfind("more than", 0) == 0;
    Require(limit || message.rfind("column ", 0) == 0 || message == "empty command",
            "a refusal names a column or a limit", input);
    if (!limit) {
      Require(!podgate::exec::SplitCommandLine(absl::string_view(input.data(), input.size()), roomy)
                   .ok(),
              "a refusal that is not a limit does not depend on the limits", input);
    }
    return 0;
  }

  Require(!argv->empty() && argv->size() <= limits.max_args, "argv size", input);
  std::string quoted;
  std::string joined;
  bool all_plain = true;
  for (const std::string& arg : *argv) {
    Require(arg.size() <= limits.max_arg_bytes, "element size", input);
    Require(ValidUtf8WithoutControls(arg), "elements are clean UTF-8", input);
    if (!quoted.empty()) {
      quoted += ' ';
      joined += ' ';
    }
    quoted += SingleQuote(arg);
    joined += arg;
    all_plain = all_plain && Plain(arg);
  }
  const absl::StatusOr<std::vector<std::string>> requoted =
      podgate::exec::SplitCommandLine(quoted, roomy);
  Require(requoted.ok(), "the re-quoted argv is accepted", input);
  Require(*requoted == *argv, "the re-quoted argv splits back the same", input);
  if (all_plain) {
    const absl::StatusOr<std::vector<std::string>> plain =
        podgate::exec::SplitCommandLine(joined, roomy);
    Require(plain.ok() && *plain == *argv, "plain elements need no quoting", input);
  }
  return 0;
}
