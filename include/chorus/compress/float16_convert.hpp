#pragma once
/// \file
/// The bulk half/bfloat16 conversions under their `chorus::compress` names, for the cast
/// codecs; they live in `<chorus/detail/float16_convert.hpp>`, shared with the 16-bit
/// reductions.
#include <chorus/detail/float16_convert.hpp>

namespace chorus::inline v0::compress {
using chorus::float16_kernel;
using chorus::float16_kernel_for;
using chorus::from_float16;
using chorus::set_vector_conversions;
using chorus::to_float16;
using chorus::vector_conversions;
}  // namespace chorus::inline v0::compress
