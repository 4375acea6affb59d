// The version and source commit of the build, for --version and logs.
//
// Both come from one small file generated into the build directory (version_info.cc, written by
// version_info.cmake at each build and only when its contents change): a new commit recompiles
// that one file and relinks the binaries, nothing else.
#pragma once

#include <string_view>

namespace podgate::runtime {

// The project's version (CMake's PROJECT_VERSION), e.g. "0.1.0".
std::string_view Version();

// The commit the binary was built from (`git rev-parse --short=12 HEAD`, or the PODGATE_COMMIT
// CMake variable or environment variable when set, e.g. for a build from a source archive), or
// "unknown" when neither is available.
std::string_view Commit();

}  // namespace podgate::runtime
