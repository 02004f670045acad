#include "plot.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace chorus_perf {

namespace {

/// `text` as a gnuplot string in double quotes.
std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string find_in_path(const std::string& program) {
  const char* env_path = std::getenv("PATH");
  const std::string path = env_path != nullptr ? env_path : "/usr/local/bin:/usr/bin:/bin";
  std::size_t start = 0;
  for (;;) {
    const auto colon = path.find(':', start);
    std::string dir = path.substr(start, colon == std::string::npos ? colon : colon - start);
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string::npos) return "";
    start = colon + 1;
  }
}

bool gnuplot_available() { return !find_in_path("gnuplot").empty(); }

void plot_busbw(const std::string& path, const std::string& title, const std::vector<series>& lines,
                std::optional<double> floor_busbw) {
  double lo = std::numeric_limits<double>::max(), hi = 0;
  std::ostringstream script;
  script << "set terminal pngcairo size 1200,750 font 'sans,11'\n"
         << "set output " << quoted(path) << "\n"
         << "set title " << quoted(title) << " noenhanced\n"
         << "set logscale x 2\n"
         << "set format x '%.0b%B'\n"
         << "set xlabel 'size (bytes; ki, Mi, Gi = 2^{10}, 2^{20}, 2^{30})'\n"
         << "set ylabel 'busbw (GB/s = 10^9 B/s)'\n"
         << "set yrange [0:*]\n"
         << "set grid\n"
         << "set offsets 0, 0, graph 0.08, 0\n"
         << "set key below noenhanced\n";
  for (std::size_t i = 0; i < lines.size(); ++i) {
    script << "$s" << i << " << EOD\n";
    for (const auto& [x, y] : lines[i].points) {
      script << x << " " << y << "\n";
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    }
    script << "EOD\n";
  }
  if (hi > 0) script << "set xrange [" << lo << ":" << hi << "]\n";
  script << "plot ";
  bool first = true;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].points.empty()) continue;
    script << (first ? "" : ", ") << "$s" << i
           << " using 1:2 with linespoints lw 2 pt 7 ps 0.8 title " << quoted(lines[i].name);
    first = false;
  }
  if (floor_busbw && *floor_busbw > 0) {
    char label[96];
    std::snprintf(label, sizeof label, "memory-bandwidth floor (STREAM copy): %.2f GB/s",
                  *floor_busbw);
    script << (first ? "" : ", ") << *floor_busbw << " with lines dt 2 lw 2 lc rgb 'black' title "
           << quoted(label);
    first = false;
  }
  if (first) script << "NaN notitle";
  script << "\n";

  FILE* g = ::popen("gnuplot", "w");
  if (g == nullptr) throw std::runtime_error("--plot: cannot start gnuplot");
  const std::string text = script.str();
  std::fwrite(text.data(), 1, text.size(), g);
  const int status = ::pclose(g);
  if (status != 0) {
    throw std::runtime_error("--plot: gnuplot failed (status " + std::to_string(status) +
                             ") drawing '" + path + "'");
  }
}

}  // namespace chorus_perf
