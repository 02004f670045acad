#pragma once
// --plot: busbw against size (log x) for every series of a run, with the spread of the
// iterations, and the time of the small sizes, drawn by gnuplot.
#include "report.hpp"

#include <optional>
#include <string>
#include <vector>

namespace chorus_perf {

/// The path of `program` found in PATH as a shell would, or "" when it is not there.
std::string find_in_path(const std::string& program);

/// Whether gnuplot can be started (searched in PATH).
bool gnuplot_available();

/// Draws `lines` (size in bytes, busbw GB/s, error bars from their spread) into the PNG
/// `path`, with a dashed horizontal line at `floor_busbw` when given, and below it a panel
/// of `latency` (size, time in us) when it has more than one point. Throws
/// std::runtime_error when gnuplot fails.
void plot_busbw(const std::string& path, const std::string& title, const std::vector<series>& lines,
                std::optional<double> floor_busbw, const std::vector<series>& latency = {});

}  // namespace chorus_perf
