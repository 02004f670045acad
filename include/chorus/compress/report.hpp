#pragma once
/// \file
/// `compress::report`: compression ratio, codec time and the break-even link rate of one
/// rank's compressed collectives, from its `ledger`.
///
/// The arithmetic (per call, this rank): the plain collective sends `plain` bytes, the
/// compressed one `sent` bytes and spends `codec = encode + decode + other` seconds of
/// local work (other: the copies, zero fills, averaging and residual updates around the
/// codec -- everything but the collectives, measured as the call's wall time less them). Over a
/// link of rate B (bytes/s) where the transfer dominates, plain costs plain / B, compressed sent /
/// B + codec. Compression wins when
///     B < (plain - sent) / codec          =: break-even rate.
/// Fast links (above the break-even rate) lose time to compression, which is what
/// independent studies of gradient compression keep finding; the report makes the number
/// explicit rather than quoting only the ratio. Latency terms (per-message costs, equal
/// for both to first order) are left out.
#include <chorus/compress/ledger.hpp>

#include <cstdio>
#include <limits>
#include <string>

namespace chorus::inline v0::compress {

/// Per-call averages of a ledger, and the break-even link rate.
struct report {
  std::uint64_t calls = 0;
  double plain_bytes = 0;         ///< per call: bytes the uncompressed collective sends
  double sent_bytes = 0;          ///< per call: bytes the compressed collective sent
  double encode_seconds = 0;      ///< per call
  double decode_seconds = 0;      ///< per call
  double other_seconds = 0;       ///< per call: the rest of the local work
  double collective_seconds = 0;  ///< per call: inside the collectives

  report() = default;
  explicit report(const ledger& book) {
    const ledger::totals& t = book.total();
    calls = t.calls;
    if (calls == 0) return;
    const double c = static_cast<double>(calls);
    plain_bytes = static_cast<double>(t.plain_bytes) / c;
    sent_bytes = static_cast<double>(t.sent_bytes) / c;
    encode_seconds = t.encode_seconds / c;
    decode_seconds = t.decode_seconds / c;
    other_seconds = t.other_seconds / c;
    collective_seconds = t.collective_seconds / c;
  }

  /// plain / sent (infinity when nothing was sent, 1 with no data).
  [[nodiscard]] double ratio() const noexcept {
    if (sent_bytes == 0) return plain_bytes == 0 ? 1.0 : std::numeric_limits<double>::infinity();
    return plain_bytes / sent_bytes;
  }
  /// All of a call's local work: what compression adds to moving the bytes.
  [[nodiscard]] double codec_seconds() const noexcept {
    return encode_seconds + decode_seconds + other_seconds;
  }
  /// Link rate (bytes/s) below which the compressed collective is faster; 0 when it saves
  /// no bytes; infinity when the codec costs no measurable time.
  [[nodiscard]] double break_even_bytes_per_second() const noexcept {
    const double saved = plain_bytes - sent_bytes;
    if (saved <= 0) return 0;
    if (codec_seconds() <= 0) return std::numeric_limits<double>::infinity();
    return saved / codec_seconds();
  }
  /// Predicted transfer-bound time per call over a link of `bytes_per_second`.
  [[nodiscard]] double plain_seconds(double bytes_per_second) const noexcept {
    return plain_bytes / bytes_per_second;
  }
  [[nodiscard]] double compressed_seconds(double bytes_per_second) const noexcept {
    return sent_bytes / bytes_per_second + codec_seconds();
  }

  /// One paragraph for logs, e.g. "12 calls: 4.19 MB -> 84.0 kB per call (ratio 49.9), codec
  /// 3.1 ms (encode 2.6 + decode 0.4 + other 0.1); wins below 1.33 GB/s (10.7 Gbit/s)".
  [[nodiscard]] std::string to_string() const {
    char buf[360];
    const double be = break_even_bytes_per_second();
    std::snprintf(buf, sizeof(buf),
                  "%llu calls: %.4g MB -> %.4g MB per call (ratio %.3g), codec %.3g ms (encode "
                  "%.3g + decode %.3g + other %.3g); compression wins below %.4g GB/s (%.4g "
                  "Gbit/s)",
                  static_cast<unsigned long long>(calls), plain_bytes / 1e6, sent_bytes / 1e6,
                  ratio(), codec_seconds() * 1e3, encode_seconds * 1e3, decode_seconds * 1e3,
                  other_seconds * 1e3, be / 1e9, be * 8 / 1e9);
    return buf;
  }
};

}  // namespace chorus::inline v0::compress
