// chorus-mpi-perf: the MPI baseline of chorus-perf. The same flags (less -t, -a, --np), the
// same columns, the same inputs and checks -- the measurement loop is shared (sweep.hpp) --
// over MPI_Allreduce, MPI_Reduce_scatter_block, MPI_Allgather, MPI_Bcast, MPI_Reduce,
// MPI_Alltoall and MPI_Send/MPI_Recv. Start it with mpirun; `chorus-perf --compare mpi`
// does that, interleaved with chorus runs.
//
//   mpirun -np 4 chorus-mpi-perf [collective] -b 8 -e 256M -f 4 [--json F]
//
// float16 and bfloat16 travel as 2-byte MPI types with user-defined reduction ops (MPI has
// no standard 16-bit float), as an MPI user would have to write them.
#include "options.hpp"
#include "sweep.hpp"

#include <chorus/core/ops.hpp>
#include <chorus/core/types.hpp>

#include <mpi.h>

#include <cstdio>
#include <exception>
#include <string>

namespace chorus_perf {
namespace {

template <class T, class Op>
void user_op(void* in, void* inout, int* len, MPI_Datatype*) {
  const T* a = static_cast<const T*>(in);
  T* b = static_cast<T*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = static_cast<T>(Op{}(a[i], b[i]));
}

template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, std::int8_t>) return MPI_INT8_T;
  if constexpr (std::is_same_v<T, std::uint8_t>) return MPI_UINT8_T;
  if constexpr (std::is_same_v<T, std::int16_t>) return MPI_INT16_T;
  if constexpr (std::is_same_v<T, std::uint16_t>) return MPI_UINT16_T;
  if constexpr (std::is_same_v<T, std::int32_t>) return MPI_INT32_T;
  if constexpr (std::is_same_v<T, std::uint32_t>) return MPI_UINT32_T;
  if constexpr (std::is_same_v<T, std::int64_t>) return MPI_INT64_T;
  if constexpr (std::is_same_v<T, std::uint64_t>) return MPI_UINT64_T;
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  if constexpr (chorus::is_float16_v<T>) {
    static MPI_Datatype t = [] {
      MPI_Datatype d;
      MPI_Type_contiguous(2, MPI_BYTE, &d);
      MPI_Type_commit(&d);
      return d;
    }();
    return t;
  }
}

/// The MPI op for (T, -o): built-in for built-in types, user-defined for 16-bit floats.
template <class T>
MPI_Op mpi_op(chorus::op_kind k) {
  if constexpr (chorus::is_float16_v<T>) {
    static MPI_Op ops[4] = {MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL};
    const int i = k == chorus::op_kind::product ? 1
                  : k == chorus::op_kind::min   ? 2
                  : k == chorus::op_kind::max   ? 3
                                                : 0;
    if (ops[i] == MPI_OP_NULL) {
      MPI_User_function* f = i == 1   ? &user_op<T, chorus::multiplies>
                             : i == 2 ? &user_op<T, chorus::minimum>
                             : i == 3 ? &user_op<T, chorus::maximum>
                                      : &user_op<T, chorus::plus>;
      MPI_Op_create(f, 1, &ops[i]);
    }
    return ops[i];
  } else {
    switch (k) {
      case chorus::op_kind::product:
        return MPI_PROD;
      case chorus::op_kind::min:
        return MPI_MIN;
      case chorus::op_kind::max:
        return MPI_MAX;
      default:
        return MPI_SUM;
    }
  }
}

/// Runs collectives with MPI (see sweep.hpp for the backend contract).
struct mpi_backend {
  const options& o;
  MPI_Comm comm = MPI_COMM_WORLD;

  [[nodiscard]] int rank() const {
    int r = 0;
    MPI_Comm_rank(comm, &r);
    return r;
  }
  [[nodiscard]] int size() const {
    int p = 0;
    MPI_Comm_size(comm, &p);
    return p;
  }
  void barrier() { MPI_Barrier(comm); }
  void max_all(std::span<double> v) {
    MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE, MPI_MAX, comm);
  }
  void sum_all(std::span<double> v) {
    MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE, MPI_SUM, comm);
  }
  long long sum_all(long long x) {
    long long total = 0;
    MPI_Allreduce(&x, &total, 1, MPI_LONG_LONG, MPI_SUM, comm);
    return total;
  }

  template <class T>
  std::span<T> run(std::size_t, chorus::op_kind kind, std::span<const T> in, std::span<T> out) {
    const MPI_Datatype t = mpi_type<T>();
    const int r = rank();
    // In place exactly where chorus's layout aliases the buffers (sweep.hpp make_layout).
    T* in_mut = const_cast<T*>(in.data());  // only ever the caller's writable memory
    const bool aliased = static_cast<const void*>(in.data()) == static_cast<void*>(out.data());
    switch (o.coll) {
      case collective::all_reduce:
        MPI_Allreduce(aliased ? MPI_IN_PLACE : in.data(), out.data(), static_cast<int>(out.size()),
                      t, mpi_op<T>(kind), comm);
        return out;
      case collective::reduce_scatter: {
        const int n = static_cast<int>(out.size());
        if (out.data() == in_mut + static_cast<std::size_t>(r) * out.size() && !in.empty()) {
          // MPI's in-place form leaves the block at the start of the buffer.
          MPI_Reduce_scatter_block(MPI_IN_PLACE, in_mut, n, t, mpi_op<T>(kind), comm);
          return {in_mut, out.size()};
        }
        MPI_Reduce_scatter_block(in.data(), out.data(), n, t, mpi_op<T>(kind), comm);
        return out;
      }
      case collective::all_gather: {
        const int n = static_cast<int>(in.size());
        if (in.data() == out.data() + static_cast<std::size_t>(r) * in.size() && !out.empty()) {
          MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, out.data(), n, t, comm);
        } else {
          MPI_Allgather(in.data(), n, t, out.data(), n, t, comm);
        }
        return out;
      }
      case collective::broadcast: {
        // MPI_Bcast has one buffer: the root sends from its input, the others receive.
        T* buf = r == o.root ? in_mut : out.data();
        MPI_Bcast(buf, static_cast<int>(out.size()), t, o.root, comm);
        return {buf, out.size()};
      }
      case collective::reduce:
        if (r == o.root && aliased) {
          MPI_Reduce(MPI_IN_PLACE, out.data(), static_cast<int>(in.size()), t, mpi_op<T>(kind),
                     o.root, comm);
        } else {
          MPI_Reduce(in.data(), out.data(), static_cast<int>(in.size()), t, mpi_op<T>(kind), o.root,
                     comm);
        }
        return out;
      case collective::all_to_all: {
        const int block = static_cast<int>(in.size() / static_cast<std::size_t>(size()));
        MPI_Alltoall(in.data(), block, t, out.data(), block, t, comm);
        return out;
      }
      case collective::sendrecv: {
        const int peer = ping_pong_peer(r, size());
        if (peer < 0) return out;
        const int n = static_cast<int>(in.size());
        if (r % 2 == 0) {
          MPI_Send(in.data(), n, t, peer, 1, comm);
          MPI_Recv(out.data(), n, t, peer, 2, comm, MPI_STATUS_IGNORE);
        } else {
          MPI_Recv(out.data(), n, t, peer, 1, comm, MPI_STATUS_IGNORE);
          MPI_Send(in.data(), n, t, peer, 2, comm);
        }
        return out;
      }
    }
    return out;
  }
};

std::string library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int len = 0;
  MPI_Get_library_version(text, &len);
  std::string s(text, static_cast<std::size_t>(len));
  return s.substr(0, s.find('\n'));
}

}  // namespace
}  // namespace chorus_perf

int main(int argc, char** argv) {
  using namespace chorus_perf;
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int status = 0;
  try {
    const auto parsed = parse_options(argc, argv, tool::mpi);
    if (parsed) {
      const options& o = *parsed;
      mpi_backend backend{o};
      run_info info;
      info.tool = "chorus-mpi-perf";
      info.transport = "mpi";
      info.library = library_version();
      info.launcher = "mpirun";
      info.algorithms = {"mpi"};
      status = run_sweep(backend, o, info);
    }
  } catch (const usage_error& e) {
    if (rank == 0) std::fprintf(stderr, "chorus-mpi-perf: %s\n", e.what());
    status = 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chorus-mpi-perf: rank %d: %s\n", rank, e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return status;
}
