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
  // The shell's own lookup, so PATH is searched exactly as when the name is typed.
  std::string quoted_name = "'";
  for (char c : program) quoted_name += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted_name += "'";
  FILE* p = ::popen(("command -v " + quoted_name + " 2>/dev/null").c_str(), "r");
  if (p == nullptr) return "";
  char line[4096] = {};
  const bool got = std::fgets(line, sizeof line, p) != nullptr;
  const int status = ::pclose(p);
  std::string path = got ? line : "";
  while (!path.empty() && (path.back() == '\n' || path.back() == '\r')) path.pop_back();
  return status == 0 && path.rfind('/', 0) == 0 ? path : "";
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
