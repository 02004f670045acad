// chorus::compiled between real processes: started by chorusrun (tests/compiled/
// CMakeLists.txt), `compiled_test [shm|ucx]` runs every collective of compiled mode over
// every element type and built-in op it takes, checks each result against the value
// computed here, and checks that bad arguments fail as in the header-only API. Includes
// only <chorus/compiled.hpp>, as a compiled-mode program does. Exits 1 naming each failure.
#include <chorus/compiled.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

namespace {

namespace cc = chorus::compiled;

int failures = 0;
int rank_for_messages = -1;

void fail(const std::string& what) {
  ++failures;
  std::fprintf(stderr, "compiled_test rank %d: FAILED: %s\n", rank_for_messages, what.c_str());
}

template <class T>
double as_double(T v) {
  if constexpr (chorus::is_float16_v<T>) {
    return static_cast<double>(static_cast<float>(v));
  } else {
    return static_cast<double>(v);
  }
}

template <class T>
T from_int(int v) {
  if constexpr (chorus::is_float16_v<T>) {
    return T(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

/// Rank r's element i: small integers, exact in every type (half included).
int value(int r, std::size_t i) { return 1 + (r + static_cast<int>(i)) % 5; }

template <class T, class Op>
T expected(const Op& op, int p, std::size_t i) {
  T acc = from_int<T>(value(0, i));
  for (int r = 1; r < p; ++r) acc = static_cast<T>(op(acc, from_int<T>(value(r, i))));
  if constexpr (chorus::finalizing_op<Op, T>) acc = static_cast<T>(op.finalize(acc, p));
  return acc;
}

template <class T>
bool same(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <class T>
const char* type_name() {
  return std::string_view(name(chorus::dtype_of<T>)).data();
}

/// all_reduce (in and out of place), reduce to the last rank and reduce_scatter with `op`.
template <class T, class Op>
void reductions(cc::communicator& comm, Op op) {
  const int p = comm.size();
  const int r = comm.rank();
  const std::size_t n = 3 * static_cast<std::size_t>(p) + 1;  // not a multiple of p
  const std::string what =
      std::string(type_name<T>()) + " " + std::string(name(chorus::op_kind_v<Op>)) + ": ";
  std::vector<T> mine(n);
  for (std::size_t i = 0; i < n; ++i) mine[i] = from_int<T>(value(r, i));

  std::vector<T> inout = mine;
  cc::all_reduce(comm, inout, op);
  std::vector<T> out(n);
  cc::all_reduce(comm, mine, out, op);
  const int root = p - 1;
  std::vector<T> at_root(r == root ? n : 0);
  cc::reduce(comm, mine, at_root, op, root);
  for (std::size_t i = 0; i < n; ++i) {
    const T want = expected<T>(op, p, i);
    if (!same(inout[i], want)) {
      fail(what + "all_reduce in place [" + std::to_string(i) + "] = " +
           std::to_string(as_double(inout[i])) + ", want " + std::to_string(as_double(want)));
      return;
    }
    if (!same(out[i], want)) fail(what + "all_reduce out of place [" + std::to_string(i) + "]");
    if (r == root && !same(at_root[i], want)) fail(what + "reduce [" + std::to_string(i) + "]");
  }

  const std::size_t block = 2;
  std::vector<T> blocks(block * static_cast<std::size_t>(p));
  for (std::size_t i = 0; i < blocks.size(); ++i) blocks[i] = from_int<T>(value(r, i));
  std::vector<T> mine_block(block);
  cc::reduce_scatter(comm, blocks, mine_block, op);
  for (std::size_t j = 0; j < block; ++j) {
    const std::size_t i = static_cast<std::size_t>(r) * block + j;
    if (!same(mine_block[j], expected<T>(op, p, i))) {
      fail(what + "reduce_scatter [" + std::to_string(j) + "]");
    }
  }
}

template <class T>
void every_op(cc::communicator& comm) {
  reductions<T>(comm, chorus::plus{});
  reductions<T>(comm, chorus::minimum{});
  reductions<T>(comm, chorus::maximum{});
  reductions<T>(comm, chorus::average{});
  if (comm.size() <= 4) reductions<T>(comm, chorus::multiplies{});  // 5^4 fits int16
  if constexpr (std::is_integral_v<T>) {
    reductions<T>(comm, chorus::bit_and{});
    reductions<T>(comm, chorus::bit_or{});
    reductions<T>(comm, chorus::bit_xor{});
  }
}

/// The collectives that move without reducing, over `T`.
template <class T>
void moves(cc::communicator& comm) {
  const int p = comm.size();
  const int r = comm.rank();
  const auto up = static_cast<std::size_t>(p);
  const std::string what = std::string(type_name<T>()) + ": ";
  const auto tag = [](int rank, std::size_t i) { return from_int<T>(value(rank, i) + rank); };

  // all_gather: block q of out is rank q's in.
  std::vector<T> in(3);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = tag(r, i);
  std::vector<T> gathered(3 * up);
  cc::all_gather(comm, in, gathered);
  for (int q = 0; q < p; ++q) {
    for (std::size_t i = 0; i < 3; ++i) {
      if (!same(gathered[static_cast<std::size_t>(q) * 3 + i], tag(q, i))) {
        fail(what + "all_gather block " + std::to_string(q));
      }
    }
  }

  // broadcast in place and out of place, from the last rank and rank 0.
  std::vector<T> b(5);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = tag(r, i);
  cc::broadcast(comm, b, p - 1);
  std::vector<T> b2(5);
  cc::broadcast(comm, in, std::span<T>(b2).first(3), 0);
  for (std::size_t i = 0; i < 5; ++i) {
    if (!same(b[i], tag(p - 1, i))) fail(what + "broadcast in place [" + std::to_string(i) + "]");
    if (i < 3 && !same(b2[i], tag(0, i))) fail(what + "broadcast out of place");
  }

  // gather to rank 0, scatter from it.
  std::vector<T> at_root(r == 0 ? 3 * up : 0);
  cc::gather(comm, in, at_root, 0);
  if (r == 0) {
    for (int q = 0; q < p; ++q) {
      if (!same(at_root[static_cast<std::size_t>(q) * 3], tag(q, 0))) fail(what + "gather");
    }
  }
  std::vector<T> source(r == 0 ? 2 * up : 0);
  for (std::size_t i = 0; i < source.size(); ++i) source[i] = from_int<T>(static_cast<int>(i));
  std::vector<T> piece(2);
  cc::scatter(comm, source, piece, 0);
  if (!same(piece[1], from_int<T>(2 * r + 1))) fail(what + "scatter");

  // all_to_all: block j of rank i's in becomes block i of rank j's out.
  std::vector<T> send(up), receive(up);
  for (int j = 0; j < p; ++j) send[static_cast<std::size_t>(j)] = from_int<T>(r * 8 + j);
  cc::all_to_all(comm, send, receive);
  for (int i = 0; i < p; ++i) {
    if (!same(receive[static_cast<std::size_t>(i)], from_int<T>(i * 8 + r))) {
      fail(what + "all_to_all from rank " + std::to_string(i));
    }
  }
}

/// `body` must throw a chorus::error with code `code` whose message contains `needle`.
template <class Body>
void expect_error(const std::string& what, chorus::errc code, const std::string& needle,
                  Body body) {
  try {
    body();
    fail(what + ": no error");
  } catch (const chorus::error& e) {
    if (e.code() != chorus::make_error_code(code)) {
      fail(what + ": wrong code: " + e.what());
    } else if (std::string(e.what()).find(needle) == std::string::npos) {
      fail(what + ": the message lacks '" + needle + "': " + e.what());
    }
  }
}

void errors(cc::communicator& comm) {
  const int p = comm.size();
  // Checked before any byte moves, on the calling rank only.
  std::vector<float> in(8), short_out(7);
  expect_error("all_reduce with a short output", chorus::errc::invalid_argument,
               "the same count as the input",
               [&] { cc::all_reduce(comm, in, short_out, chorus::plus{}); });
  // A bad root is an error on every rank.
  std::vector<int> v(4);
  expect_error("broadcast from a root out of range", chorus::errc::invalid_argument, "root",
               [&] { cc::broadcast(comm, v, p); });
  // A moved-from communicator says so.
  cc::communicator moved = std::move(comm);
  expect_error("a moved-from communicator", chorus::errc::invalid_argument, "moved from",
               [&] { cc::barrier(comm); });
  comm = std::move(moved);
  cc::barrier(comm);  // still one group after moving back
}

}  // namespace

int main(int argc, char** argv) {
  const std::string transport = argc > 1 ? argv[1] : "shm";
  try {
    auto comm = cc::communicator::from_env(transport == "ucx" ? cc::transport_kind::ucx
                                                              : cc::transport_kind::shm);
    rank_for_messages = comm.rank();
    if ((comm.transport() == cc::transport_kind::ucx) != (transport == "ucx")) {
      fail("transport() names the wrong transport");
    }
    every_op<std::int8_t>(comm);
    every_op<std::uint8_t>(comm);
    every_op<std::int16_t>(comm);
    every_op<std::uint16_t>(comm);
    every_op<std::int32_t>(comm);
    every_op<std::uint32_t>(comm);
    every_op<std::int64_t>(comm);
    every_op<std::uint64_t>(comm);
    every_op<chorus::half>(comm);
    every_op<chorus::bfloat16>(comm);
    every_op<float>(comm);
    every_op<double>(comm);
    moves<std::int32_t>(comm);
    moves<double>(comm);
    moves<chorus::half>(comm);
    moves<std::int8_t>(comm);

    // Bytes are moved (all_gather of std::byte, broadcast of char).
    std::vector<std::byte> byte_in{std::byte(comm.rank())},
        byte_out(static_cast<std::size_t>(comm.size()));
    cc::all_gather(comm, byte_in, byte_out);
    for (int q = 0; q < comm.size(); ++q) {
      if (byte_out[static_cast<std::size_t>(q)] != std::byte(q)) fail("all_gather of std::byte");
    }
    char text[6] = "rank?";
    if (comm.rank() == 0) text[4] = '0';
    cc::broadcast(comm, text, 0);
    if (std::string(text) != "rank0") fail("broadcast of char");

    errors(comm);
    cc::barrier(comm);
    if (comm.rank() == 0 && failures == 0) {
      std::printf("compiled_test: %d ranks over %s: every collective, type and op exact\n",
                  comm.size(), transport.c_str());
    }
  } catch (const std::exception& e) {
    fail(std::string("unexpected error: ") + e.what());
  }
  return failures == 0 ? 0 : 1;
}
