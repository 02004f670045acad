#pragma once
/// \file
/// `compress::top_k` on the device: the k = ceil(ratio * n) elements of largest magnitude
/// as (index, value) pairs in the host codec's wire (compress/sparsify.hpp: k 32-bit
/// indices in increasing order, then k values), the same selection to the bit: ties go to
/// the lower index, and NaN, whose magnitude key is the largest, is kept first.
///
/// The selection is the host's radix select, on the device and stream-ordered (no host
/// synchronisation): 8-bit digits of the magnitude key (4 passes for float, 8 for double),
/// each pass a histogram of the elements that still share the prefix of the k-th largest
/// key and a one-thread step that fixes the next digit. Then, in tiles of 4,096 elements,
/// every tile counts its elements above and equal to that key, one block scans the counts,
/// and every tile writes its chosen (index, value) pairs at their place. Scratch memory
/// comes from `cudaMallocAsync` on the caller's stream (and returns with `cudaFreeAsync`).
#include <chorus/compress/sparsify.hpp>
#include <chorus/device/cast.cuh>
#include <chorus/device/launch.cuh>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace chorus::inline v0::device {

namespace detail {

/// |x| as an unsigned integer that orders like the magnitude (the host's magnitude_key).
template <class T>
__device__ inline compress::detail::magnitude_key_t<T> device_magnitude_key(T v) noexcept {
  using K = compress::detail::magnitude_key_t<T>;
  K bits;
  memcpy(&bits, &v, sizeof bits);
  return bits & (~K{0} >> 1);
}

/// The radix select's state: the prefix of the k-th largest key found so far, the bits it
/// fixes, and how many of the k are still to be found among the keys with that prefix.
template <class K>
struct select_state {
  K prefix;
  K mask;
  unsigned long long remaining;
};

/// Counts per tile of the keys above the k-th largest key and equal to it, then (after the
/// scan) the counts before the tile.
struct tile_counts {
  unsigned long long above;
  unsigned long long equal;
};

inline constexpr unsigned select_digit_bits = 8;
inline constexpr unsigned select_bins = 1u << select_digit_bits;
/// Elements per tile in the emit step: 256 threads x 16 consecutive elements each.
inline constexpr std::size_t select_items = 16;
inline constexpr std::size_t select_tile = block_threads * select_items;

template <class T, class K>
__global__ void __launch_bounds__(block_threads)
    select_histogram_kernel(const T* x, std::size_t n, const select_state<K>* state, unsigned shift,
                            unsigned* histogram) {
  __shared__ unsigned bins[select_bins];
  for (unsigned b = threadIdx.x; b < select_bins; b += blockDim.x) bins[b] = 0;
  __syncthreads();
  const K prefix = state->prefix, mask = state->mask;
  const std::size_t threads = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += threads) {
    const K key = device_magnitude_key(x[i]);
    if ((key & mask) == prefix) {
      atomicAdd(&bins[static_cast<unsigned>(key >> shift) & (select_bins - 1)], 1u);
    }
  }
  __syncthreads();
  for (unsigned b = threadIdx.x; b < select_bins; b += blockDim.x) {
    if (bins[b] != 0) atomicAdd(&histogram[b], bins[b]);
  }
}

/// Thread 0: the state before the first digit (nothing fixed, k to find).
template <class K>
__global__ void select_init_kernel(select_state<K>* state, std::size_t k) {
  if (threadIdx.x == 0) *state = {0, 0, k};
}

/// Thread 0: the digit of the k-th largest key at `shift`, from the histogram.
template <class K>
__global__ void select_digit_kernel(select_state<K>* state, const unsigned* histogram,
                                    unsigned shift) {
  if (threadIdx.x != 0) return;
  unsigned long long above = 0;
  unsigned d = select_bins - 1;
  // The keys with the current prefix number at least `remaining`, so this stops.
  while (d > 0 && above + histogram[d] < state->remaining) above += histogram[d--];
  state->remaining -= above;
  state->prefix |= static_cast<K>(d) << shift;
  state->mask |= static_cast<K>(select_bins - 1) << shift;
}

template <class T, class K>
__global__ void __launch_bounds__(block_threads)
    select_count_kernel(const T* x, std::size_t n, const select_state<K>* state, tile_counts* tiles,
                        std::size_t tile_count) {
  __shared__ unsigned long long above_sum, equal_sum;
  const K kth = state->prefix;
  for (std::size_t t = blockIdx.x; t < tile_count; t += gridDim.x) {
    if (threadIdx.x == 0) above_sum = equal_sum = 0;
    __syncthreads();
    unsigned long long above = 0, equal = 0;
    const std::size_t end = (t + 1) * select_tile < n ? (t + 1) * select_tile : n;
    for (std::size_t i = t * select_tile + threadIdx.x; i < end; i += blockDim.x) {
      const K key = device_magnitude_key(x[i]);
      above += key > kth;
      equal += key == kth;
    }
    atomicAdd(&above_sum, above);
    atomicAdd(&equal_sum, equal);
    __syncthreads();
    if (threadIdx.x == 0) tiles[t] = {above_sum, equal_sum};
    __syncthreads();
  }
}

/// In place over `values[0, count)` of one block: the exclusive prefix sums; returns the
/// total. Every thread of the block calls it.
__device__ inline unsigned long long block_exclusive_scan(unsigned long long* values,
                                                          unsigned count) {
  __shared__ unsigned long long partial[block_threads];
  // each thread sums a contiguous chunk, the chunks' sums are scanned, then each chunk
  // is rewritten with its offset
  const unsigned chunk = (count + blockDim.x - 1) / blockDim.x;
  const unsigned lo = threadIdx.x * chunk;
  const unsigned hi = lo + chunk < count ? lo + chunk : count;
  unsigned long long sum = 0;
  for (unsigned i = lo; i < hi; ++i) sum += values[i];
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (unsigned offset = 1; offset < blockDim.x; offset *= 2) {  // inclusive, Hillis-Steele
    const unsigned long long add = threadIdx.x >= offset ? partial[threadIdx.x - offset] : 0;
    __syncthreads();
    partial[threadIdx.x] += add;
    __syncthreads();
  }
  unsigned long long running = partial[threadIdx.x] - sum;
  for (unsigned i = lo; i < hi; ++i) {
    const unsigned long long v = values[i];
    values[i] = running;
    running += v;
  }
  const unsigned long long total = partial[blockDim.x - 1];
  __syncthreads();
  return total;
}

/// Tile counts one block scans at a time (2 x 16 KiB of shared memory).
inline constexpr std::size_t scan_chunk = 2048;

/// One block: replaces every tile's counts by the counts of all the tiles before it
/// (at most 2^32 / 4,096 = 2^20 tiles), a chunk at a time with a running carry. (A template
/// only so that every translation unit including this header may define it.)
template <class Tiles = tile_counts>
__global__ void __launch_bounds__(block_threads)
    select_scan_kernel(Tiles* tiles, std::size_t tile_count) {
  __shared__ unsigned long long carry_above, carry_equal;
  __shared__ unsigned long long buffer[2][scan_chunk];
  if (threadIdx.x == 0) carry_above = carry_equal = 0;
  __syncthreads();
  for (std::size_t base = 0; base < tile_count; base += scan_chunk) {
    const auto count =
        static_cast<unsigned>(tile_count - base < scan_chunk ? tile_count - base : scan_chunk);
    for (unsigned i = threadIdx.x; i < count; i += blockDim.x) {
      buffer[0][i] = tiles[base + i].above;
      buffer[1][i] = tiles[base + i].equal;
    }
    __syncthreads();
    const unsigned long long above_total = block_exclusive_scan(buffer[0], count);
    const unsigned long long equal_total = block_exclusive_scan(buffer[1], count);
    for (unsigned i = threadIdx.x; i < count; i += blockDim.x) {
      tiles[base + i] = {carry_above + buffer[0][i], carry_equal + buffer[1][i]};
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      carry_above += above_total;
      carry_equal += equal_total;
    }
    __syncthreads();
  }
}

/// Every tile writes its chosen pairs: an element is chosen when its key is above the k-th
/// largest, or equal to it with fewer than `remaining` equal keys before it; its place is
/// the number of chosen elements before it, so the indices come out increasing.
template <class T, class K>
__global__ void __launch_bounds__(block_threads)
    select_emit_kernel(const T* x, std::size_t n, const select_state<K>* state,
                       const tile_counts* tiles, std::size_t tile_count, std::uint32_t* indices,
                       std::byte* values) {
  __shared__ unsigned long long counts[2][block_threads];
  const K kth = state->prefix;
  const unsigned long long take_equal = state->remaining;
  for (std::size_t t = blockIdx.x; t < tile_count; t += gridDim.x) {
    const std::size_t lo = t * select_tile + threadIdx.x * select_items;
    const std::size_t hi = lo + select_items < n ? lo + select_items : n;
    unsigned long long above = 0, equal = 0;
    for (std::size_t i = lo; i < hi; ++i) {
      const K key = device_magnitude_key(x[i]);
      above += key > kth;
      equal += key == kth;
    }
    counts[0][threadIdx.x] = above;
    counts[1][threadIdx.x] = equal;
    __syncthreads();
    block_exclusive_scan(counts[0], block_threads);
    block_exclusive_scan(counts[1], block_threads);
    above = tiles[t].above + counts[0][threadIdx.x];
    equal = tiles[t].equal + counts[1][threadIdx.x];
    for (std::size_t i = lo; i < hi; ++i) {
      const T v = x[i];
      const K key = device_magnitude_key(v);
      const bool chosen = key > kth || (key == kth && equal < take_equal);
      if (chosen) {
        const unsigned long long at = above + (equal < take_equal ? equal : take_equal);
        indices[at] = static_cast<std::uint32_t>(i);
        memcpy(values + at * sizeof(T), &v, sizeof(T));
      }
      above += key > kth;
      equal += key == kth;
    }
    __syncthreads();  // `counts` is reused by the next tile
  }
}

template <class T>
__global__ void __launch_bounds__(block_threads)
    sparse_decode_add_kernel(const std::uint32_t* indices, const std::byte* values, std::size_t k,
                             T* y, std::size_t n) {
  const std::size_t threads = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t j = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < k;
       j += threads) {
    const std::uint32_t i = indices[j];
    if (i >= n) continue;  // see decode_add
    T v;
    memcpy(&v, values + j * sizeof(T), sizeof(T));
    y[i] = add_rn(y[i], v);
  }
}

}  // namespace detail

/// Encodes the n device values `x` into the device buffer `wire`
/// (`codec.wire_bytes<T>(n)` bytes, 4-byte aligned), enqueued on `stream`: the indices of
/// the k largest magnitudes in increasing order, then their values. Uses about 1.3 KiB plus
/// 16 bytes per 4,096 elements of stream-ordered scratch memory.
template <compress::gradient_type T>
void encode(const compress::top_k& codec, std::span<const T> x, std::span<std::byte> wire,
            const compress::context&, cudaStream_t stream) {
  using K = compress::detail::magnitude_key_t<T>;
  const std::size_t n = x.size();
  compress::detail::check_index_range("top_k", n);
  const std::size_t k = compress::detail::kept("top_k", codec.ratio, n);
  compress::detail::check_wire("top_k", wire.size(), compress::detail::sparse_wire::bytes<T>(k));
  if (k == 0) return;
  detail::check_pointer(x.data(), n, "encode(top_k)", "x");
  auto* indices =
      const_cast<std::uint32_t*>(detail::wire_array<std::uint32_t>(wire.data(), "encode(top_k)"));
  std::byte* values = wire.data() + k * sizeof(std::uint32_t);

  const std::size_t tile_count = (n + detail::select_tile - 1) / detail::select_tile;
  const std::size_t state_bytes = (sizeof(detail::select_state<K>) + 255) / 256 * 256;
  const std::size_t histogram_bytes = detail::select_bins * sizeof(unsigned);
  const std::size_t scratch_bytes =
      state_bytes + histogram_bytes + tile_count * sizeof(detail::tile_counts);
  void* scratch = nullptr;
  check(cudaMallocAsync(&scratch, scratch_bytes, stream), "cudaMallocAsync in encode(top_k)");
  auto* state = static_cast<detail::select_state<K>*>(scratch);
  auto* histogram = reinterpret_cast<unsigned*>(static_cast<std::byte*>(scratch) + state_bytes);
  auto* tiles = reinterpret_cast<detail::tile_counts*>(static_cast<std::byte*>(scratch) +
                                                       state_bytes + histogram_bytes);
  try {
    detail::launch("launching chorus::device::encode(top_k) (init)", detail::select_init_kernel<K>,
                   1u, stream, state, k);
    const unsigned blocks = detail::blocks_for(n, 8);
    for (int shift = static_cast<int>(sizeof(K) * 8 - detail::select_digit_bits); shift >= 0;
         shift -= static_cast<int>(detail::select_digit_bits)) {
      check(cudaMemsetAsync(histogram, 0, histogram_bytes, stream),
            "cudaMemsetAsync in encode(top_k)");
      detail::launch("launching chorus::device::encode(top_k) (histogram)",
                     detail::select_histogram_kernel<T, K>, blocks, stream, x.data(), n,
                     static_cast<const detail::select_state<K>*>(state),
                     static_cast<unsigned>(shift), histogram);
      detail::launch("launching chorus::device::encode(top_k) (digit)",
                     detail::select_digit_kernel<K>, 1u, stream, state,
                     static_cast<const unsigned*>(histogram), static_cast<unsigned>(shift));
    }
    const unsigned tile_blocks = detail::blocks_for(tile_count * detail::block_threads, 1);
    detail::launch("launching chorus::device::encode(top_k) (count)",
                   detail::select_count_kernel<T, K>, tile_blocks, stream, x.data(), n,
                   static_cast<const detail::select_state<K>*>(state), tiles, tile_count);
    detail::launch("launching chorus::device::encode(top_k) (scan)", detail::select_scan_kernel<>,
                   1u, stream, tiles, tile_count);
    detail::launch("launching chorus::device::encode(top_k) (emit)",
                   detail::select_emit_kernel<T, K>, tile_blocks, stream, x.data(), n,
                   static_cast<const detail::select_state<K>*>(state),
                   static_cast<const detail::tile_counts*>(tiles), tile_count, indices, values);
  } catch (...) {
    (void)cudaFreeAsync(scratch, stream);
    throw;
  }
  check(cudaFreeAsync(scratch, stream), "cudaFreeAsync in encode(top_k)");
}

/// Adds the pairs of the device buffer `wire` to the n device values `y` (`y[index] +=
/// value`), enqueued on `stream`. The host codec throws when an index is out of range (the
/// ranks disagree on n); the kernel cannot report without synchronising, so it skips such
/// pairs -- pass every rank the same n.
template <compress::gradient_type T>
void decode_add(const compress::top_k& codec, std::span<const std::byte> wire, std::span<T> y,
                const compress::context&, cudaStream_t stream) {
  const std::size_t k = compress::detail::kept("top_k", codec.ratio, y.size());
  compress::detail::check_wire("top_k", wire.size(), compress::detail::sparse_wire::bytes<T>(k));
  if (k == 0) return;
  detail::check_pointer(y.data(), y.size(), "decode_add(top_k)", "y");
  const auto* indices = detail::wire_array<std::uint32_t>(wire.data(), "decode_add(top_k)");
  detail::launch("launching chorus::device::decode_add(top_k)", detail::sparse_decode_add_kernel<T>,
                 detail::blocks_for(k, 4), stream, indices, wire.data() + k * sizeof(std::uint32_t),
                 k, y.data(), y.size());
}

}  // namespace chorus::inline v0::device
