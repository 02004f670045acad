#include "plot.hpp"

#include <unistd.h>

#include <algorithm>
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
                std::optional<double> floor_busbw, const std::vector<series>& latency) {
  const bool panel = std::any_of(latency.begin(), latency.end(),
                                 [](const series& s) { return s.points.size() > 1; });
  std::ostringstream script;
  script << "set terminal pngcairo size 1200," << (panel ? 1200 : 750) << " font 'sans,11'\n"
         << "set output " << quoted(path) << "\n"
         << "set logscale x 2\n"
         << "set format x '%.0b%B'\n"
         << "set xlabel 'size (bytes; ki, Mi, Gi = 2^{10}, 2^{20}, 2^{30})'\n"
         << "set grid\n"
         << "set key below noenhanced\n";
  // Every series as a data block: x, y and, where known, the spread (low, high).
  const auto blocks = [&](const std::vector<series>& all, const char* prefix) {
    for (std::size_t i = 0; i < all.size(); ++i) {
      script << "$" << prefix << i << " << EOD\n";
      const bool spread = all[i].spread.size() == all[i].points.size();
      for (std::size_t k = 0; k < all[i].points.size(); ++k) {
        const auto [x, y] = all[i].points[k];
        script << x << " " << y;
        if (spread) script << " " << all[i].spread[k].first << " " << all[i].spread[k].second;
        script << "\n";
      }
      script << "EOD\n";
    }
  };
  const auto plot = [&](const std::vector<series>& all, const char* prefix, bool with_floor) {
    double lo = std::numeric_limits<double>::max(), hi = 0;
    for (const auto& s : all) {
      for (const auto& pt : s.points) {
        lo = std::min(lo, pt.first);
        hi = std::max(hi, pt.first);
      }
    }
    if (hi > 0) script << "set xrange [" << lo / 1.2 << ":" << hi * 1.2 << "]\n";
    script << "plot ";
    bool first = true;
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (all[i].points.empty()) continue;
      script << (first ? "" : ", ") << "$" << prefix << i
             << " using 1:2 with linespoints lw 2 pt 7 ps 0.8 lc " << i + 1 << " title "
             << quoted(all[i].name);
      if (all[i].spread.size() == all[i].points.size()) {
        script << ", $" << prefix << i << " using 1:2:3:4 with yerrorbars lc " << i + 1
               << " pt -1 notitle";
      }
      first = false;
    }
    if (with_floor && floor_busbw && *floor_busbw > 0) {
      char label[128];
      std::snprintf(label, sizeof label,
                    "memory-bandwidth ceiling for buffers beyond the caches: %.2f GB/s",
                    *floor_busbw);
      script << (first ? "" : ", ") << *floor_busbw << " with lines dt 2 lw 2 lc rgb 'black' title "
             << quoted(label);
      first = false;
    }
    if (first) script << "NaN notitle";
    script << "\n";
  };
  blocks(lines, "s");
  blocks(latency, "l");
  if (panel) script << "set multiplot layout 2,1 title " << quoted(title) << " noenhanced\n";
  if (!panel) script << "set title " << quoted(title) << " noenhanced\n";
  script << "set ylabel 'busbw (GB/s = 10^9 B/s); bars: fastest to slowest iteration'\n"
         << "set yrange [0:*]\n"
         << "set offsets 0, 0, graph 0.08, 0\n";
  plot(lines, "s", true);
  if (panel) {
    script << "set title 'small sizes: time per call'\n"
           << "set ylabel 'time (us); bars: fastest to slowest iteration'\n"
           << "set yrange [0:*]\n";
    plot(latency, "l", false);
    script << "unset multiplot\n";
  }

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
