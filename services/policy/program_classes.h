// Built-in classes of programs that deny rules can name, and the program-name normalisation
// that deny rules share.
//
// `program-runners` are programs that run other programs or code given to them: shells of every
// kind (restricted ones included), language interpreters of every version suffix, the dynamic
// loader, and wrappers that exec their arguments (env, nice, timeout, ionice, taskset, unshare,
// flock, ...). No argv grammar can describe what they will do, so a superuser rule never allows
// one (unless it says `allowProgramRunners: true`), and a deny rule may name the class. It is
// necessarily a list of names: a binary copied under another name escapes it, which is why
// superuser rules are for people who could be given a shell (docs/policy.md).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace podgate::policy {

enum class ProgramClass { kProgramRunners };

// "program-runners" -> kProgramRunners; nullopt for an unknown name.
std::optional<ProgramClass> ParseProgramClass(std::string_view name);
std::string_view ProgramClassName(ProgramClass c);

// The last path component of argv[0] ("/usr/bin/python3.11" -> "python3.11").
std::string_view ProgramBasename(std::string_view program);

// The name without a version suffix: "python3.11" -> "python", "perl5.36.0" -> "perl",
// "php-8.2" -> "php", "python3.7m" -> "python", "lua5.4" -> "lua". A name that is nothing but
// a version, or has none, comes back unchanged.
std::string StripVersionSuffix(std::string_view name);

// Whether argv[0] (a bare name or a path) is in the class: its basename, or the basename
// without a version suffix, is a member; or it is a dynamic loader (ld-linux*.so*, ld-musl-*,
// ld.so, ld64.so*).
bool InProgramClass(ProgramClass c, std::string_view program);
// The same with the basename and its version-stripped form already computed (the evaluator
// computes them once per request).
bool InProgramClass(ProgramClass c, std::string_view base, std::string_view stripped);

// The member names, sorted, for documentation and tests.
std::vector<std::string> ProgramClassMembers(ProgramClass c);

}  // namespace podgate::policy
