// The data-movement kernels of the GPU tests: chorus::device::copy, pack and unpack, the
// device codecs (compress::cast, block_quant, top_k), and launch.cuh's vector split (host
// code), reached from device_test.cpp and host_test.cpp through kernels.hpp.
#include <chorus/device/cast.cuh>
#include <chorus/device/copy.cuh>
#include <chorus/device/quantize.cuh>
#include <chorus/device/top_k.cuh>

#include "kernels.hpp"

#include <cstdint>
#include <span>
#include <stdexcept>

namespace chorus_test {
namespace {

/// f(U{}) for an unsigned integer type of `bytes` bytes (the bits being moved).
template <class F>
void with_width(std::size_t bytes, F&& f) {
  switch (bytes) {
    case 1:
      return f(std::uint8_t{});
    case 2:
      return f(std::uint16_t{});
    case 4:
      return f(std::uint32_t{});
    case 8:
      return f(std::uint64_t{});
    default:
      throw std::invalid_argument("chorus_test: element width must be 1, 2, 4 or 8");
  }
}

/// f(G{}, W{}) for gradient type G (float or double) and wire type W.
template <class F>
void with_cast(chorus::dtype wire_type, bool dbl, F&& f) {
  const auto with_gradient = [&](auto w) {
    if (dbl) {
      f(double{}, w);
    } else {
      f(float{}, w);
    }
  };
  switch (wire_type) {
    case chorus::dtype::float16:
      return with_gradient(chorus::half{});
    case chorus::dtype::bfloat16:
      return with_gradient(chorus::bfloat16{});
    case chorus::dtype::float32:
      if (!dbl) throw std::invalid_argument("chorus_test: cast<float> needs double gradients");
      return f(double{}, float{});
    default:
      throw std::invalid_argument("chorus_test: the cast wire is float16, bfloat16 or float32");
  }
}

chorus::compress::context context_for(int ranks) {
  chorus::compress::context ctx;
  ctx.ranks = ranks;
  return ctx;
}

}  // namespace

vector_split device_split(std::size_t elem_bytes, std::size_t n, std::uintptr_t p0,
                          std::uintptr_t p1, std::uintptr_t p2) {
  vector_split out;
  with_width(elem_bytes, [&]<class U>(U) {
    const auto s = chorus::device::detail::split_for<U>(n, reinterpret_cast<const void*>(p0),
                                                        reinterpret_cast<const U*>(p1),
                                                        reinterpret_cast<const U*>(p2));
    out = {s.head, s.vectors, chorus::device::detail::vec16<U>::lanes};
  });
  return out;
}

void device_copy(std::size_t elem_bytes, const void* src, void* dst, std::size_t n,
                 cudaStream_t stream) {
  with_width(elem_bytes, [&]<class U>(U) {
    chorus::device::copy(static_cast<const U*>(src), static_cast<U*>(dst), n, stream);
  });
}

void device_pack(std::size_t elem_bytes, bool gather, const void* src, void* dst, std::size_t count,
                 std::size_t length, std::size_t stride, cudaStream_t stream) {
  const chorus::device::strided_blocks layout{.count = count, .length = length, .stride = stride};
  with_width(elem_bytes, [&]<class U>(U) {
    if (gather) {
      chorus::device::pack(static_cast<const U*>(src), static_cast<U*>(dst), layout, stream);
    } else {
      chorus::device::unpack(static_cast<const U*>(src), static_cast<U*>(dst), layout, stream);
    }
  });
}

void device_cast_encode(chorus::dtype wire_type, bool dbl, bool pre_divide, int ranks,
                        const void* x, std::size_t n, void* wire, std::size_t wire_bytes,
                        cudaStream_t stream) {
  with_cast(wire_type, dbl, [&]<class G, class W>(G, W) {
    const chorus::compress::cast<W> codec{.pre_divide = pre_divide};
    chorus::device::encode(codec, std::span(static_cast<const G*>(x), n),
                           std::span(static_cast<std::byte*>(wire), wire_bytes), context_for(ranks),
                           stream);
  });
}

void device_cast_decode_add(chorus::dtype wire_type, bool dbl, bool pre_divide, int ranks,
                            const void* wire, std::size_t wire_bytes, void* y, std::size_t n,
                            cudaStream_t stream) {
  with_cast(wire_type, dbl, [&]<class G, class W>(G, W) {
    const chorus::compress::cast<W> codec{.pre_divide = pre_divide};
    chorus::device::decode_add(codec, std::span(static_cast<const std::byte*>(wire), wire_bytes),
                               std::span(static_cast<G*>(y), n), context_for(ranks), stream);
  });
}

void device_top_k_encode(bool dbl, double ratio, const void* x, std::size_t n, void* wire,
                         std::size_t wire_bytes, cudaStream_t stream) {
  const chorus::compress::top_k codec{.ratio = ratio};
  const auto run = [&]<class G>(G) {
    chorus::device::encode(codec, std::span(static_cast<const G*>(x), n),
                           std::span(static_cast<std::byte*>(wire), wire_bytes), context_for(1),
                           stream);
  };
  dbl ? run(double{}) : run(float{});
}

void device_top_k_decode_add(bool dbl, double ratio, const void* wire, std::size_t wire_bytes,
                             void* y, std::size_t n, cudaStream_t stream) {
  const chorus::compress::top_k codec{.ratio = ratio};
  const auto run = [&]<class G>(G) {
    chorus::device::decode_add(codec, std::span(static_cast<const std::byte*>(wire), wire_bytes),
                               std::span(static_cast<G*>(y), n), context_for(1), stream);
  };
  dbl ? run(double{}) : run(float{});
}

void device_quant_encode(bool dbl, std::size_t block, const void* x, std::size_t n, void* wire,
                         std::size_t wire_bytes, cudaStream_t stream) {
  const chorus::compress::block_quant<std::int8_t> codec{.block = block};
  const auto run = [&]<class G>(G) {
    chorus::device::encode(codec, std::span(static_cast<const G*>(x), n),
                           std::span(static_cast<std::byte*>(wire), wire_bytes), context_for(1),
                           stream);
  };
  dbl ? run(double{}) : run(float{});
}

void device_quant_decode_add(bool dbl, std::size_t block, const void* wire, std::size_t wire_bytes,
                             void* y, std::size_t n, cudaStream_t stream) {
  const chorus::compress::block_quant<std::int8_t> codec{.block = block};
  const auto run = [&]<class G>(G) {
    chorus::device::decode_add(codec, std::span(static_cast<const std::byte*>(wire), wire_bytes),
                               std::span(static_cast<G*>(y), n), context_for(1), stream);
  };
  dbl ? run(double{}) : run(float{});
}

}  // namespace chorus_test
