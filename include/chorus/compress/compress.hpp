#pragma once
/// \file
/// Gradient compression: every codec, error feedback, compression as a policy of
/// `chorus::all_reduce` / `reduce_scatter(_v)` / `all_gather`, the session, the ledger and
/// the break-even report. Not included by `<chorus/chorus.hpp>`; include this.
///
///     #include <chorus/compress/compress.hpp>
#include <chorus/chorus.hpp>

#include <chorus/compress/cast.hpp>
#include <chorus/compress/collectives.hpp>
#include <chorus/compress/compressor.hpp>
#include <chorus/compress/error_feedback.hpp>
#include <chorus/compress/ledger.hpp>
#include <chorus/compress/power_sgd.hpp>
#include <chorus/compress/quantize.hpp>
#include <chorus/compress/report.hpp>
#include <chorus/compress/rng.hpp>
#include <chorus/compress/session.hpp>
#include <chorus/compress/sign.hpp>
#include <chorus/compress/sparsify.hpp>
