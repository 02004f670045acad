#pragma once
/// \file
/// `chorus::bootstrap::mpi_world`: the world of a program that already runs MPI, so that
/// `mpirun -np 4 ./app` (Open MPI, MPICH, or srun with an MPI) needs no CHORUS_STORE or
/// other variable. Component `chorus::mpi` (links MPI's C library); the rest of chorus
/// never includes this header.
///
///     MPI_Init(&argc, &argv);
///     {
///       auto world = chorus::bootstrap::mpi_world(MPI_COMM_WORLD);
///       chorus::communicator<chorus::shm_transport> comm{chorus::shm_transport(world)};
///       chorus::all_reduce(comm, grads, chorus::plus{});
///     }                               // the communicator and the world before MPI_Finalize
///     MPI_Finalize();
///
/// Rank r of the world is rank r of `comm`; the local rank and size come from
/// MPI_Comm_split_type(MPI_COMM_TYPE_SHARED). Rank 0 serves the job's tcp_store, guarded by a
/// secret it draws, and broadcasts the store's address, the secret and a job id over `comm`
/// (never through the store or the environment). The store binds 127.0.0.1 when every rank is
/// on rank 0's host, else CHORUS_STORE_HOST when set, else rank 0's host name (an address
/// the other hosts must reach). CHORUS_TIMEOUT, CHORUS_CHECK, CHORUS_PROGRESS and the
/// CHORUS_STORE_* limits are read and checked as `from_env` does. Collective over `comm`:
/// every rank calls it, and every rank throws when one rank's settings are bad or rank 0
/// could not serve the store.
#include <chorus/bootstrap/from_env.hpp>
#include <chorus/bootstrap/tcp_store.hpp>
#include <chorus/core/error.hpp>

#include <array>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <mpi.h>
#include <unistd.h>

namespace chorus::inline v0::bootstrap {

namespace detail::mpi {

/// What rank 0 broadcasts: "ok host port secret job_id" or "error <message>".
inline constexpr std::size_t message_bytes = 1024;

[[noreturn]] inline void fail(errc code, const std::string& what) {
  throw error(code, "chorus: mpi_world: " + what);
}

inline void check(int rc, const char* call) {
  if (rc != MPI_SUCCESS) {
    std::array<char, MPI_MAX_ERROR_STRING> text{};
    int length = 0;
    MPI_Error_string(rc, text.data(), &length);
    fail(errc::transport, std::string(call) + " failed: " + std::string(text.data(), length));
  }
}

}  // namespace detail::mpi

/// The world of the processes of `comm` (see the file comment). `env` is read for the
/// CHORUS_* settings; launcher variables in it are ignored (`comm` gives the ranks).
/// Throws `invalid_argument` for a bad setting, `transport` when MPI fails or rank 0
/// cannot serve the store (on every rank), `timeout` when the store cannot be reached.
[[nodiscard]] inline world mpi_world(MPI_Comm comm,
                                     const environment& env = process_environment()) {
  namespace m = detail::mpi;
  int initialized = 0;
  m::check(MPI_Initialized(&initialized), "MPI_Initialized");
  if (!initialized) m::fail(errc::invalid_argument, "call MPI_Init before mpi_world");
  int rank = 0, size = 0;
  m::check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  m::check(MPI_Comm_size(comm, &size), "MPI_Comm_size");
  MPI_Comm local = MPI_COMM_NULL;
  m::check(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local),
           "MPI_Comm_split_type");
  int local_rank = 0, local_size = 0;
  MPI_Comm_rank(local, &local_rank);
  MPI_Comm_size(local, &local_size);
  // Every rank on rank 0's host: the ranks on it are the whole job.
  int on_one_host = local_size == size ? 1 : 0;
  MPI_Comm_free(&local);
  m::check(MPI_Allreduce(MPI_IN_PLACE, &on_one_host, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce");

  // The settings, checked as from_env checks them: the same environment seen through the
  // chorusrun variables, which name the ranks MPI gave (store, job id and secret are
  // placeholders here, replaced below).
  const std::string fields[][2] = {{"CHORUS_RANK", std::to_string(rank)},
                                   {"CHORUS_SIZE", std::to_string(size)},
                                   {"CHORUS_LOCAL_RANK", std::to_string(local_rank)},
                                   {"CHORUS_LOCAL_SIZE", std::to_string(local_size)},
                                   {"CHORUS_STORE", "127.0.0.1:1"},
                                   {"CHORUS_JOB_ID", "mpi"},
                                   {"CHORUS_JOB_SECRET", "placeholder-secret-of-mpi-world"}};
  const environment seen = [&](std::string_view name) -> std::optional<std::string> {
    for (const auto& [key, value] : fields) {
      if (name == key) return value;
    }
    if (name == "CHORUS_JOB_SECRET_FILE") return std::nullopt;
    return env(name);
  };
  // Collective: a rank whose settings are bad throws its own error, every other rank one
  // that points there, and none is left waiting in a broadcast below.
  std::exception_ptr bad_settings;
  world w;
  try {
    w = detect_world(seen);
  } catch (const error&) {
    bad_settings = std::current_exception();
  }
  int any_bad = bad_settings ? 1 : 0;
  m::check(MPI_Allreduce(MPI_IN_PLACE, &any_bad, 1, MPI_INT, MPI_MAX, comm), "MPI_Allreduce");
  if (bad_settings) std::rethrow_exception(bad_settings);
  if (any_bad != 0) {
    m::fail(errc::invalid_argument,
            "another rank's CHORUS_* settings are invalid (that rank says which); give every "
            "rank the same valid settings");
  }
  w.detected = env("OMPI_COMM_WORLD_RANK") ? launcher::open_mpi
               : env("PMI_RANK")           ? launcher::mpich
               : env("SLURM_PROCID")       ? launcher::slurm
                                           : launcher::none;
  w.secret_file.clear();

  // Rank 0 serves the store and says where, or why it could not.
  std::array<char, m::message_bytes> message{};
  std::optional<tcp_store> served;
  if (rank == 0) {
    std::string text;
    try {
      std::string host = "127.0.0.1";
      if (!on_one_host) {
        if (auto h = env("CHORUS_STORE_HOST")) {
          host = *h;
        } else {
          std::array<char, 256> name{};
          if (::gethostname(name.data(), name.size() - 1) != 0) {
            m::fail(errc::transport,
                    "gethostname failed; set CHORUS_STORE_HOST to an address "
                    "of rank 0's host that the other hosts reach");
          }
          host = name.data();
        }
      }
      w.secret = chorus::bootstrap::detail::random_hex(32);
      w.job_id = chorus::bootstrap::detail::random_hex(16);
      served.emplace(tcp_store_options{.host = host,
                                       .port = 0,
                                       .serve = true,
                                       .timeout = w.timeout,
                                       .secret = w.secret,
                                       .limits = w.store_limits});
      text = "ok " + host + " " + std::to_string(served->port()) + " " + w.secret + " " + w.job_id;
    } catch (const std::exception& e) {
      text = std::string("error ") + e.what();
    }
    std::snprintf(message.data(), message.size(), "%s", text.c_str());
  }
  m::check(MPI_Bcast(message.data(), static_cast<int>(message.size()), MPI_CHAR, 0, comm),
           "MPI_Bcast");
  const std::string_view said(message.data());
  if (said.starts_with("error ")) {
    m::fail(errc::transport,
            "rank 0 could not serve the job's store: " + std::string(said.substr(6)));
  }
  std::array<char, 256> host{};
  std::array<char, 129> secret{}, job{};
  unsigned port = 0;
  if (std::sscanf(message.data(), "ok %255s %u %128s %128s", host.data(), &port, secret.data(),
                  job.data()) != 4 ||
      port == 0 || port > 65535) {
    // Not quoted: the message holds the job secret.
    m::fail(errc::transport,
            "rank 0's store address did not arrive whole (is CHORUS_STORE_HOST longer than "
            "255 characters?)");
  }
  w.store_at = store_location{host.data(), static_cast<std::uint16_t>(port), true,
                              "mpi_world (rank 0's broadcast)"};
  if (rank == 0) {
    w.store = any_store(std::move(*served));
  } else {
    w.secret = secret.data();
    w.job_id = job.data();
    w.store = any_store(tcp_store(tcp_store_options{.host = host.data(),
                                                    .port = static_cast<std::uint16_t>(port),
                                                    .timeout = w.timeout,
                                                    .secret = w.secret}));
  }
  return w;
}

}  // namespace chorus::inline v0::bootstrap
