#pragma once
/// \file
/// `compress::ledger`: an observer a compressed collective may be given (any trailing
/// argument `book`): what the calls sent and received, what the plain collective would have
/// sent, and where their time went (encoding, decoding, the other local work, the
/// collectives that moved the payloads). The state the calls keep between them (step
/// counters, scratch) is the communicator's `compress::session`, not the ledger's.
///
/// Sent and received bytes are measured: the executors count every byte they hand to the
/// transport into the communicator (`communicator::last_traffic`), whatever path ran
/// (schedules, one-sided loads and gets), and the ledger adds up those counters around each
/// collective that moves payloads. "Plain" is a prediction -- the uncompressed collective
/// on the gradient's own element type is not run: the sends of the schedule the
/// communicator's tuner would pick for it (none for a one-sided path, where peers read
/// instead) -- so `plain_bytes / sent_bytes` is the compression ratio on the wire, not a
/// claim about bits per element.
#include <chorus/communicator.hpp>
#include <chorus/dispatch/tuner.hpp>
#include <chorus/schedule/build.hpp>

#include <chrono>
#include <cstdint>
#include <numeric>
#include <span>
#include <type_traits>
#include <vector>

namespace chorus::inline v0::compress {

/// Byte and time counters of one rank's compressed collectives.
class ledger {
 public:
  /// Totals since construction or `reset()`.
  struct totals {
    std::uint64_t calls = 0;
    std::uint64_t elements = 0;        ///< gradient elements reduced
    std::uint64_t sent_bytes = 0;      ///< bytes this rank sent through the transport (measured)
    std::uint64_t received_bytes = 0;  ///< bytes this rank received or read (measured)
    std::uint64_t plain_bytes = 0;     ///< bytes the uncompressed collective would send
    std::uint64_t payload_bytes = 0;   ///< bytes of this rank's encoded payloads
    double encode_seconds = 0;         ///< encoding (error feedback's local decode included)
    double decode_seconds = 0;
    /// The rest of the calls' local work: copies, zero fills, averaging, error feedback's
    /// residual update, PowerSGD's products -- the call's wall time less the collectives,
    /// encoding and decoding. Compression costs it as much as encoding.
    double other_seconds = 0;
    double collective_seconds = 0;  ///< inside the collectives that moved the payloads
  };

  [[nodiscard]] const totals& total() const noexcept { return total_; }
  /// The counters of the most recent call only.
  [[nodiscard]] const totals& last() const noexcept { return last_; }
  void reset() noexcept { total_ = last_ = {}; }

  // ---- used by the collectives
  void begin(std::uint64_t elements) {
    last_ = {};
    last_.calls = 1;
    last_.elements = elements;
    started_ = std::chrono::steady_clock::now();
  }
  /// Adds what one collective moved (its communicator's `last_traffic()`).
  void add_traffic(const traffic& t) {
    last_.sent_bytes += t.sent_bytes;
    last_.received_bytes += t.received_bytes;
  }
  void add_plain(std::uint64_t plain) { last_.plain_bytes += plain; }
  void add_payload(std::uint64_t bytes) { last_.payload_bytes += bytes; }
  void add_encode(double s) { last_.encode_seconds += s; }
  void add_decode(double s) { last_.decode_seconds += s; }
  void add_collective(double s) { last_.collective_seconds += s; }
  void end() {
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    const double accounted = last_.collective_seconds + last_.encode_seconds + last_.decode_seconds;
    last_.other_seconds = wall > accounted ? wall - accounted : 0.0;
    total_.calls += last_.calls;
    total_.elements += last_.elements;
    total_.sent_bytes += last_.sent_bytes;
    total_.received_bytes += last_.received_bytes;
    total_.plain_bytes += last_.plain_bytes;
    total_.payload_bytes += last_.payload_bytes;
    total_.encode_seconds += last_.encode_seconds;
    total_.decode_seconds += last_.decode_seconds;
    total_.other_seconds += last_.other_seconds;
    total_.collective_seconds += last_.collective_seconds;
  }

 private:
  totals total_;
  totals last_;
  std::chrono::steady_clock::time_point started_{};
};

namespace detail {
/// Seconds since `start`.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Bytes this rank would send in collective `kind` over elements of `elem` bytes on `comm`,
/// by the schedule its tuner picks (0 for one-sided: peers read instead). `counts` as the
/// collective's schedule params (block counts for reduce_scatter / all_gather, send/recv
/// counts for all_to_all). A prediction for calls that do not run: the plain baseline.
template <class Transport>
std::uint64_t plain_sent_bytes(const communicator<Transport>& comm, schedule::collective kind,
                               std::size_t elem, std::size_t count,
                               const std::vector<std::size_t>& counts = {},
                               const std::vector<std::size_t>& send_counts = {},
                               const std::vector<std::size_t>& recv_counts = {}) {
  if (comm.size() <= 1) return 0;
  std::vector<std::size_t> send_offsets(send_counts.size()), recv_offsets(recv_counts.size());
  std::exclusive_scan(send_counts.begin(), send_counts.end(), send_offsets.begin(), std::size_t{0});
  std::exclusive_scan(recv_counts.begin(), recv_counts.end(), recv_offsets.begin(), std::size_t{0});
  chorus::detail::collective_call call;
  call.kind = kind;
  call.api = "plain";
  call.elem_size = elem;
  call.rank = comm.rank();
  call.size = comm.size();
  call.hosts = comm.hosts();
  call.count = count;
  call.counts = counts;
  call.send_counts = send_counts;
  call.send_offsets = send_offsets;
  call.recv_counts = recv_counts;
  call.recv_offsets = recv_offsets;
  const schedule::algorithm a = chorus::detail::resolve_algorithm(comm, call);
  if (!schedule::has_schedule(a)) return 0;
  const schedule::schedule s = schedule::build(a, call);
  std::uint64_t elems = 0;
  for (const schedule::op& o : s.ops) {
    if (o.code == schedule::op_code::send) elems += o.src.count;
  }
  return elems * elem;
}
}  // namespace detail

}  // namespace chorus::inline v0::compress
