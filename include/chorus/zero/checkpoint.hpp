#pragma once
/// \file
/// The sharded checkpoint format of `zero::sharded_optimizer`: one file per rank, each
/// self-describing, so that a job of M ranks loads what N ranks saved, for any N and M,
/// with no offline conversion step.
///
/// A directory holds one checkpoint: files `zero-rank-RRRRR-of-NNNNN.chz`, one per saving
/// rank. Each file (little-endian, fixed-width integers):
///
///     magic "CHORUSZ\0" | u32 version (1) | u32 element type (1 = float32)
///     u32 world N | u32 rank | u32 geometry id | u32 optimizer id | u32 state count S
///     u64 step | u64 tensor count | u64 size per tensor...
///     u64 segment count | per segment: u64 tensor, u64 offset, u64 length, u8 padding
///     u64 shard elements E | float32 master[E] | float32 state_1[E] ... state_S[E]
///     u64 FNV-1a 64 checksum of every byte before it
///
/// The segments are the saving rank's shard layout (see `partition.hpp`), so a loader
/// learns from the files alone where every element of every tensor is. Loading reads the
/// files one at a time (memory: one file beyond the loader's own shard) and copies each
/// saved segment's overlap with each segment the loader needs. Truncated or corrupt files,
/// a missing rank, a different model (tensor sizes), optimizer or state count, and elements
/// that no file (or two files) hold are errors naming the file and what to do.
#include <chorus/core/bytes.hpp>
#include <chorus/core/error.hpp>
#include <chorus/core/hash.hpp>
#include <chorus/zero/partition.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

namespace chorus::inline v0::zero {

/// What one checkpoint file describes besides its arrays.
struct checkpoint_header {
  std::uint32_t world = 1;
  std::uint32_t rank = 0;
  std::uint32_t geometry_id = 0;
  std::uint32_t optimizer_id = 0;
  std::uint32_t state_count = 0;
  std::uint64_t step = 0;
  std::vector<std::size_t> sizes;
  std::vector<segment> segments;
};

/// Where a loader wants tensor elements: `[offset, offset + length)` of tensor `tensor`
/// goes to position `position` of each output array.
struct checkpoint_target {
  std::size_t tensor = 0;
  std::size_t offset = 0;
  std::size_t length = 0;
  std::size_t position = 0;
};

namespace detail {
inline constexpr char checkpoint_magic[8] = {'C', 'H', 'O', 'R', 'U', 'S', 'Z', '\0'};
inline constexpr std::uint32_t checkpoint_version = 1;
inline constexpr std::uint32_t checkpoint_float32 = 1;

[[noreturn]] inline void checkpoint_error(const std::filesystem::path& file,
                                          const std::string& what) {
  throw error(errc::invalid_argument, "chorus::zero checkpoint " + file.string() + ": " + what);
}

/// Reads a checkpoint's fields (`chorus::detail::byte_reader`); running past the end is a
/// "truncated" error naming the file.
class shard_reader {
 public:
  /// `bytes` starts `origin` bytes into a file of which `size` bytes are read (for the
  /// message: the header is the first 64 bytes).
  shard_reader(std::span<const std::byte> bytes, const std::filesystem::path& file,
               std::size_t origin = 0, std::size_t size = 0) noexcept
      : r_(bytes), origin_(origin), size_(size != 0 ? size : bytes.size()), file_(file) {}
  template <class V>
  V get() {
    const V v = r_.template get<V>();
    check();
    return v;
  }
  std::span<const std::byte> take(std::size_t n) {
    const auto b = r_.take(n);
    check();
    return b;
  }
  /// A count that must fit in what is left, `unit` bytes per item.
  std::size_t get_count(std::size_t unit) {
    const auto n = get<std::uint64_t>();
    if (unit != 0 && n > r_.left() / unit) truncated();  // cannot fit
    return static_cast<std::size_t>(n);
  }
  [[nodiscard]] std::size_t left() const noexcept { return r_.left(); }

 private:
  void check() const {
    if (r_.failed()) truncated();
  }
  [[noreturn]] void truncated() const {
    checkpoint_error(file_,
                     "is truncated (" + std::to_string(size_) + " bytes; it ends inside its " +
                         (origin_ + r_.position() < 64 ? "header" : "data") + "); save it again");
  }
  chorus::detail::byte_reader r_;
  std::size_t origin_;
  std::size_t size_;
  const std::filesystem::path& file_;
};

inline std::string checkpoint_file_name(std::uint32_t rank, std::uint32_t world) {
  char name[64];
  std::snprintf(name, sizeof name, "zero-rank-%05u-of-%05u.chz", rank, world);
  return name;
}

/// The world size of the checkpoint in `dir`, from the name of its rank-0 file.
inline std::uint32_t checkpoint_world(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    checkpoint_error(dir, "is not a directory; pass the directory save() wrote");
  }
  std::vector<std::uint32_t> found;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    unsigned world = 0;
    if (n.starts_with("zero-rank-00000-of-") &&
        std::sscanf(n.c_str(), "zero-rank-00000-of-%u.chz", &world) == 1 &&
        n == checkpoint_file_name(0, world)) {
      found.push_back(world);
    }
  }
  if (found.empty())
    checkpoint_error(dir,
                     "holds no zero-rank-00000-of-N.chz file; is it a chorus::zero checkpoint?");
  if (found.size() > 1) {
    checkpoint_error(dir, "holds checkpoints of " + std::to_string(found.size()) +
                              " different world sizes; keep one checkpoint per directory");
  }
  return found[0];
}
}  // namespace detail

/// Writes one rank's checkpoint file into `dir` (created if missing): the header, then
/// `arrays` (master weights, then each optimizer state), each `shard elements` long. The
/// file appears atomically (written under a temporary name, then renamed).
inline void write_checkpoint_shard(const std::filesystem::path& dir, const checkpoint_header& h,
                                   std::span<const std::span<const float>> arrays) {
  std::filesystem::create_directories(dir);
  chorus::detail::byte_writer w;
  w.put_bytes(std::as_bytes(std::span(detail::checkpoint_magic)));
  w.put(detail::checkpoint_version);
  w.put(detail::checkpoint_float32);
  for (std::uint32_t v : {h.world, h.rank, h.geometry_id, h.optimizer_id, h.state_count}) w.put(v);
  w.put(h.step);
  w.put(static_cast<std::uint64_t>(h.sizes.size()));
  for (std::size_t s : h.sizes) w.put(static_cast<std::uint64_t>(s));
  w.put(static_cast<std::uint64_t>(h.segments.size()));
  std::size_t elements = 0;
  for (const segment& s : h.segments) {
    w.put(static_cast<std::uint64_t>(s.tensor));
    w.put(static_cast<std::uint64_t>(s.offset));
    w.put(static_cast<std::uint64_t>(s.length));
    w.put(static_cast<std::uint8_t>(s.padding ? 1 : 0));
    elements += s.length;
  }
  w.put(static_cast<std::uint64_t>(elements));
  for (auto a : arrays) {
    if (a.size() != elements) {
      throw std::invalid_argument(
          "chorus::zero::write_checkpoint_shard: an array's size is not the shard size");
    }
    w.put_bytes(std::as_bytes(std::span(a)));
  }
  w.put(fnv1a_of(w.bytes));
  const std::filesystem::path file = dir / detail::checkpoint_file_name(h.rank, h.world);
  const std::filesystem::path tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(w.bytes.data()),
              static_cast<std::streamsize>(w.bytes.size()));
    if (!out) detail::checkpoint_error(tmp, "could not be written (disk full or no permission?)");
  }
  std::filesystem::rename(tmp, file);
}

/// Reads and validates one checkpoint file: magic, version, element type, checksum, and
/// that its arrays have the size its segments say. Returns the header; `arrays` receives
/// `1 + state_count` arrays of the shard size.
inline checkpoint_header read_checkpoint_shard(const std::filesystem::path& file,
                                               std::vector<std::vector<float>>& arrays) {
  std::ifstream in(file, std::ios::binary);
  if (!in)
    detail::checkpoint_error(file, "cannot be opened (missing? every saving rank writes one file)");
  const std::vector<char> text((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
  const std::span<const std::byte> bytes = std::as_bytes(std::span(text));
  constexpr std::size_t magic = sizeof detail::checkpoint_magic;
  if (bytes.size() < magic ||
      std::memcmp(bytes.data(), detail::checkpoint_magic, sizeof detail::checkpoint_magic) != 0) {
    if (bytes.size() < magic) detail::shard_reader(bytes, file).take(magic);  // truncated
    detail::checkpoint_error(file, "is not a chorus::zero checkpoint file (wrong magic)");
  }
  detail::shard_reader head(bytes.subspan(magic), file, magic, bytes.size());
  if (const auto v = head.get<std::uint32_t>(); v != detail::checkpoint_version) {
    detail::checkpoint_error(file, "has format version " + std::to_string(v) +
                                       "; this chorus reads version " +
                                       std::to_string(detail::checkpoint_version));
  }
  if (const auto t = head.get<std::uint32_t>(); t != detail::checkpoint_float32) {
    detail::checkpoint_error(file,
                             "has element type " + std::to_string(t) + "; expected 1 (float32)");
  }
  if (head.left() < sizeof(std::uint64_t)) head.take(head.left() + 1);  // truncated
  const std::size_t body = bytes.size() - sizeof(std::uint64_t);
  std::uint64_t stored = 0;
  std::memcpy(&stored, bytes.data() + body, sizeof stored);
  if (stored != fnv1a_of(bytes.first(body))) {
    detail::checkpoint_error(file, "fails its checksum (truncated or corrupted); save it again");
  }
  // the fields after the magic, version and element type, up to the checksum
  detail::shard_reader r(bytes.subspan(magic + 8, body - magic - 8), file, magic + 8, body);
  checkpoint_header h;
  h.world = r.get<std::uint32_t>();
  h.rank = r.get<std::uint32_t>();
  h.geometry_id = r.get<std::uint32_t>();
  h.optimizer_id = r.get<std::uint32_t>();
  h.state_count = r.get<std::uint32_t>();
  h.step = r.get<std::uint64_t>();
  h.sizes.resize(r.get_count(8));
  for (auto& s : h.sizes) s = static_cast<std::size_t>(r.get<std::uint64_t>());
  h.segments.resize(r.get_count(25));
  std::size_t elements = 0;
  for (auto& s : h.segments) {
    s.tensor = static_cast<std::size_t>(r.get<std::uint64_t>());
    s.offset = static_cast<std::size_t>(r.get<std::uint64_t>());
    s.length = static_cast<std::size_t>(r.get<std::uint64_t>());
    s.padding = r.get<std::uint8_t>() != 0;
    if (s.tensor >= h.sizes.size())
      detail::checkpoint_error(file, "has a segment of a tensor it does not list");
    if (!s.padding && (s.offset > h.sizes[s.tensor] || s.length > h.sizes[s.tensor] - s.offset)) {
      detail::checkpoint_error(file, "has a segment past the end of its tensor");
    }
    elements += s.length;
  }
  const std::size_t e = r.get_count(4);
  if (e != elements)
    detail::checkpoint_error(file, "has a shard size that does not match its segments");
  arrays.assign(1 + h.state_count, {});
  for (auto& a : arrays) {
    const std::span<const std::byte> data = r.take(e * sizeof(float));
    a.resize(e);
    std::memcpy(a.data(), data.data(), data.size());
  }
  if (r.left() != 0) detail::checkpoint_error(file, "has trailing bytes after its data");
  return h;
}

/// Targets grouped by tensor, for `for_each_overlap`: `result[t]` lists the indices of the
/// targets of tensor t.
inline std::vector<std::vector<std::size_t>> targets_by_tensor(
    std::span<const checkpoint_target> targets, std::size_t tensors) {
  std::vector<std::vector<std::size_t>> by(tensors);
  for (std::size_t i = 0; i < targets.size(); ++i) by.at(targets[i].tensor).push_back(i);
  return by;
}

/// Walks what a saved shard (`saved`: its segments in shard order) holds of `targets`:
/// calls `fn(target index, first, last, from)` for each overlap of a saved (non-padding)
/// segment with a target, where `[first, last)` are tensor element indices and `from` is
/// the position of element `first` in the saved shard. Overlaps come in saved-segment
/// order, then target order: the same order wherever the same inputs are walked.
template <class Fn>
void for_each_overlap(std::span<const segment> saved, std::span<const checkpoint_target> targets,
                      const std::vector<std::vector<std::size_t>>& by_tensor, Fn&& fn) {
  std::size_t at = 0;  // position of the segment in the saved shard
  for (const segment& s : saved) {
    if (!s.padding && s.tensor < by_tensor.size()) {
      for (std::size_t i : by_tensor[s.tensor]) {
        const checkpoint_target& t = targets[i];
        const std::size_t a = std::max(s.offset, t.offset);
        const std::size_t b = std::min(s.offset + s.length, t.offset + t.length);
        if (a < b) fn(i, a, b, at + (a - s.offset));
      }
    }
    at += s.length;
  }
}

/// Counts how many times each element of a list of targets was supplied, to find elements
/// supplied never or twice.
class target_coverage {
 public:
  explicit target_coverage(std::span<const checkpoint_target> targets) : targets_(targets) {
    base_.assign(targets.size() + 1, 0);
    for (std::size_t i = 0; i < targets.size(); ++i) base_[i + 1] = base_[i] + targets[i].length;
    count_.assign(base_.back(), 0);
  }
  /// Elements `[first, last)` of target i's tensor were supplied.
  void add(std::size_t i, std::size_t first, std::size_t last) {
    for (std::size_t e = first; e < last; ++e) ++count_[base_[i] + (e - targets_[i].offset)];
  }
  /// "element E of tensor T K times", for the first element not supplied exactly once, or "".
  [[nodiscard]] std::string first_problem() const {
    for (std::size_t i = 0; i < targets_.size(); ++i) {
      for (std::size_t e = 0; e < targets_[i].length; ++e) {
        if (const std::uint32_t k = count_[base_[i] + e]; k != 1) {
          return "element " + std::to_string(targets_[i].offset + e) + " of tensor " +
                 std::to_string(targets_[i].tensor) + " " + std::to_string(k) + " times";
        }
      }
    }
    return "";
  }

 private:
  std::span<const checkpoint_target> targets_;
  std::vector<std::size_t> base_;
  std::vector<std::uint32_t> count_;
};

/// Loads the elements `targets` asks for from the checkpoint in `dir`, whatever world size
/// saved it, into `out` (master weights, then each state; each indexed by `position`).
/// `sizes`, `optimizer_id` and `state_count` must match the saved model; every requested
/// element must be held by exactly one file. Returns the saved step count.
inline std::uint64_t read_checkpoint(const std::filesystem::path& dir,
                                     std::span<const std::size_t> sizes, std::uint32_t optimizer_id,
                                     std::uint32_t state_count,
                                     std::span<const checkpoint_target> targets,
                                     std::span<const std::span<float>> out) {
  const std::uint32_t world = detail::checkpoint_world(dir);
  const auto by_tensor = targets_by_tensor(targets, sizes.size());
  target_coverage filled(targets);  // how many files supplied each element
  std::uint64_t step = 0;
  std::vector<std::vector<float>> arrays;
  for (std::uint32_t r = 0; r < world; ++r) {
    const std::filesystem::path file = dir / detail::checkpoint_file_name(r, world);
    const checkpoint_header h = read_checkpoint_shard(file, arrays);
    if (h.world != world || h.rank != r)
      detail::checkpoint_error(file, "names a different rank or world size than its file name");
    if (!std::equal(h.sizes.begin(), h.sizes.end(), sizes.begin(), sizes.end())) {
      detail::checkpoint_error(
          file, "was saved for a different model (" + std::to_string(h.sizes.size()) +
                    " tensors); its tensor sizes differ from this optimizer's " +
                    std::to_string(sizes.size()));
    }
    if (h.optimizer_id != optimizer_id || h.state_count != state_count) {
      detail::checkpoint_error(
          file, "was saved by a different optimizer (id " + std::to_string(h.optimizer_id) + ", " +
                    std::to_string(h.state_count) + " state values; this one: id " +
                    std::to_string(optimizer_id) + ", " + std::to_string(state_count) + ")");
    }
    if (r == 0) step = h.step;
    if (h.step != step)
      detail::checkpoint_error(file, "is from a different step than rank 0's file; save again");
    for_each_overlap(h.segments, targets, by_tensor,
                     [&](std::size_t i, std::size_t a, std::size_t b, std::size_t from) {
                       const checkpoint_target& t = targets[i];
                       for (std::size_t k = 0; k < out.size(); ++k) {
                         std::memcpy(out[k].data() + t.position + (a - t.offset),
                                     arrays[k].data() + from, (b - a) * sizeof(float));
                       }
                       filled.add(i, a, b);
                     });
  }
  if (const std::string problem = filled.first_problem(); !problem.empty())
    detail::checkpoint_error(
        dir, "holds " + problem + " (expected once); the directory mixes checkpoints");
  return step;
}

}  // namespace chorus::inline v0::zero
