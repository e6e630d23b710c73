#include "table.h"

#include <unistd.h>

#include <algorithm>

namespace quantkit::cli {

void Table::print(std::FILE* out) const {
  std::vector<size_t> width(header_.size(), 0);
  for (size_t c = 0; c < header_.size(); ++c) width[c] = header_[c].size();
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size() && c < width.size(); ++c)
      width[c] = std::max(width[c], row[c].size());
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < width.size(); ++c) {
      const std::string& cell = c < row.size() ? row[c] : std::string();
      const std::string pad(width[c] - cell.size(), ' ');
      line += (c ? "  " : "") + (c < right_.size() && right_[c] ? pad + cell : cell + pad);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::fprintf(out, "%s\n", line.c_str());
  };
  size_t total = 0;
  for (size_t w : width) total += w + 2;
  const std::string rule(total > 2 ? total - 2 : 0, '-');
  print_row(header_);
  std::fprintf(out, "%s\n", rule.c_str());
  for (const auto& row : rows_) {
    if (row.empty()) {
      std::fprintf(out, "%s\n", rule.c_str());
    } else {
      print_row(row);
    }
  }
}

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)), enabled_(::isatty(STDERR_FILENO) != 0) {}

void ProgressBar::update(size_t done, size_t total, const std::string& item) {
  if (!enabled_ || total == 0) return;
  constexpr size_t kWidth = 30;
  const size_t filled = done * kWidth / total;
  std::string shown = item.size() > 40 ? "..." + item.substr(item.size() - 37) : item;
  std::fprintf(stderr, "\r%s [%s%s] %zu/%zu %-40s", label_.c_str(),
               std::string(filled, '#').c_str(), std::string(kWidth - filled, ' ').c_str(), done,
               total, shown.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

ProgressBar::~ProgressBar() {
  if (drawn_) std::fprintf(stderr, "\r%*s\r", 100, "");
}

std::string fixed(double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

}  // namespace quantkit::cli
