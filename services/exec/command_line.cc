#include "exec/command_line.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "text/utf8.h"

namespace podgate::exec {
namespace {

// Decodes one UTF-8 sequence at `s[i]` (lib/text/utf8.h); returns its length, or 0 when invalid.
size_t DecodeUtf8(absl::string_view s, size_t i, uint32_t* cp) {
  const text::Utf8CodePoint d = text::DecodeUtf8(std::string_view(s.data() + i, s.size() - i));
  *cp = d.code_point;
  return d.length;
}

bool IsBidiControl(uint32_t cp) {
  return cp == 0x061C || cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

std::string Describe(uint32_t cp) {
  switch (cp) {
    case 0:
      return "a NUL byte";
    case '\t':
      return "a tab";
    case '\n':
      return "a newline";
    case '\r':
      return "a carriage return";
    case 0x1B:
      return "an escape character";
    default: {
      char buf[16];
      std::snprintf(buf, sizeof(buf), "U+%04X", cp);
      return absl::StrCat("control character ", buf);
    }
  }
}

absl::Status Refuse(size_t column, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("column ", column, ": ", what));
}

std::string Quoting(char c) {
  return absl::StrCat("quote it ('", std::string(1, c), "') to pass it literally");
}

}  // namespace

absl::StatusOr<std::vector<std::string>> SplitCommandLine(absl::string_view line,
                                                          const CommandLineLimits& limits) {
  if (line.size() > limits.max_line_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("the line is ", line.size(),
                                                   " bytes; the limit is ",
                                                   limits.max_line_bytes));
  }
  // First pass: the characters themselves, wherever they are.
  size_t column = 0;
  for (size_t i = 0; i < line.size();) {
    ++column;
    uint32_t cp = 0;
    const size_t len = DecodeUtf8(line, i, &cp);
    if (len == 0) {
      return Refuse(column, "invalid UTF-8");
    }
    if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
      return Refuse(column, absl::StrCat(Describe(cp), " is not allowed in a command line"));
    }
    if (IsBidiControl(cp)) {
      char buf[16];
      std::snprintf(buf, sizeof(buf), "U+%04X", cp);
      return Refuse(column, absl::StrCat("bidirectional text control ", buf,
                                         " is not allowed in a command line"));
    }
    i += len;
  }

  // Second pass: words. Columns count characters; continuation bytes do not advance them.
  std::vector<std::string> argv;
  std::string word;
  bool in_word = false;  // a word has started (even an empty quoted one)
  enum class Quote { kNone, kSingle, kDouble } quote = Quote::kNone;
  size_t quote_column = 0;
  column = 0;
  auto finish_word = [&]() -> absl::Status {
    if (!in_word) {
      return absl::OkStatus();
    }
    if (word.size() > limits.max_arg_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("argument ", argv.size() + 1, " is ",
                                                     word.size(), " bytes; the limit is ",
                                                     limits.max_arg_bytes));
    }
    if (argv.size() == limits.max_args) {
      return absl::InvalidArgumentError(
          absl::StrCat("more than ", limits.max_args, " arguments"));
    }
    argv.push_back(std::move(word));
    word.clear();
    in_word = false;
    return absl::OkStatus();
  };
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) {
      ++column;
    }
    switch (quote) {
      case Quote::kSingle:
        if (c == '\'') {
          quote = Quote::kNone;
        } else {
          word.push_back(c);
        }
        continue;
      case Quote::kDouble:
        if (c == '"') {
          quote = Quote::kNone;
        } else if (c == '\\' && i + 1 < line.size() &&
                   (line[i + 1] == '"' || line[i + 1] == '\\' || line[i + 1] == '$' ||
                    line[i + 1] == '`')) {
          word.push_back(line[++i]);
          ++column;
        } else if (c == '`') {
          return Refuse(column, "command substitution (`) is not supported; use '...' quotes "
                                "to pass a backtick literally");
        } else if (c == '$' && i + 1 < line.size() && line[i + 1] != ' ' && line[i + 1] != '"') {
          return Refuse(column, "$ expansion is not supported inside \"...\"; use '...' quotes "
                                "to pass a $ literally");
        } else {
          word.push_back(c);
        }
        continue;
      case Quote::kNone:
        break;
    }
    switch (c) {
      case ' ':
        if (absl::Status s = finish_word(); !s.ok()) {
          return s;
        }
        continue;
      case '\'':
        quote = Quote::kSingle;
        quote_column = column;
        in_word = true;
        continue;
      case '"':
        quote = Quote::kDouble;
        quote_column = column;
        in_word = true;
        continue;
      case '\\':
        if (i + 1 == line.size()) {
          return Refuse(column, "a trailing backslash continues nothing; remove it or quote it");
        }
        // The escaped character may be multi-byte: copy the whole sequence.
        {
          uint32_t cp = 0;
          const size_t len = DecodeUtf8(line, i + 1, &cp);
          word.append(line.data() + i + 1, len);
          i += len;
          ++column;
        }
        in_word = true;
        continue;
      case ';':
      case '|':
      case '&':
      case '<':
      case '>':
      case '(':
      case ')':
        return Refuse(column, absl::StrCat("unquoted '", std::string(1, c),
                                           "': podgate runs one program, not a shell, so there "
                                           "are no pipes, lists or redirections; ",
                                           Quoting(c)));
      case '`':
        return Refuse(column, "command substitution (`) is not supported; " + Quoting(c));
      case '$':
        if (i + 1 < line.size() && line[i + 1] == '(') {
          return Refuse(column, "command substitution ($(...)) is not supported; " + Quoting(c));
        }
        if (i + 1 < line.size() && line[i + 1] != ' ') {
          return Refuse(column, "$ expansion is not supported (no variables); " + Quoting(c));
        }
        break;
      case '*':
      case '?':
      case '[':
        return Refuse(column, absl::StrCat("unquoted '", std::string(1, c),
                                           "' would be a glob in a shell and is not expanded; ",
                                           Quoting(c)));
      case '{':
      case '}':
        return Refuse(column, absl::StrCat("unquoted '", std::string(1, c),
                                           "' (brace expansion) is not supported; ", Quoting(c)));
      case '~':
        if (!in_word) {
          return Refuse(column, "a leading '~' (home directory) is not expanded; " + Quoting(c));
        }
        break;
      case '#':
        if (!in_word) {
          return Refuse(column, "'#' would start a comment in a shell; " + Quoting(c));
        }
        break;
      default:
        break;
    }
    word.push_back(c);
    in_word = true;
  }
  if (quote != Quote::kNone) {
    return Refuse(quote_column, absl::StrCat("unterminated ",
                                             quote == Quote::kSingle ? "'" : "\"", " quote"));
  }
  if (absl::Status s = finish_word(); !s.ok()) {
    return s;
  }
  if (argv.empty()) {
    return absl::InvalidArgumentError("empty command");
  }
  return argv;
}

}  // namespace podgate::exec
