// Plain-text table and progress bar for the CLI.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace quantkit::cli {

/// Collects rows, then prints them with every column padded to its widest cell. Columns listed
/// in `right_aligned` are aligned right (numbers).
class Table {
 public:
  Table(std::vector<std::string> header, std::vector<bool> right_aligned)
      : header_(std::move(header)), right_(std::move(right_aligned)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void separator() { rows_.emplace_back(); }
  void print(std::FILE* out) const;

 private:
  std::vector<std::string> header_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  void update(size_t done, size_t total, const std::string& item);
  ~ProgressBar();

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
};

std::string fixed(double value, int decimals);

}  // namespace quantkit::cli
