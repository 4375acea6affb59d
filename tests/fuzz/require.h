// The fuzz targets' invariant check: a broken invariant prints what broke and the input, then
// aborts, which libFuzzer reports as a crash and keeps the input in build/fuzz/artifacts/.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace podgate::fuzz {

inline void Require(bool condition, const char* what, std::string_view input) {
  if (!condition) {
    std::fprintf(stderr, "invariant broken: %s\ninput: %.*s\n", what,
                 static_cast<int>(input.size()), input.data());
    std::abort();
  }
}

}  // namespace podgate::fuzz
