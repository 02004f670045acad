#pragma once
/// \file
/// A cost profile as a JSON file: what `chorus-perf --calibrate FILE` writes, and what a
/// program loads to tune by the model (docs/tuning.md):
///
///     chorus::communicator_options opt;
///     opt.tuner = chorus::schedule::model_tuner{chorus::load_cost_profile("profile.json")};
///
/// Needs nlohmann-json (Debian: nlohmann-json3-dev; CMake: find_package(nlohmann_json)), which
/// is why `chorus.hpp` does not include this header.
#include <chorus/core/error.hpp>
#include <chorus/schedule/cost.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

namespace chorus::inline v0 {

/// The file format's version (the "chorus_cost_profile" key).
inline constexpr int cost_profile_format = 1;

namespace detail {
/// What every error of a profile file ends with.
inline constexpr const char* profile_hint =
    " (write one with: chorus-perf --calibrate FILE --transport T --np N)";
}  // namespace detail

/// The profile as a JSON object (times in seconds, rates in seconds per byte).
inline nlohmann::json to_json(const schedule::cost_profile& p) {
  return nlohmann::json{{"chorus_cost_profile", cost_profile_format},
                        {"source", p.source},
                        {"alpha_s", p.alpha},
                        {"beta_s_per_byte", p.beta},
                        {"overhead_s", p.overhead},
                        {"reduce_s_per_byte", p.reduce},
                        {"copy_s_per_byte", p.copy},
                        {"inter_alpha_s", p.inter_alpha},
                        {"inter_beta_s_per_byte", p.inter_beta},
                        {"window_s_per_byte", p.window},
                        {"window_reduce_s_per_byte", p.window_reduce},
                        {"cache_bytes", p.cache_bytes},
                        {"memory_beta_s_per_byte", p.memory_beta},
                        {"memory_reduce_s_per_byte", p.memory_reduce},
                        {"memory_copy_s_per_byte", p.memory_copy}};
}

/// The profile in `j`; `where` names it in errors. Throws `errc::invalid_argument` naming
/// the key that is missing, not a number, or out of range.
inline schedule::cost_profile cost_profile_from_json(const nlohmann::json& j,
                                                     const std::string& where) {
  const auto fail = [&](const std::string& what) {
    throw error(errc::invalid_argument,
                "chorus::load_cost_profile: " + where + ": " + what + detail::profile_hint);
  };
  if (!j.is_object()) fail("not a JSON object");
  if (!j.contains("chorus_cost_profile") || j["chorus_cost_profile"] != cost_profile_format) {
    fail("not a chorus cost profile of format " + std::to_string(cost_profile_format) +
         " (key \"chorus_cost_profile\")");
  }
  schedule::cost_profile p;
  const auto number = [&](const char* key, double& out, bool may_be_negative) {
    if (!j.contains(key)) fail(std::string("no \"") + key + "\"");
    if (!j[key].is_number()) fail(std::string("\"") + key + "\" is not a number");
    out = j[key].get<double>();
    if (!std::isfinite(out) || (!may_be_negative && out < 0)) {
      fail(std::string("\"") + key + "\" is " + j[key].dump() +
           (may_be_negative ? "" : "; it must be finite and >= 0"));
    }
  };
  number("alpha_s", p.alpha, false);
  number("beta_s_per_byte", p.beta, false);
  number("overhead_s", p.overhead, false);
  number("reduce_s_per_byte", p.reduce, false);
  number("copy_s_per_byte", p.copy, false);
  // negative: "as within a host" (inter_*), "as beta" (window)
  number("inter_alpha_s", p.inter_alpha, true);
  number("inter_beta_s_per_byte", p.inter_beta, true);
  number("window_s_per_byte", p.window, true);
  // Files written before it was measured lack it: then as `window`.
  if (j.contains("window_reduce_s_per_byte")) {
    number("window_reduce_s_per_byte", p.window_reduce, true);
  }
  double cache = 0;
  number("cache_bytes", cache, false);
  p.cache_bytes = static_cast<std::size_t>(cache);
  number("memory_beta_s_per_byte", p.memory_beta, true);
  number("memory_reduce_s_per_byte", p.memory_reduce, true);
  number("memory_copy_s_per_byte", p.memory_copy, true);
  p.source =
      j.contains("source") && j["source"].is_string() ? j["source"].get<std::string>() : where;
  return p;
}

namespace detail {
/// The JSON text of file `path`. Throws `errc::invalid_argument` when it cannot be read or
/// parsed.
inline nlohmann::json read_profile_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw error(errc::invalid_argument,
                "chorus::load_cost_profile: cannot read '" + path + "'" + detail::profile_hint);
  }
  std::stringstream text;
  text << in.rdbuf();
  try {
    return nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::invalid_argument, "chorus::load_cost_profile: '" + path +
                                            "' is not JSON: " + e.what() + detail::profile_hint);
  }
}
}  // namespace detail

/// Reads a profile file. Throws `errc::invalid_argument` when it cannot be read or parsed.
inline schedule::cost_profile load_cost_profile(const std::string& path) {
  return cost_profile_from_json(detail::read_profile_file(path), "'" + path + "'");
}

/// Writes a profile file (with `extra`'s keys too, e.g. the measurements it came from).
/// Throws `errc::invalid_argument` when it cannot be written.
inline void save_cost_profile(const std::string& path, const schedule::cost_profile& p,
                              const nlohmann::json& extra = nlohmann::json::object()) {
  nlohmann::json j = to_json(p);
  for (const auto& [key, value] : extra.items()) j[key] = value;
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  out.flush();
  if (!out) {
    throw error(errc::invalid_argument, "chorus::save_cost_profile: cannot write '" + path + "'");
  }
}

}  // namespace chorus::inline v0
