// What every benchmark of `make bench` shares (docs/performance.md): samples and their
// percentiles, side-by-side tables printed as text, pairs measured interleaved, and the results
// written as JSON for tools/bench/bench.py to merge.
//
// A benchmark binary prints its tables to stdout and, with --json=FILE, writes
//   {"suite": "...", "quick": bool, "tables": [{"title", "columns", "rows"}],
//    "metrics": {"<name>": number, ...}}
// Metric names are dotted, lower case, with the unit last: "roundtrip.edge.p50_ms",
// "bulk.podgate_run.mib_per_s", "audit.sqlite.strict.w256.records_per_s".
#pragma once

#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace podgate::bench {

// The clock-tick fields of a process's /proc/<pid>/stat (pid 0: this process), counted from
// field 3 of proc(5) (index 0 is the state); empty when it cannot be read.
inline std::vector<std::string> StatFields(pid_t pid) {
  std::ifstream in(pid == 0 ? std::string("/proc/self/stat")
                            : absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(in, line);
  // The command name (field 2) may hold spaces: fields are counted after its ')'.
  const size_t close = line.rfind(')');
  if (close == std::string::npos || close + 2 > line.size()) {
    return {};
  }
  return absl::StrSplit(line.substr(close + 2), ' ');
}

// The sum of fields [first, last] of proc(5) (1-based, as the manual numbers them) in seconds.
inline double StatTicksSeconds(const std::vector<std::string>& fields, int first, int last) {
  double ticks = 0;
  for (int f = first; f <= last; ++f) {
    double v = 0;
    if (static_cast<size_t>(f - 3) >= fields.size() ||
        !absl::SimpleAtod(fields[static_cast<size_t>(f - 3)], &v)) {
      return 0;
    }
    ticks += v;
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU time (user + system) a process has used so far; pid 0 is this process. 0 when it cannot
// be read.
inline double CpuSeconds(pid_t pid) {
  return StatTicksSeconds(StatFields(pid), 14, 15);  // utime, stime
}

// CPU time (user + system) of a server made of processes (PostgreSQL's postmaster and its
// backends): the process itself, its children alive now, and the children it has waited for
// (cutime, cstime), so a backend that ends between two readings still counts. 0 when the
// process cannot be read.
inline double ProcessTreeCpuSeconds(pid_t pid) {
  const std::vector<std::string> own = StatFields(pid);
  if (own.empty()) {
    return 0;
  }
  double seconds = StatTicksSeconds(own, 14, 17);  // utime, stime, cutime, cstime
  const std::string parent = absl::StrCat(pid);
  std::error_code ignored;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ignored)) {
    pid_t child = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &child) || child == pid) {
      continue;
    }
    const std::vector<std::string> fields = StatFields(child);
    if (fields.size() > 1 && fields[1] == parent) {  // field 4, the parent's pid
      seconds += StatTicksSeconds(fields, 14, 15);
    }
  }
  return seconds;
}

// CPU time (user + system) getrusage(2) reports for `who` (RUSAGE_SELF, RUSAGE_CHILDREN), to
// the microsecond; 0 when it cannot be read.
inline double RusageCpuSeconds(int who) {
  rusage u{};
  if (getrusage(who, &u) != 0) {
    return 0;
  }
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// This process's CPU time (user + system) so far, to the microsecond.
inline double SelfCpuSeconds() { return RusageCpuSeconds(RUSAGE_SELF); }

// CPU time (user + system) of this process's children that have ended and been waited for
// (a kubectl or podgate-run spawned per command).
inline double ReapedChildrenCpuSeconds() { return RusageCpuSeconds(RUSAGE_CHILDREN); }

// Measured values (e.g. latencies in ms) and their order statistics.
class Samples {
 public:
  void Add(double value) {
    values_.push_back(value);
    sorted_ = false;
  }
  size_t size() const { return values_.size(); }
  bool empty() const { return values_.empty(); }
  // Nearest-rank percentile, p in [0, 100]; 0 when empty.
  double Percentile(double p) {
    if (values_.empty()) {
      return 0;
    }
    Sort();
    const double rank = std::ceil(p / 100.0 * static_cast<double>(values_.size()));
    const size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
    return values_[std::min(index, values_.size() - 1)];
  }
  double Mean() const {
    if (values_.empty()) {
      return 0;
    }
    double sum = 0;
    for (double v : values_) {
      sum += v;
    }
    return sum / static_cast<double>(values_.size());
  }

 private:
  void Sort() {
    if (!sorted_) {
      std::sort(values_.begin(), values_.end());
      sorted_ = true;
    }
  }
  std::vector<double> values_;
  bool sorted_ = true;
};

// Runs round `rounds` times every side in turn (A B C A B C ...), so that machine noise hits
// each side alike; a side returning an error stops the run.
inline absl::Status RunInterleaved(
    int rounds, const std::vector<std::function<absl::Status(int round)>>& sides) {
  for (int round = 0; round < rounds; ++round) {
    for (const auto& side : sides) {
      if (absl::Status status = side(round); !status.ok()) {
        return status;
      }
    }
  }
  return absl::OkStatus();
}

// A number as a table cell: `digits` after the point, thousands not grouped.
inline std::string Cell(double value, int digits = 1) {
  return absl::StrFormat("%.*f", digits, value);
}

class Table {
 public:
  Table(std::string title, std::vector<std::string> columns)
      : title_(std::move(title)), columns_(std::move(columns)) {}

  size_t rows() const { return rows_.size(); }
  void AddRow(std::vector<std::string> cells) {
    cells.resize(columns_.size());
    rows_.push_back(std::move(cells));
  }

  // Markdown, so that docs/performance.md can quote it as printed.
  std::string Render() const {
    std::vector<size_t> width(columns_.size());
    for (size_t i = 0; i < columns_.size(); ++i) {
      width[i] = columns_[i].size();
      for (const auto& row : rows_) {
        width[i] = std::max(width[i], row[i].size());
      }
    }
    auto line = [&](const std::vector<std::string>& cells) {
      std::string out = "|";
      for (size_t i = 0; i < cells.size(); ++i) {
        absl::StrAppend(&out, " ", cells[i], std::string(width[i] - cells[i].size(), ' '), " |");
      }
      return out + "\n";
    };
    std::string out = absl::StrCat("\n### ", title_, "\n\n", line(columns_), "|");
    for (size_t w : width) {
      absl::StrAppend(&out, std::string(w + 2, '-'), "|");
    }
    absl::StrAppend(&out, "\n");
    for (const auto& row : rows_) {
      absl::StrAppend(&out, line(row));
    }
    return out;
  }

  nlohmann::json ToJson() const {
    return {{"title", title_}, {"columns", columns_}, {"rows", rows_}};
  }

 private:
  std::string title_;
  std::vector<std::string> columns_;
  std::vector<std::vector<std::string>> rows_;
};

class Report {
 public:
  Report(std::string suite, bool quick) : suite_(std::move(suite)), quick_(quick) {}

  // Prints the table at once (a long run shows its progress) and keeps it for the JSON.
  void Add(const Table& table) {
    std::fputs(table.Render().c_str(), stdout);
    std::fflush(stdout);
    tables_.push_back(table.ToJson());
  }
  void Metric(const std::string& name, double value) { metrics_[name] = value; }
  // A free-form note printed under the tables and kept in the JSON (e.g. a measured limit).
  void Note(const std::string& text) {
    std::printf("\n%s\n", text.c_str());
    std::fflush(stdout);
    notes_.push_back(text);
  }

  nlohmann::json ToJson() const {
    return {{"suite", suite_},
            {"quick", quick_},
            {"tables", tables_},
            {"metrics", metrics_},
            {"notes", notes_}};
  }

  // Writes the JSON to `path` (nothing when empty).
  absl::Status WriteJson(const std::string& path) const {
    if (path.empty()) {
      return absl::OkStatus();
    }
    std::ofstream out(path, std::ios::trunc);
    out << ToJson().dump(2) << "\n";
    out.close();
    if (!out) {
      return absl::UnavailableError(absl::StrCat("cannot write ", path));
    }
    return absl::OkStatus();
  }

 private:
  std::string suite_;
  bool quick_;
  nlohmann::json tables_ = nlohmann::json::array();
  nlohmann::json metrics_ = nlohmann::json::object();
  nlohmann::json notes_ = nlohmann::json::array();
};

}  // namespace podgate::bench
