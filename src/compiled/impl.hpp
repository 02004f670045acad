#pragma once
// The library side of chorus's compiled mode (include/chorus/compiled.hpp): the
// communicator's implementation over one transport, and the switch from an erased call to
// the header-only collectives. Compiled into the chorus::compiled library only.
#include <chorus/bootstrap/from_env.hpp>
#include <chorus/chorus.hpp>
#include <chorus/compiled.hpp>
#include <chorus/core/with_dtype.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>

namespace chorus::inline v0::compiled {

class communicator::impl {
 public:
  impl() = default;
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;
  virtual ~impl() = default;
  [[nodiscard]] virtual int rank() const = 0;
  [[nodiscard]] virtual int size() const = 0;
  [[nodiscard]] virtual transport_kind transport() const = 0;
  virtual void run(const detail::call& c) = 0;
};

namespace detail {

/// The communicator over shared memory (shm.cpp) or UCX (ucx.cpp, or no_ucx.cpp's error).
std::unique_ptr<communicator::impl> make_shm(bootstrap::world world);
std::unique_ptr<communicator::impl> make_ucx(bootstrap::world world);

/// Calls `f(op)` with the built-in op `k` (those that reduce `T`).
template <class T, class F>
void with_op(op_kind k, F&& f) {
  const auto call = [&](auto op) {
    if constexpr (reduction_op<decltype(op), T>) {
      f(op);
    } else {
      throw error(errc::invalid_argument, "chorus::compiled: op " + std::string(name(k)) +
                                              " does not reduce " + std::string(name(dtype_of<T>)));
    }
  };
  switch (k) {
    case op_kind::sum:
      return call(plus{});
    case op_kind::product:
      return call(multiplies{});
    case op_kind::min:
      return call(minimum{});
    case op_kind::max:
      return call(maximum{});
    case op_kind::average:
      return call(average{});
    case op_kind::bit_and:
      return call(bit_and{});
    case op_kind::bit_or:
      return call(bit_or{});
    case op_kind::bit_xor:
      return call(bit_xor{});
    case op_kind::custom:
      break;
  }
  throw error(errc::invalid_argument,
              "chorus::compiled: reductions take a built-in op (custom ops need the "
              "header-only API)");
}

template <class Transport>
class impl_of final : public communicator::impl {
 public:
  explicit impl_of(bootstrap::world world) : world_(std::move(world)), comm_(Transport{world_}) {}

  [[nodiscard]] int rank() const override { return comm_.rank(); }
  [[nodiscard]] int size() const override { return comm_.size(); }
  [[nodiscard]] transport_kind transport() const override {
    return std::same_as<Transport, shm_transport> ? transport_kind::shm : transport_kind::ucx;
  }

  void run(const call& c) override {
    ::chorus::detail::with_dtype(c.type, [&]<class T>() { run_typed<T>(c); });
  }

 private:
  template <class T>
  void run_typed(const call& c) {
    const std::span<const T> in(static_cast<const T*>(c.in), c.in_count);
    const std::span<T> out(static_cast<T*>(c.out), c.out_count);
    const auto reducing = [&](auto body) {
      if constexpr (std::same_as<T, std::byte>) {
        throw error(errc::invalid_argument,
                    "chorus::compiled: bytes are moved, not reduced; reduce int8 or uint8");
      } else {
        with_op<T>(c.op, body);
      }
    };
    switch (c.kind) {
      case collective::all_reduce:
        return reducing([&](auto op) {
          if (c.in_place) {
            chorus::all_reduce(comm_, out, op);
          } else {
            chorus::all_reduce(comm_, in, out, op);
          }
        });
      case collective::reduce:
        return reducing([&](auto op) { chorus::reduce(comm_, in, out, op, c.root); });
      case collective::reduce_scatter:
        return reducing([&](auto op) { chorus::reduce_scatter(comm_, in, out, op); });
      case collective::all_gather:
        return chorus::all_gather(comm_, in, out);
      case collective::broadcast:
        if (c.in_place) return chorus::broadcast(comm_, out, c.root);
        return chorus::broadcast(comm_, in, out, c.root);
      case collective::gather:
        return chorus::gather(comm_, in, out, c.root);
      case collective::scatter:
        return chorus::scatter(comm_, in, out, c.root);
      case collective::all_to_all:
        return chorus::all_to_all(comm_, in, out);
      case collective::barrier:
        return chorus::barrier(comm_);
    }
  }

  bootstrap::world world_;  // the store and the secret file live as long as the group
  chorus::communicator<Transport> comm_;
};

}  // namespace detail
}  // namespace chorus::inline v0::compiled
