// chorus-gloo-perf: the Gloo baseline of chorus-perf, all_reduce only. The same flags (less
// -t, -a, --np), the same columns, the same inputs and checks -- the measurement loop is
// shared (sweep.hpp) -- over gloo::allreduce with the ring algorithm on Gloo's tcp transport.
//
//   chorusrun -n 2 chorus-gloo-perf all_reduce -b 64K -e 64M -f 4 [--json F]
//
// Rendezvous: the job's store from the launcher's variables (chorus::bootstrap::from_env:
// chorusrun's CHORUS_*, or torchrun-style RANK/WORLD_SIZE with CHORUS_STORE or
// MASTER_ADDR/MASTER_PORT), under the key prefix "gloo/<job id>/". Gloo's tcp device binds
//   CHORUS_GLOO_IFACE     this interface's address (e.g. ch0 across namespace hosts), or
//   CHORUS_GLOO_HOSTNAME  this host name or address; default 127.0.0.1 (loopback).
// The reduction is the chorus op (sum, prod, min, max) applied element by element, as a
// Gloo user passes a reduce function; Gloo has no average.
#include "options.hpp"
#include "sweep.hpp"

#include <chorus/bootstrap/from_env.hpp>
#include <chorus/core/ops.hpp>
#include <chorus/core/types.hpp>

#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/config.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace chorus_perf {
namespace {

/// The job's chorus store seen as a Gloo store; every key under `prefix`.
class store_adapter final : public gloo::rendezvous::Store {
 public:
  store_adapter(chorus::bootstrap::any_store store, std::string prefix, chorus::duration timeout)
      : store_(std::move(store)), prefix_(std::move(prefix)), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    store_.set(prefix_ + key, std::as_bytes(std::span(data)));
  }
  std::vector<char> get(const std::string& key) override {
    const auto value = store_.get(prefix_ + key, chorus::deadline::after(timeout_));
    const auto* p = reinterpret_cast<const char*>(value.data());
    return {p, p + value.size()};
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, chorus::duration timeout) {
    std::vector<std::string> full;
    full.reserve(keys.size());
    for (const auto& k : keys) full.push_back(prefix_ + k);
    store_.wait(full, chorus::deadline::after(timeout));
  }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    wait(keys, chorus::duration(timeout));
  }

 private:
  chorus::bootstrap::any_store store_;
  std::string prefix_;
  chorus::duration timeout_;
};

/// Gloo's element-wise reduce function for (T, op): out[i] = op(a[i], b[i]).
template <class T>
gloo::AllreduceOptions::Func reduce_function(chorus::op_kind k) {
  return with_op(k, [](auto op) -> gloo::AllreduceOptions::Func {
    return [op](void* out, const void* a, const void* b, std::size_t n) {
      T* o = static_cast<T*>(out);
      const T* x = static_cast<const T*>(a);
      const T* y = static_cast<const T*>(b);
      for (std::size_t i = 0; i < n; ++i) o[i] = static_cast<T>(op(x[i], y[i]));
    };
  });
}

/// Runs all_reduce with Gloo (see sweep.hpp for the backend contract).
struct gloo_backend {
  const options& o;
  std::shared_ptr<gloo::Context> ctx;
  std::uint32_t tag = 0;

  [[nodiscard]] int rank() const { return ctx->rank; }
  [[nodiscard]] int size() const { return ctx->size; }
  void barrier() {
    gloo::BarrierOptions opts(ctx);
    opts.setTag(tag++);
    gloo::barrier(opts);
  }
  template <class T>
  void all_reduce(const T* in, T* out, std::size_t n, gloo::AllreduceOptions::Func f) {
    gloo::AllreduceOptions opts(ctx);
    opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
    // Without an input Gloo reduces the output in place.
    if (in != out) opts.setInput(const_cast<T*>(in), n);  // Gloo only reads its inputs
    opts.setOutput(out, n);
    opts.setReduceFunction(std::move(f));
    opts.setTag(tag++);
    gloo::allreduce(opts);
  }
  void max_all(std::span<double> v) {
    all_reduce(v.data(), v.data(), v.size(), reduce_function<double>(chorus::op_kind::max));
  }
  void sum_all(std::span<double> v) {
    all_reduce(v.data(), v.data(), v.size(), reduce_function<double>(chorus::op_kind::sum));
  }
  long long sum_all(long long x) {
    all_reduce(&x, &x, 1, reduce_function<long long>(chorus::op_kind::sum));
    return x;
  }

  template <class T>
  std::span<T> run(std::size_t, chorus::op_kind kind, std::span<const T> in, std::span<T> out) {
    // In place exactly where chorus's layout aliases the buffers (sweep.hpp make_layout).
    all_reduce(in.data(), out.data(), out.size(), reduce_function<T>(kind));
    return out;
  }
};

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

std::shared_ptr<gloo::transport::Device> make_device() {
  gloo::transport::tcp::attr attr;
  attr.iface = env_or("CHORUS_GLOO_IFACE", "");
  if (attr.iface.empty()) attr.hostname = env_or("CHORUS_GLOO_HOSTNAME", "127.0.0.1");
  return gloo::transport::tcp::CreateDevice(attr);
}

}  // namespace
}  // namespace chorus_perf

int main(int argc, char** argv) {
  using namespace chorus_perf;
  int rank = 0;
  try {
    const auto parsed = parse_options(argc, argv, tool::gloo);
    if (!parsed) return 0;
    const options& o = *parsed;
    if (o.coll != collective::all_reduce) {
      throw usage_error(std::string(name(o.coll)) +
                        ": chorus-gloo-perf measures all_reduce only (Gloo's ring)");
    }
    auto world = chorus::bootstrap::from_env();
    rank = world.rank;
    const auto timeout = world.timeout;
    {
      store_adapter store(world.store, "gloo/" + world.job_id + "/", timeout);
      auto device = make_device();
      auto ctx = std::make_shared<gloo::rendezvous::Context>(world.rank, world.size);
      ctx->setTimeout(std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
      ctx->connectFullMesh(store, device);
      gloo_backend backend{o, ctx};
      run_info info;
      info.tool = "chorus-gloo-perf";
      info.transport = "gloo-tcp";
      info.library = "Gloo " + std::to_string(GLOO_VERSION_MAJOR) + "." +
                     std::to_string(GLOO_VERSION_MINOR) + "." + std::to_string(GLOO_VERSION_PATCH);
      info.launcher = std::string(chorus::bootstrap::name(world.detected));
      info.algorithms = {"gloo_ring"};
      const int status = run_sweep(backend, o, info);
      backend.barrier();  // rank 0 may serve the store: nobody leaves before all are done
      return status;
    }
  } catch (const usage_error& e) {
    if (rank == 0) std::fprintf(stderr, "chorus-gloo-perf: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chorus-gloo-perf: rank %d: %s\n", rank, e.what());
    return 1;
  }
}
