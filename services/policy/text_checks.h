// Checks on strings a user controls: argv elements before any rule sees them, and the typed
// values of a command grammar (integers, paths). Hosts and URLs: net_address.h.
//
// Every check returns a sentence for humans on refusal, because the sentence reaches the user
// and the audit trail as the decision's reason.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace podgate::policy {

// Limits applied to every argv before evaluation, so hostile sizes are refused early and cheaply.
inline constexpr size_t kMaxArgc = 128;
inline constexpr size_t kMaxArgBytes = 4096;
inline constexpr size_t kMaxArgvBytes = 32 * 1024;

// Refuses an argv podgate never runs: empty, over the limits above, a program name that is not
// printable ASCII, or an argument with a character that is never accepted (DescribeUnsafeCharacter:
// invalid UTF-8, NUL, control characters, bidi controls, non-ASCII or zero-width spaces, other
// invisible characters, fullwidth look-alikes of ASCII). Other non-ASCII text (file names or
// search strings in Chinese, say) passes here; each value type then decides whether it may hold
// it (ValueTypeAcceptsNonAscii). Returns the reason, or nullopt when the argv passes.
std::optional<std::string> CheckArgv(const std::vector<std::string>& argv);

// Same rules for one element; `index` names it in the reason (index 0, the program, must be
// printable ASCII).
std::optional<std::string> CheckArgElement(std::string_view arg, size_t index);

// A short name for the first non-printable-ASCII code point in `text`, e.g.
// "bidi control U+202E"; nullopt when `text` is printable ASCII.
std::optional<std::string> DescribeForbiddenCharacter(std::string_view text);

// A short name for the first code point in `text` that podgate never accepts in an argument or a
// policy's text, even where non-ASCII text is allowed: invalid UTF-8 ("invalid UTF-8 at byte 3"),
// NUL and control characters (C0, DEL, C1), spaces other than U+0020 (no-break, ideographic, line
// and paragraph separators), bidi controls, zero-width and other invisible characters (soft
// hyphen, joiners, variation selectors, tags, Hangul fillers), private-use code points and
// noncharacters, and the fullwidth look-alikes of ASCII letters, digits and symbols
// (U+FF01..U+FF5E) except the sentence punctuation Chinese text uses: ！（），：；？.
// nullopt when every code point is acceptable.
std::optional<std::string> DescribeUnsafeCharacter(std::string_view text);

// Whether every byte of `text` is below 0x80.
bool IsAscii(std::string_view text);

// Parses a decimal integer without sign tricks: optional '-', digits only, no leading '+',
// no whitespace, no leading zeros (except "0"), within int64.
std::optional<long long> ParseStrictInteger(std::string_view text);

// Collapses "//" and "/./" in an absolute path and drops a trailing '/'. Refuses (nullopt) a
// relative path and any ".." component: the kernel resolves ".." after following symlinks, so
// a lexical normalisation could not prove where "a/../b" lands.
std::optional<std::string> NormaliseAbsolutePath(std::string_view path);

// Whether normalised `path` is `prefix` or lies under it (component-wise, so /var/log/app2 is
// not under /var/log/app).
bool PathIsUnder(std::string_view path, std::string_view prefix);

// Shell-style glob with '*' and '?' over bytes.
bool GlobMatch(std::string_view pattern, std::string_view text);

}  // namespace podgate::policy
