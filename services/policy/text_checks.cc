#include "policy/text_checks.h"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "text/utf8.h"

namespace podgate::policy {
namespace {

// Decodes one UTF-8 code point at `s[*pos]` (lib/text/utf8.h), advancing `*pos`; -1 on an
// invalid sequence.
int32_t DecodeUtf8(std::string_view s, size_t* pos) {
  const text::Utf8CodePoint d = text::DecodeUtf8(s.substr(*pos));
  if (d.length == 0) {
    return -1;
  }
  *pos += d.length;
  return static_cast<int32_t>(d.code_point);
}

// The name of non-printable-ASCII code point `cp` when podgate never accepts it, e.g.
// "bidi control U+202E"; nullopt for acceptable non-ASCII text (letters, CJK, punctuation).
std::optional<std::string> UnsafeName(int32_t cp) {
  const std::string u = absl::StrFormat("U+%04X", cp);
  if (cp == 0) {
    return "NUL byte";
  }
  if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) {
    return absl::StrCat("control character ", u);
  }
  if (cp == 0xA0 || cp == 0x202F || cp == 0x2007 || (cp >= 0x2000 && cp <= 0x200A) ||
      cp == 0x3000 || cp == 0x205F || cp == 0x1680) {
    return absl::StrCat("non-ASCII space ", u);
  }
  if ((cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200E ||
      cp == 0x200F || cp == 0x061C) {
    return absl::StrCat("bidi control ", u);
  }
  if (cp == 0x2028 || cp == 0x2029) {
    return absl::StrCat("line or paragraph separator ", u);
  }
  if ((cp >= 0x200B && cp <= 0x200D) || cp == 0xFEFF || (cp >= 0x2060 && cp <= 0x2064) ||
      cp == 0x00AD || cp == 0x034F || cp == 0x180E || cp == 0x115F || cp == 0x1160 ||
      cp == 0x3164 || cp == 0xFFA0 || (cp >= 0xFE00 && cp <= 0xFE0F) ||
      (cp >= 0xE0000 && cp <= 0xE0FFF) || (cp >= 0xFFF0 && cp <= 0xFFFB)) {
    return absl::StrCat("invisible character ", u);
  }
  if ((cp >= 0xE000 && cp <= 0xF8FF) || cp >= 0xF0000) {
    return absl::StrCat("private-use character ", u);
  }
  if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE) {
    return absl::StrCat("noncharacter ", u);
  }
  if (cp >= 0xFF01 && cp <= 0xFF5E) {
    // The sentence punctuation of Chinese text is not mistaken for ASCII syntax.
    if (cp == 0xFF01 || cp == 0xFF08 || cp == 0xFF09 || cp == 0xFF0C || cp == 0xFF1A ||
        cp == 0xFF1B || cp == 0xFF1F) {
      return std::nullopt;
    }
    return absl::StrCat("fullwidth look-alike ", u, " of '",
                        std::string(1, static_cast<char>(cp - 0xFF01 + 0x21)), "'");
  }
  return std::nullopt;
}

std::string CodePointName(int32_t cp) {
  return UnsafeName(cp).value_or(absl::StrFormat("non-ASCII character U+%04X", cp));
}

// The name of the first code point of `text` that `refuse` names (or of invalid UTF-8).
template <typename Refuse>
std::optional<std::string> FirstRefused(std::string_view text, Refuse refuse) {
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t at = pos;
    const int32_t cp = DecodeUtf8(text, &pos);
    if (cp < 0) {
      return absl::StrCat("invalid UTF-8 at byte ", at);
    }
    if (cp >= 0x20 && cp < 0x7F) {
      continue;
    }
    if (std::optional<std::string> name = refuse(cp)) {
      return name;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> DescribeForbiddenCharacter(std::string_view text) {
  return FirstRefused(text,
                      [](int32_t cp) { return std::optional<std::string>(CodePointName(cp)); });
}

std::optional<std::string> DescribeUnsafeCharacter(std::string_view text) {
  return FirstRefused(text, UnsafeName);
}

bool IsAscii(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

std::optional<std::string> CheckArgElement(std::string_view arg, size_t index) {
  if (arg.size() > kMaxArgBytes) {
    return absl::StrCat("argument ", index, " is ", arg.size(), " bytes long (the limit is ",
                        kMaxArgBytes, ")");
  }
  if (index == 0) {
    if (std::optional<std::string> bad = DescribeForbiddenCharacter(arg)) {
      return absl::StrCat("the program name contains a ", *bad,
                          "; only printable ASCII is accepted");
    }
    return std::nullopt;
  }
  if (std::optional<std::string> bad = DescribeUnsafeCharacter(arg)) {
    return absl::StrCat("argument ", index, " contains a ", *bad, ", which is never accepted");
  }
  return std::nullopt;
}

std::optional<std::string> CheckArgv(const std::vector<std::string>& argv) {
  if (argv.empty()) {
    return "the command is empty";
  }
  // Sizes first, before looking at any byte: a huge argv costs nothing to refuse.
  if (argv.size() > kMaxArgc) {
    return absl::StrCat("the command has ", argv.size(), " arguments (the limit is ", kMaxArgc,
                        ")");
  }
  size_t total = 0;
  for (const std::string& arg : argv) {
    total += arg.size();
  }
  if (total > kMaxArgvBytes) {
    return absl::StrCat("the command is ", total, " bytes long (the limit is ", kMaxArgvBytes, ")");
  }
  if (argv[0].empty()) {
    return "the program name is empty";
  }
  for (size_t i = 0; i < argv.size(); ++i) {
    if (auto bad = CheckArgElement(argv[i], i)) {
      return bad;
    }
  }
  return std::nullopt;
}

std::optional<long long> ParseStrictInteger(std::string_view text) {
  bool negative = false;
  if (!text.empty() && text[0] == '-') {
    negative = true;
    text.remove_prefix(1);
  }
  if (text.empty() || text.size() > 19 || (text.size() > 1 && text[0] == '0')) {
    return std::nullopt;
  }
  unsigned long long value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > static_cast<unsigned long long>(std::numeric_limits<long long>::max())) {
    return std::nullopt;
  }
  const long long v = static_cast<long long>(value);
  return negative ? -v : v;
}

std::optional<std::string> NormaliseAbsolutePath(std::string_view path) {
  if (path.empty() || path[0] != '/') {
    return std::nullopt;
  }
  std::string out;
  for (absl::string_view part : absl::StrSplit(absl::string_view(path.data(), path.size()), '/')) {
    if (part.empty() || part == ".") {
      continue;
    }
    if (part == "..") {
      return std::nullopt;
    }
    absl::StrAppend(&out, "/", part);
  }
  return out.empty() ? "/" : out;
}

bool PathIsUnder(std::string_view path, std::string_view prefix) {
  if (prefix == "/") {
    return !path.empty() && path[0] == '/';
  }
  if (path.size() < prefix.size() || path.substr(0, prefix.size()) != prefix) {
    return false;
  }
  return path.size() == prefix.size() || path[prefix.size()] == '/';
}

bool GlobMatch(std::string_view pattern, std::string_view text) {
  size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') {
    ++p;
  }
  return p == pattern.size();
}

}  // namespace podgate::policy
