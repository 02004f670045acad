#pragma once
/// \file
/// chorus's compiled mode: the blocking collectives over the library's own transports,
/// declared here and compiled once into the `chorus::compiled` library target, so that a
/// translation unit that runs them parses a few hundred lines of chorus instead of the
/// whole header-only library (fmt's compiled mode has the same shape).
///
///     #include <chorus/compiled.hpp>      // link chorus::compiled
///
///     auto comm = chorus::compiled::communicator::from_env();   // chorusrun, torchrun, ...
///     std::vector<float> grad(n);
///     chorus::compiled::all_reduce(comm, grad, chorus::plus{});
///
/// The calls are the header-only ones with the same arguments, the same checks, errors and
/// results: each forwards to `chorus::all_reduce` (and so on) over a
/// `chorus::communicator<shm_transport>` or `<ucx_transport>` made by the library. What
/// compiled mode covers: the built-in element types (`element_type`: integers, float,
/// double, half, bfloat16) with the built-in ops, bytes (`std::byte`, `char`) moved, and the
/// collectives below, blocking, with the algorithm the tuner picks. User element types and ops,
/// algorithm tags, nonblocking requests, point-to-point, groups, policies (compression,
/// reproducible) and the v-variants need the header-only API (`<chorus/chorus.hpp>`, no library);
/// both can be used in one program, on different communicators.
///
/// Every failure is a `chorus::error` (core/error.hpp), as in the header-only API.
#include <chorus/core/error.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/core/types.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

namespace chorus::inline v0::compiled {

/// The transport a compiled communicator runs over.
enum class transport_kind : std::uint8_t {
  shm,  ///< `shm_transport`: the processes of one host, over shared memory
  ucx,  ///< `ucx_transport`: any hosts (the library must be built with UCX)
};

/// A communicator whose collectives live in the `chorus::compiled` library. Move-only; the
/// destructor leaves the group as `chorus::communicator`'s does.
class communicator {
 public:
  class impl;

  /// `bootstrap::from_env()` (chorusrun, torchrun, mpirun or srun variables, and
  /// CHORUS_TIMEOUT, CHORUS_CHECK, CHORUS_PROGRESS) and a `transport` communicator over that
  /// world. Throws `errc::invalid_argument` for ucx when the library was built without UCX.
  [[nodiscard]] static communicator from_env(transport_kind transport = transport_kind::shm);

  communicator(communicator&& other) noexcept : impl_(other.impl_) { other.impl_ = nullptr; }
  communicator& operator=(communicator&& other) noexcept;
  communicator(const communicator&) = delete;
  communicator& operator=(const communicator&) = delete;
  ~communicator();

  [[nodiscard]] int rank() const;
  [[nodiscard]] int size() const;
  [[nodiscard]] transport_kind transport() const;

  /// The library's side (src/compiled); valid until the communicator is moved from.
  [[nodiscard]] impl& get() const;

 private:
  explicit communicator(impl* p) noexcept : impl_(p) {}
  impl* impl_ = nullptr;
};

namespace detail {

/// Which collective a `call` runs.
enum class collective : std::uint8_t {
  all_reduce,
  reduce,
  reduce_scatter,
  all_gather,
  broadcast,
  gather,
  scatter,
  all_to_all,
  barrier,
};

/// One call, its buffers erased to bytes and the element type carried as a `dtype`.
struct call {
  collective kind = collective::barrier;
  dtype type = dtype::byte;
  op_kind op = op_kind::custom;  ///< reductions only
  const void* in = nullptr;      ///< nullptr with `in_count` 0 for in-place calls
  std::size_t in_count = 0;
  void* out = nullptr;
  std::size_t out_count = 0;
  int root = 0;
  bool in_place = false;
};

/// Runs `c` on `comm` (defined in the library).
void run(communicator& comm, const call& c);

/// The element types compiled mode moves: the built-in ones, and bytes (`std::byte`,
/// `char`), which are moved but not reduced.
template <class T>
concept compiled_element =
    !std::is_const_v<T> &&
    (element_type<T> || std::is_same_v<T, std::byte> || std::is_same_v<T, char>);

template <class R>
using span_element_t = typename decltype(std::span(std::declval<R&>()))::element_type;

/// A contiguous buffer: std::vector, std::array, a C array, a std::span.
template <class R>
concept contiguous = requires(R& r) {
  std::span(r);
};

template <class R>
consteval void check_element() {
  static_assert(compiled_element<std::remove_cv_t<span_element_t<R>>>,
                "chorus::compiled moves the built-in element types (integers, float, double, "
                "half, bfloat16) and bytes; a user element type needs the header-only API, "
                "<chorus/chorus.hpp>.");
}

template <class Op, class E, class T = std::remove_cv_t<E>>
consteval void check_op() {
  static_assert(element_type<T> || !compiled_element<T>,
                "chorus::compiled: bytes (std::byte, char) are moved, not reduced; reduce "
                "them as std::int8_t or std::uint8_t.");
  static_assert(op_kind_v<Op> != op_kind::custom,
                "chorus::compiled reduces with the built-in ops (plus, multiplies, minimum, "
                "maximum, average, bit_and, bit_or, bit_xor); a custom op needs the "
                "header-only API, <chorus/chorus.hpp>.");
  if constexpr (element_type<T>) ::chorus::detail::check_reduction_op<Op, T>();
}

template <class R>
auto erase_in(call& c, R& r) {
  check_element<R>();
  auto s = std::span(r);
  c.type = ::chorus::detail::dtype_for<std::remove_cv_t<span_element_t<R>>>();
  c.in = s.data();
  c.in_count = s.size();
  return s;
}

template <class R>
auto erase_out(call& c, R& r) {
  check_element<R>();
  static_assert(!std::is_const_v<span_element_t<R>>,
                "chorus: the output buffer is read-only (const); pass a writable range.");
  auto s = std::span(r);
  c.type = ::chorus::detail::dtype_for<span_element_t<R>>();
  c.out = s.data();
  c.out_count = s.size();
  return s;
}

template <class In, class Out>
consteval void check_same_element() {
  static_assert(std::is_same_v<std::remove_cv_t<span_element_t<In>>, span_element_t<Out>>,
                "chorus: the input and output buffers must have the same element type.");
}

}  // namespace detail

/// Element-wise reduction of every rank's `inout` into every rank's `inout`.
template <detail::contiguous InOut, class Op>
void all_reduce(communicator& comm, InOut&& inout, Op) {
  detail::check_op<Op, detail::span_element_t<InOut>>();
  detail::call c{detail::collective::all_reduce};
  c.op = op_kind_v<Op>;
  c.in_place = true;
  detail::erase_out(c, inout);
  detail::run(comm, c);
}

/// Element-wise reduction of every rank's `in` into every rank's `out` (same count).
template <detail::contiguous In, detail::contiguous Out, class Op>
void all_reduce(communicator& comm, const In& in, Out&& out, Op) {
  detail::check_same_element<const In, Out>();
  detail::check_op<Op, detail::span_element_t<Out>>();
  detail::call c{detail::collective::all_reduce};
  c.op = op_kind_v<Op>;
  detail::erase_in(c, in);
  detail::erase_out(c, out);
  detail::run(comm, c);
}

/// Element-wise reduction of every rank's `in` into the root's `out` (other ranks' `out`
/// may be empty).
template <detail::contiguous In, detail::contiguous Out, class Op>
void reduce(communicator& comm, const In& in, Out&& out, Op, int root) {
  detail::check_same_element<const In, Out>();
  detail::check_op<Op, detail::span_element_t<Out>>();
  detail::call c{detail::collective::reduce};
  c.op = op_kind_v<Op>;
  c.root = root;
  detail::erase_in(c, in);
  detail::erase_out(c, out);
  detail::run(comm, c);
}

/// Equal blocks: `in.size() == comm.size() * out.size()`; rank r's `out` is block r of the
/// element-wise reduction.
template <detail::contiguous In, detail::contiguous Out, class Op>
void reduce_scatter(communicator& comm, const In& in, Out&& out, Op) {
  detail::check_same_element<const In, Out>();
  detail::check_op<Op, detail::span_element_t<Out>>();
  detail::call c{detail::collective::reduce_scatter};
  c.op = op_kind_v<Op>;
  detail::erase_in(c, in);
  detail::erase_out(c, out);
  detail::run(comm, c);
}

/// Equal blocks: `out.size() == comm.size() * in.size()`; block r of `out` is rank r's `in`.
template <detail::contiguous In, detail::contiguous Out>
void all_gather(communicator& comm, const In& in, Out&& out) {
  detail::check_same_element<const In, Out>();
  detail::call c{detail::collective::all_gather};
  detail::erase_in(c, in);
  detail::erase_out(c, out);
  detail::run(comm, c);
}

/// In place: the root's `inout` is copied into every other rank's `inout`.
template <detail::contiguous InOut>
void broadcast(communicator& comm, InOut&& inout, int root) {
  detail::call c{detail::collective::broadcast};
  c.root = root;
  c.in_place = true;
  detail::erase_out(c, inout);
  detail::run(comm, c);
}

/// Out of place: the root's `in` is copied into every rank's `out`.
template <detail::contiguous In, detail::contiguous Out>
void broadcast(communicator& comm, const In& in, Out&& out, int root) {
  detail::check_same_element<const In, Out>();
  detail::call c{detail::collective::broadcast};
  c.root = root;
  detail::erase_in(c, in);
  detail::erase_out(c, out);
  detail::run(comm, c);
}

/// Every rank's `in` into block r of the root's `out` (`comm.size() * in.size()` elements).
template <detail::contiguous In, detail::contiguous Out>
void gather(communicator& comm, const In& in, Out&& out, int root) {
  detail::check_same_element<const In, Out>();
  detail::call c{detail::collective::gather};
  c.root = root;
  detail::erase_in(c, in);
  detail::erase_out(c, out);
  detail::run(comm, c);
}

/// Block r of the root's `in` (`comm.size() * out.size()` elements) into rank r's `out`.
template <detail::contiguous In, detail::contiguous Out>
void scatter(communicator& comm, const In& in, Out&& out, int root) {
  detail::check_same_element<const In, Out>();
  detail::call c{detail::collective::scatter};
  c.root = root;
  detail::erase_in(c, in);
  detail::erase_out(c, out);
  detail::run(comm, c);
}

/// Equal blocks: block j of rank i's `in` becomes block i of rank j's `out`.
template <detail::contiguous In, detail::contiguous Out>
void all_to_all(communicator& comm, const In& in, Out&& out) {
  detail::check_same_element<const In, Out>();
  detail::call c{detail::collective::all_to_all};
  detail::erase_in(c, in);
  detail::erase_out(c, out);
  detail::run(comm, c);
}

/// Returns once every rank has entered.
inline void barrier(communicator& comm) { detail::run(comm, detail::call{}); }

}  // namespace chorus::inline v0::compiled
