// The NCCL transport's host side, on any machine with the CUDA toolkit and NCCL (no GPU
// needed): the type and op tables of algo::native, the unique-id encoding, the concepts
// the stream executor relies on, a clear error where no GPU can be used, and the family's
// locking and teardown (`detail::nccl::basic_family`) over a stand-in for NCCL's calls:
// an abort never frees a communicator while another thread is inside a call on it, and a
// communicator is finalised under a deadline and aborted past it.
#include <chorus/device/runtime.hpp>
#include <chorus/exec/stream_executor.hpp>
#include <chorus/group/split.hpp>
#include <chorus/transport/nccl.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace nccl = chorus::detail::nccl;

static_assert(chorus::stream_ordered_transport<chorus::nccl_transport>);
static_assert(chorus::native_collective_transport<chorus::nccl_transport>);
static_assert(!chorus::transport<chorus::nccl_transport>);
static_assert(chorus::native_split_transport<chorus::nccl_transport>);
static_assert(!chorus::splittable_transport<chorus::nccl_transport>);

// communicator<nccl_transport>::split and subgroup compile (they were a static_assert until
// NCCL groups came): taking their addresses instantiates both, the ncclCommSplit path
// included. They run in nccl.groups, on a GPU.
using nccl_comm = chorus::communicator<chorus::nccl_transport>;
[[maybe_unused]] const auto split_compiles = &nccl_comm::split;
[[maybe_unused]] const auto subgroup_compiles = &nccl_comm::subgroup;

TEST_CASE("nccl: chorus types map to NCCL's, and 16-bit integers to none", "[nccl]") {
  using chorus::dtype;
  CHECK(nccl::type_of(dtype::int8) == ncclInt8);
  CHECK(nccl::type_of(dtype::uint8) == ncclUint8);
  CHECK(nccl::type_of(dtype::int32) == ncclInt32);
  CHECK(nccl::type_of(dtype::uint32) == ncclUint32);
  CHECK(nccl::type_of(dtype::int64) == ncclInt64);
  CHECK(nccl::type_of(dtype::uint64) == ncclUint64);
  CHECK(nccl::type_of(dtype::float16) == ncclFloat16);
  CHECK(nccl::type_of(dtype::bfloat16) == ncclBfloat16);
  CHECK(nccl::type_of(dtype::float32) == ncclFloat32);
  CHECK(nccl::type_of(dtype::float64) == ncclFloat64);
  CHECK_FALSE(nccl::type_of(dtype::int16).has_value());
  CHECK_FALSE(nccl::type_of(dtype::uint16).has_value());
}

TEST_CASE("nccl: chorus ops map to NCCL's; bitwise and user ops have no native form", "[nccl]") {
  using chorus::op_kind;
  CHECK(nccl::op_of(op_kind::sum) == ncclSum);
  CHECK(nccl::op_of(op_kind::product) == ncclProd);
  CHECK(nccl::op_of(op_kind::min) == ncclMin);
  CHECK(nccl::op_of(op_kind::max) == ncclMax);
  CHECK(nccl::op_of(op_kind::average) == ncclAvg);
  for (op_kind k : {op_kind::bit_and, op_kind::bit_or, op_kind::bit_xor, op_kind::custom}) {
    CHECK_FALSE(nccl::op_of(k).has_value());
  }
  CHECK(nccl::code_of(ncclInvalidArgument) == chorus::errc::invalid_argument);
  CHECK(nccl::code_of(ncclRemoteError) == chorus::errc::peer_lost);
  CHECK(nccl::code_of(ncclSystemError) == chorus::errc::transport);
}

TEST_CASE("nccl: a subgroup's color is its list's, never negative, and lists are checked",
          "[nccl]") {
  namespace group = chorus::detail::group;
  const std::vector<int> a{0, 2, 1}, b{0, 1, 2}, c{0, 2};
  CHECK(group::list_color(a) == group::list_color(std::vector<int>{0, 2, 1}));
  CHECK(group::list_color(a) != group::list_color(b));
  CHECK(group::list_color(a) != group::list_color(c));
  for (const auto& l : {a, b, c}) CHECK(group::list_color(l) >= 0);
  CHECK(group::list_problem(a, 3).empty());
  CHECK(group::list_problem({}, 3) == "the list of ranks is empty");
  CHECK_THAT(group::list_problem(std::vector<int>{0, 3}, 3),
             Catch::Contains("rank 3 is not a rank of this communicator (0..2)"));
  CHECK_THAT(group::list_problem(std::vector<int>{1, 0, 1}, 3),
             Catch::Contains("rank 1 is listed twice"));
}

TEST_CASE("nccl: the unique id survives the store as text; damaged text is refused", "[nccl]") {
  std::vector<unsigned char> id(NCCL_UNIQUE_ID_BYTES);
  for (std::size_t i = 0; i < id.size(); ++i) id[i] = static_cast<unsigned char>(i * 37 + 5);
  const std::string text = chorus::detail::to_hex(id.data(), id.size());
  CHECK(text.size() == 2 * id.size());
  CHECK(chorus::detail::from_hex(text) == id);
  CHECK(chorus::detail::from_hex(text.substr(1)).empty());
  CHECK(chorus::detail::from_hex("-").empty());
  std::string bad = text;
  bad[3] = 'x';
  CHECK(chorus::detail::from_hex(bad).empty());
}

TEST_CASE("nccl: without a usable GPU the transport fails at once, saying why", "[nccl]") {
  if (chorus::device::available()) {
    WARN("a CUDA device is present: the no-device error is not exercised here");
    return;
  }
  int exchanges = 0;
  auto exchange = [&](const std::string& mine) {
    ++exchanges;
    return std::vector<std::string>{mine};
  };
  try {
    chorus::nccl_transport t(0, 1, exchange, std::chrono::seconds(5));
    FAIL("an NCCL transport started without a usable CUDA device");
  } catch (const chorus::error& e) {
    CHECK(e.value() == chorus::errc::transport);
    CHECK_THAT(e.what(), Catch::Contains("rank 0") && Catch::Contains("cudaGetDevice") &&
                             Catch::Contains("CUDA device"));
  }
  CHECK(exchanges == 0);  // failed before touching the store
  CHECK_THROWS_MATCHES(chorus::nccl_transport(3, 2, exchange), chorus::error,
                       Catch::Predicate<chorus::error>([](const chorus::error& e) {
                         return e.value() == chorus::errc::invalid_argument;
                       }));
}

// ---- the family's lock and teardown, over a stand-in for NCCL

/// A communicator as the stand-in sees it: whether a call is inside it, whether it was
/// freed (aborted or destroyed), and what the family did to it.
struct fake_comm {
  std::atomic<bool> inside{false};
  std::atomic<bool> freed{false};
  std::atomic<bool> aborted_during_call{false};
  int aborts = 0;
  int finalized = 0;
  bool destroyed = false;
  int polls_until_finalized = 3;  ///< < 0: never finalises (a peer keeps it)
};

/// NCCL's calls, on `fake_comm`; the abort records whether a call was inside.
struct fake_api {
  using comm_type = fake_comm*;
  static ncclResult_t abort(fake_comm* c) noexcept {
    if (c->inside.load()) c->aborted_during_call = true;
    ++c->aborts;
    c->freed = true;
    return ncclSuccess;
  }
  static ncclResult_t finalize(fake_comm* c) noexcept {
    ++c->finalized;
    return ncclInProgress;
  }
  static ncclResult_t async_error(fake_comm* c, ncclResult_t* r) noexcept {
    const bool done = c->polls_until_finalized >= 0 && c->polls_until_finalized-- == 0;
    *r = done ? ncclSuccess : ncclInProgress;
    return ncclSuccess;
  }
  static ncclResult_t destroy(fake_comm* c) noexcept {
    c->destroyed = true;
    c->freed = true;
    return ncclSuccess;
  }
};
using fake_family = nccl::basic_family<fake_api>;

TEST_CASE("nccl family: an abort from another thread never frees a communicator mid-call",
          "[nccl]") {
  for (int round = 0; round < 20; ++round) {
    fake_comm c;
    fake_family f;
    fake_family::handle h{&c};
    f.join(h);
    std::atomic<bool> touched_freed{false};
    std::atomic<long> calls{0};
    std::thread owner([&] {
      // The owning thread calls NCCL on the communicator until the family refuses.
      while (f.run(h, [&](fake_comm* comm) {
        comm->inside = true;
        if (comm->freed.load()) touched_freed = true;
        for (int i = 0; i < 200; ++i) std::atomic_signal_fence(std::memory_order_seq_cst);
        comm->inside = false;
      })) {
        ++calls;
      }
    });
    while (calls.load() < 50) std::this_thread::yield();
    f.abort(0, chorus::errc::aborted, "another thread gave up");
    owner.join();
    CHECK_FALSE(c.aborted_during_call.load());
    CHECK_FALSE(touched_freed.load());
    CHECK(c.aborts == 1);
    CHECK(f.aborted.load());
    CHECK_FALSE(f.run(h, [](fake_comm*) {}));  // after the abort: never called again
    f.release(h, chorus::deadline::after(std::chrono::seconds(1)));
    CHECK(c.finalized == 0);  // an aborted communicator is not finalised or destroyed
    CHECK_FALSE(c.destroyed);
    CHECK(f.members.empty());
  }
}

TEST_CASE("nccl family: release finalises, polls, then destroys; past its deadline it aborts",
          "[nccl]") {
  {
    fake_comm c;
    fake_family f;
    fake_family::handle h{&c};
    f.join(h);
    f.release(h, chorus::deadline::after(std::chrono::seconds(5)));
    CHECK(c.finalized == 1);
    CHECK(c.destroyed);
    CHECK(c.aborts == 0);
    CHECK(f.members.empty());
  }
  {
    fake_comm c;
    c.polls_until_finalized = -1;  // a peer keeps the communicator busy for ever
    fake_family f;
    fake_family::handle h{&c};
    f.join(h);
    const auto start = std::chrono::steady_clock::now();
    f.release(h, chorus::deadline::after(std::chrono::milliseconds(100)));
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= std::chrono::milliseconds(100));
    CHECK(took < std::chrono::seconds(5));
    CHECK(c.finalized == 1);
    CHECK_FALSE(c.destroyed);
    CHECK(c.aborts == 1);
    CHECK(f.members.empty());
  }
  {
    // The family's other members stay: releasing one touches no other.
    fake_comm a, b;
    fake_family f;
    fake_family::handle ha{&a}, hb{&b};
    f.join(ha);
    f.join(hb);
    f.release(ha, chorus::deadline::after(std::chrono::seconds(5)));
    CHECK(f.members.size() == 1);
    f.abort(0, chorus::errc::aborted, "later");
    CHECK(b.aborts == 1);
    CHECK(a.aborts == 0);
  }
}

TEST_CASE("nccl: the memory pool is raised to keep the scratch, never lowered", "[nccl]") {
  CHECK(nccl::raised_threshold(0, 4096) == std::uint64_t{4096});
  CHECK_FALSE(nccl::raised_threshold(8192, 4096).has_value());
  CHECK_FALSE(nccl::raised_threshold(UINT64_MAX, 1).has_value());
}

}  // namespace
