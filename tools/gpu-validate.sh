#!/usr/bin/env bash
# gpu-validate.sh: the GPU checks chorus has never run, in one go, on a machine with one
# NVIDIA GPU (written for an H200: sm_90, ~139 GiB, 16 cores; Debian 12 with CUDA 13 + NCCL
# 2.28 under /usr/local/cuda; nothing is downloaded). Run from the root of a chorus checkout:
#
#   OUT=/some/dir bash gpu-validate.sh        # results and logs go to $OUT (default build-gpu/out)
#
# Total wall time is kept under BUDGET_S (default 515 s; about 5 min expected on an H200
# box): every step has its own timeout, and a step that cannot fit in what is left is
# recorded as SKIPPED. Steps and timings are
# printed as they finish and collected in $OUT/summary.tsv; the last line is
# "N passed, N failed, N skipped". Exit status: 0 when nothing failed or hung, 1 otherwise,
# 3 when no usable GPU was found (everything after the probe is then skipped).
#
# What it does
#   1. configure + build only the GPU targets in build-gpu/ (Ninja, -j$(nproc), the GPU's own
#      architecture, -lineinfo); a rerun reuses the build tree. In parallel, nvcc builds
#      gpu_extra, a program embedded below (the large-array checks only, which need up to
#      51 GiB and so are no ctest entry).
#   2. device_reduce micro-benchmark at 256 MiB (float32 sum vs D2D copy, target >= 85 %);
#      it is also the probe: exit 77 = no usable GPU.
#   3. in parallel on the one GPU: cuda.device (every kernel x op x type vs the host, the
#      exhaustive conversion checks, codecs), nccl.device (one-rank NCCL communicator, every
#      collective x algorithm x native, CUDA graph capture, a transport moved over
#      another, teardown with work still enqueued, the memory pool's release threshold),
#      nccl.groups [one] (ncclCommSplit at one rank),
#      staged.shm (3 processes sharing the GPU over shm), the host-side tests (cuda.host,
#      nccl.host, stream.executor, stream.groups), and stream.loopback.device [cuda]:
#      chorus's stream executor with the real reduction kernels and cudaMallocAsync scratch
#      at P = 2,3,4,5,8 ranks (threads) on this one GPU, over the loopback stream-ordered
#      transport of tests/stream (NCCL's rendezvous semantics) -- NCCL itself refuses 2
#      ranks on one GPU.
#   4. one at a time: gpu_extra large (device::reduce/finalize past 2^31 elements and past the
#      grid-stride threshold of 2^30 vectors: 51 GiB), stream.loopback.device [perf] (ring
#      all-reduce 256 MiB at P=4 on the loopback: unchunked, the stream default, vs 1 MiB
#      pieces, aligned vs misaligned by 4 bytes), chorus-perf --transport nccl at 1 rank (--algo
#      ring,native, 8 B .. 256 MiB, with #wrong checked), and
#      chorus-perf --transport nccl --np 2 on the one GPU, which must FAIL FAST with NCCL's
#      "Duplicate GPU" error (not hang).
#   5. compute-sanitizer (memcheck over cuda.device without the exhaustive conversion test;
#      racecheck + synccheck over the block_quant and top_k codecs, the kernels with shared
#      memory and __syncthreads) when a compute-sanitizer binary exists; else SKIPPED.
set -uo pipefail

ROOT=$(pwd)
if [[ ! -f "$ROOT/CMakeLists.txt" || ! -d "$ROOT/include/chorus/device" ]]; then
  echo "gpu-validate: run me from the root of a chorus checkout" >&2
  exit 2
fi
BUILD=${CHORUS_GPU_BUILD:-$ROOT/build-gpu}
OUT=${OUT:-$BUILD/out}
BUDGET=${BUDGET_S:-515}
JOBS=${JOBS:-$(nproc)}
START=$(date +%s)
mkdir -p "$OUT" "$BUILD/gpu_extra"
SUMMARY="$OUT/summary.tsv"
: >"$SUMMARY"
export PATH="/usr/local/cuda/bin:$PATH"
export CHORUS_TIMEOUT=${CHORUS_TIMEOUT:-60s}
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}

elapsed() { echo $(($(date +%s) - START)); }
left() { echo $((BUDGET - $(elapsed))); }
record() { # name status seconds note
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$SUMMARY"
  printf '[t=%3ss] %-26s %-9s %4ss  %s\n' "$(elapsed)" "$1" "$2" "$3" "$4"
}
# step NAME CAP_S MIN_S LOG CMD...: runs CMD with a timeout of min(CAP, time left); records
# PASS (0), SKIP-NODEV (77), TIMEOUT (124/137), FAIL (other); returns CMD's status.
step() {
  local name=$1 cap=$2 min=$3 log=$4
  shift 4
  local l
  l=$(left)
  if ((l < min)); then
    record "$name" SKIPPED 0 "only ${l}s of the budget left (needs ${min}s)"
    return 200
  fi
  local t=$((cap < l ? cap : l)) s rc d status note=""
  s=$(date +%s)
  timeout -k 10 "$t" "$@" >"$log" 2>&1
  rc=$?
  d=$(($(date +%s) - s))
  case $rc in
    0) status=PASS ;;
    77) status=SKIP-NODEV; note="the program found no usable GPU" ;;
    124 | 137) status=TIMEOUT; note="killed after ${t}s" ;;
    *) status=FAIL; note="exit $rc" ;;
  esac
  record "$name" "$status" "$d" "$note; log $(basename "$log")"
  return $rc
}

echo "gpu-validate: root $ROOT, build $BUILD, out $OUT, budget ${BUDGET}s, $JOBS jobs"

# ---- 0. the machine ---------------------------------------------------------------------------
{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null) $(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) changed files"
  echo "host: $(uname -a)"
  echo "cpus: $(nproc)"
  nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  nvidia-smi -q -d CLOCK,POWER,MEMORY 2>/dev/null | head -80
  nvidia-smi topo -m 2>/dev/null
  nvcc --version 2>&1 | tail -2
  grep -m3 -E '#define NCCL_(MAJOR|MINOR|PATCH)' /usr/local/cuda/include/nccl.h 2>/dev/null
  cmake --version | head -1
  echo "compute-sanitizer: $(command -v compute-sanitizer || echo none on PATH)"
} >"$OUT/env.txt" 2>&1
CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
[[ "$CC" =~ ^[0-9]+$ ]] || CC=90
echo "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1) (sm_$CC)"

write_gpu_extra() {
  cat >"$BUILD/gpu_extra/gpu_extra.cu.new" <<'CUDA_SOURCE'
// gpu-validate extra check (not part of the test suite; built by gpu-validate.sh).
//
//   gpu_extra large   device::reduce / finalize past 2^31 elements and past
//                     max_blocks * 1024 vectors (grid-stride), all layouts, verified on the
//                     device (up to 51 GiB of device memory; a smaller GPU skips what does
//                     not fit).
//
// The stream executor's checks at 2-8 ranks on one GPU (the loopback transport) and the
// chunked/unchunked ring timing are the repository's stream.loopback.device test.
#include <chorus/device/reduce.cuh>
#include <chorus/device/runtime.hpp>

#include <cuda_runtime.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace {

using clk = std::chrono::steady_clock;
using chorus::device::check;

struct dev_buf {
  explicit dev_buf(std::size_t bytes) {
    check(cudaMalloc(&p, bytes == 0 ? 16 : bytes), "cudaMalloc");
  }
  ~dev_buf() { (void)cudaFree(p); }
  dev_buf(const dev_buf&) = delete;
  dev_buf& operator=(const dev_buf&) = delete;
  void* p = nullptr;
};

// ---------------------------------------------------------------------------------------------
// large: past 2^31 elements and past the grid-stride threshold (max_blocks x 256 threads x 4
// vectors = 2^30 vectors), verified on the device.

template <class T>
__global__ void fill_kernel(T* p, std::size_t n, T v) {
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    p[i] = v;
}
template <class T>
__global__ void count_kernel(const T* p, std::size_t n, T v, unsigned long long* bad) {
  unsigned long long mine = 0;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    mine += p[i] != v;
  if (mine) atomicAdd(bad, mine);
}

template <class T>
unsigned long long count_not(const T* p, std::size_t n, T v) {
  unsigned long long* d = nullptr;
  check(cudaMalloc(&d, sizeof *d), "cudaMalloc");
  check(cudaMemset(d, 0, sizeof *d), "memset");
  count_kernel<T><<<4096, 256>>>(p, n, v, d);
  check(cudaGetLastError(), "count_kernel launch");
  unsigned long long h = 0;
  check(cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost), "download");
  (void)cudaFree(d);
  return h;
}
template <class T>
void fill(T* p, std::size_t n, T v) {
  fill_kernel<T><<<4096, 256>>>(p, n, v);
  check(cudaGetLastError(), "fill_kernel launch");
}

int large_checks() {
  int failures = 0;
  auto report = [&](const char* what, unsigned long long bad, std::size_t n, double s) {
    std::printf("large %-62s n=%zu: %s (%llu wrong) [%.2f s]\n", what, n, bad == 0 ? "ok" : "WRONG", bad, s);
    std::fflush(stdout);
    failures += bad != 0;
  };
  std::size_t free_b = 0, total_b = 0;
  check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  std::printf("large: %.1f GiB free of %.1f GiB\n", free_b / 1073741824.0, total_b / 1073741824.0);
  {
    // int8: (2^30 + 2^26) vectors of 16 B = 17 GiB per array: the vector loop takes two
    // grid-stride rounds; 3 arrays = 51 GiB (+ 16 B slack for the offset layouts)
    const std::size_t n = (std::size_t{17} << 30) + 5;
    if (free_b < 3 * (n + 64) + (std::size_t{2} << 30)) {
      std::printf("large int8 17 GiB: not enough device memory; skipped\n");
    } else {
      auto t0 = clk::now();
      dev_buf a(n + 32), b(n + 32), o(n + 32);
      auto* pa = static_cast<std::int8_t*>(a.p);
      auto* pb = static_cast<std::int8_t*>(b.p);
      auto* po = static_cast<std::int8_t*>(o.p);
      check(cudaMemset(pa, 1, n + 32), "memset");
      check(cudaMemset(pb, 2, n + 32), "memset");
      check(cudaMemset(po, 0x7f, n + 32), "memset");
      chorus::device::reduce(chorus::plus{}, static_cast<const std::int8_t*>(pa),
                             static_cast<const std::int8_t*>(pb), po, n, nullptr);
      check(cudaDeviceSynchronize(), "reduce int8 17 GiB");
      report("int8 plus, aligned, 2 grid-stride rounds", count_not<std::int8_t>(po, n, 3), n,
             std::chrono::duration<double>(clk::now() - t0).count());
      report("  (the element after the array kept its value)", count_not<std::int8_t>(po + n, 1, 0x7f), 1, 0);
      t0 = clk::now();
      // same offset 5 within 16 bytes: scalar head + vectors + tail, in place into b
      chorus::device::reduce(chorus::plus{}, static_cast<const std::int8_t*>(pa + 5),
                             static_cast<const std::int8_t*>(pb + 5), pb + 5, n, nullptr);
      check(cudaDeviceSynchronize(), "reduce int8 in place");
      report("int8 plus, in place, head offset 5", count_not<std::int8_t>(pb + 5, n, 3), n,
             std::chrono::duration<double>(clk::now() - t0).count());
      report("  (the head byte before it kept its value)", count_not<std::int8_t>(pb + 4, 1, 2), 1, 0);
    }
  }
  {
    // float, 2^31 + 3 elements: past int32 indices; mismatched offsets force the scalar loop
    const std::size_t n = (std::size_t{1} << 31) + 3;
    const std::size_t bytes = (n + 8) * sizeof(float);
    check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    if (free_b < 3 * bytes + (std::size_t{1} << 30)) {
      std::printf("large float 8 GiB: not enough device memory; skipped\n");
    } else {
      auto t0 = clk::now();
      dev_buf a(bytes), b(bytes), o(bytes);
      auto* pa = static_cast<float*>(a.p);
      auto* pb = static_cast<float*>(b.p);
      auto* po = static_cast<float*>(o.p);
      fill(pa, n + 8, 1.5f);
      fill(pb, n + 8, 2.25f);
      fill(po, n + 8, -1.0f);
      chorus::device::reduce(chorus::plus{}, static_cast<const float*>(pa), static_cast<const float*>(pb),
                             po, n, nullptr);
      check(cudaDeviceSynchronize(), "reduce float 8 GiB");
      report("float plus, aligned", count_not(po, n, 3.75f), n,
             std::chrono::duration<double>(clk::now() - t0).count());
      t0 = clk::now();
      chorus::device::finalize(chorus::average{}, po, n, 3, nullptr);
      check(cudaDeviceSynchronize(), "finalize float 8 GiB");
      report("float finalize(average, 3 ranks)", count_not(po, n, 1.25f), n,
             std::chrono::duration<double>(clk::now() - t0).count());
      t0 = clk::now();
      fill(po, n + 8, -1.0f);
      chorus::device::reduce(chorus::maximum{}, static_cast<const float*>(pa + 1),
                             static_cast<const float*>(pb + 2), po + 3, n, nullptr);
      check(cudaDeviceSynchronize(), "reduce float mismatched");
      report("float max, offsets 1/2/3 (scalar path, grid-stride)", count_not(po + 3, n, 2.25f), n,
             std::chrono::duration<double>(clk::now() - t0).count());
      report("  (the elements around it kept their value)",
             count_not(po, 3, -1.0f) + count_not(po + 3 + n, 1, -1.0f), 4, 0);
    }
  }
  std::printf("large: %s\n", failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string why = chorus::device::unavailable_reason();
  if (!why.empty()) {
    std::printf("no CUDA device: %s\n", why.c_str());
    return 77;
  }
  const std::string mode = argc > 1 ? argv[1] : "large";
  try {
    if (mode == "large") return large_checks();
  } catch (const std::exception& e) {
    std::printf("gpu_extra %s: %s\n", mode.c_str(), e.what());
    return 1;
  }
  std::fprintf(stderr, "usage: %s large\n", argv[0]);
  return 2;
}
CUDA_SOURCE
  # keep the old file (and so the old binary) when nothing changed: a rerun skips the build
  if cmp -s "$BUILD/gpu_extra/gpu_extra.cu.new" "$BUILD/gpu_extra/gpu_extra.cu"; then
    rm -f "$BUILD/gpu_extra/gpu_extra.cu.new"
  else
    mv "$BUILD/gpu_extra/gpu_extra.cu.new" "$BUILD/gpu_extra/gpu_extra.cu"
  fi
}
write_gpu_extra
GEN=(-G Ninja)
command -v ninja >/dev/null || GEN=(-G "Unix Makefiles")
step configure 90 20 "$OUT/configure.log" \
  cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES="${CC}-real" -DCMAKE_CUDA_FLAGS=-lineinfo \
  -DCHORUS_BUILD_EXAMPLES=OFF -DCHORUS_WITH_UCX=OFF \
  -DCMAKE_CXX_COMPILER_LAUNCHER= -DCMAKE_CUDA_COMPILER_LAUNCHER=
grep -E "chorus: (CUDA|NCCL)" "$OUT/configure.log" | sed 's/^/  /'

# gpu_extra: plain nvcc, beside the CMake build (its own core); skipped when up to date
build_gpu_extra() {
  local exe="$BUILD/gpu_extra/gpu_extra" src="$BUILD/gpu_extra/gpu_extra.cu"
  if [[ -x "$exe" && "$exe" -nt "$src" && "$(cat "$exe.arch" 2>/dev/null)" == "$CC" ]] &&
    [[ -z "$(find "$ROOT/include" -newer "$exe" -name '*.*' -print -quit)" ]]; then
    echo "gpu_extra is up to date"
    return 0
  fi
  rm -f "$exe"
  nvcc -std=c++20 -O2 -lineinfo -arch="sm_$CC" -Xcompiler=-Wall,-Wextra -diag-suppress=550 \
    -I"$ROOT/include" "$src" -o "$exe" -lpthread && echo "$CC" >"$exe.arch"
}
export -f build_gpu_extra
export BUILD ROOT CC
(step build:gpu_extra 300 30 "$OUT/build-gpu_extra.log" bash -c build_gpu_extra) &
EXTRA_BUILD=$!

# The tests and the micro-benchmark first; chorus-perf (the longest) after, in the background.
step build:tests 330 60 "$OUT/build-tests.log" \
  cmake --build "$BUILD" -j "$JOBS" --target cuda.device cuda.host nccl.device nccl.host \
  nccl.groups stream.loopback.device stream.executor stream.groups staged.shm \
  chorus_micro_device_reduce
grep -ciE "warning" "$OUT/build-tests.log" | sed 's/^/  compiler warnings in the test build: /'
(step build:chorus-perf 360 60 "$OUT/build-chorus-perf.log" \
  cmake --build "$BUILD" -j "$JOBS" --target chorus-perf chorusrun) &
PERF_BUILD=$!

# ---- 2. micro-benchmark alone on the GPU (and the probe) ---------------------------------------
B="$BUILD"
step bench:device_reduce 90 10 "$OUT/bench-device_reduce.log" \
  "$B/bench/micro/chorus_micro_device_reduce" 256 20
rc=$?
sed 's/^/  /' "$OUT/bench-device_reduce.log" | head -12
if ((rc == 77)); then
  echo "gpu-validate: NO USABLE GPU: $(head -1 "$OUT/bench-device_reduce.log")" | tee -a "$OUT/summary.txt"
  wait
  exit 3
fi

# ---- 3. correctness, in parallel on the one GPU -------------------------------------------------
(step test:cuda.device 330 60 "$OUT/test-cuda.device.log" "$B/tests/cuda/cuda.device" -r console -d yes) &
P1=$!
(step test:nccl.device 200 30 "$OUT/test-nccl.device.log" "$B/tests/nccl/nccl.device" -r console -d yes) &
P2=$!
(step test:staged.shm 200 30 "$OUT/test-staged.shm.log" "$B/tests/staged/staged.shm" -r console -d yes) &
P3=$!
(step test:host-side 120 10 "$OUT/test-host-side.log" \
  ctest --test-dir "$B" -R '^(cuda\.host|cuda\.headers|nccl\.host|stream\.executor|stream\.groups)$' \
  --output-on-failure) &
P4=$!
(step test:nccl.groups 120 20 "$OUT/test-nccl.groups.log" "$B/tests/nccl/nccl.groups" -r console -d yes "[one]") &
P5=$!
step test:stream.loopback.device 240 40 "$OUT/test-stream.loopback.device.log" \
  "$B/tests/stream/stream.loopback.device" -r console -d yes "[cuda]"
grep -E "^(test cases|All tests passed)|FAILED|with expansion" "$OUT/test-stream.loopback.device.log" | head -20 | sed 's/^/  /'
wait "$EXTRA_BUILD"
wait "$P1" "$P2" "$P3" "$P4" "$P5"
for t in cuda.device nccl.device nccl.groups staged.shm stream.loopback.device; do
  grep -E "^(test cases|All tests passed|CHORUS_TEST_SEED|no CUDA device)" "$OUT/test-$t.log" | sed "s/^/  $t: /"
done

# ---- 4. large arrays, loopback perf, chorus-perf: one at a time ---------------------------------
if [[ -x "$BUILD/gpu_extra/gpu_extra" ]]; then
  step extra:large 90 20 "$OUT/extra-large.log" "$BUILD/gpu_extra/gpu_extra" large
  sed 's/^/  /' "$OUT/extra-large.log" | head -20
else
  record extra:large SKIPPED 0 "gpu_extra did not build (see build-gpu_extra.log)"
fi
step perf:loopback 120 30 "$OUT/perf-loopback.log" \
  "$B/tests/stream/stream.loopback.device" -r console -d yes "[perf]"
grep "^perf" "$OUT/perf-loopback.log" | sed 's/^/  /'
wait "$PERF_BUILD"
PERF="$B/bench/perf/chorus-perf"
if [[ -x "$PERF" ]]; then
  step perf:nccl-1rank 150 40 "$OUT/perf-nccl-1rank.log" \
    "$PERF" all_reduce --transport nccl --algo ring,native -b 8 -e 256M -f 4 -n 20 -w 5 \
    --json "$OUT/perf-nccl-1rank.json" --csv "$OUT/perf-nccl-1rank.csv"
  tail -22 "$OUT/perf-nccl-1rank.log" | sed 's/^/  /'
  # Two ranks on one GPU: NCCL refuses it ("Duplicate GPU detected", ncclInvalidUsage).
  # What is checked is chorus's failure path: the non-blocking join must fail promptly and
  # cleanly on both ranks, not hang until the timeout.
  s=$(date +%s)
  CHORUS_TIMEOUT=30s timeout -k 5 90 "$PERF" all_reduce --transport nccl --np 2 --algo native -b 8 -e 8 -n 1 -w 0 \
    >"$OUT/perf-nccl-2ranks-1gpu.log" 2>&1
  rc=$?
  d=$(($(date +%s) - s))
  if ((rc == 0)); then
    record perf:nccl-2ranks-1gpu NOTE "$d" "NCCL accepted 2 ranks on one GPU (unexpected): see log"
  elif ((rc == 124 || rc == 137)); then
    record perf:nccl-2ranks-1gpu FAIL "$d" "hung until killed: the join's failure path does not end"
  elif grep -qiE "duplicate gpu|invalid usage|InvalidUsage" "$OUT/perf-nccl-2ranks-1gpu.log" && ((d < 45)); then
    record perf:nccl-2ranks-1gpu PASS "$d" "failed fast as expected (rc $rc): NCCL takes one rank per GPU"
  else
    record perf:nccl-2ranks-1gpu FAIL "$d" "rc $rc without NCCL's duplicate-GPU error, or slow: see log"
  fi
  grep -m3 -iE "duplicate|error|invalid" "$OUT/perf-nccl-2ranks-1gpu.log" | cut -c1-200 | sed 's/^/  /'
else
  record perf:nccl-1rank SKIPPED 0 "chorus-perf did not build (see build-chorus-perf.log)"
fi

# ---- 5. compute-sanitizer, with what is left ----------------------------------------------------
SAN=$(command -v compute-sanitizer || true)
for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  [[ -z "$SAN" && -x "$c" ]] && SAN=$c
done
[[ -z "$SAN" ]] && SAN=$(find /usr /opt -maxdepth 7 -name compute-sanitizer -type f -perm -u+x 2>/dev/null | head -1)
if [[ -n "$SAN" ]]; then
  step sanitize:racecheck 90 30 "$OUT/sanitize-racecheck.log" \
    "$SAN" --tool racecheck --error-exitcode 99 "$B/tests/cuda/cuda.device" "block_quant codec*" "top_k codec*"
  step sanitize:synccheck 90 30 "$OUT/sanitize-synccheck.log" \
    "$SAN" --tool synccheck --error-exitcode 99 "$B/tests/cuda/cuda.device" "block_quant codec*" "top_k codec*"
  step sanitize:memcheck $(($(left) - 5)) 60 "$OUT/sanitize-memcheck.log" \
    "$SAN" --tool memcheck --error-exitcode 99 --print-limit 20 "$B/tests/cuda/cuda.device" "~device conversions*"
  grep -hE "ERROR SUMMARY|========= (Invalid|Race|Barrier)" "$OUT"/sanitize-*.log | sort | uniq -c | head | sed 's/^/  /'
else
  record sanitize SKIPPED 0 "no compute-sanitizer on this machine (not in the CUDA wheels of the image)"
fi

# ---- summary -----------------------------------------------------------------------------------
wait
pass=$(awk -F'\t' '$2=="PASS"' "$SUMMARY" | wc -l)
fail=$(awk -F'\t' '$2=="FAIL" || $2=="TIMEOUT"' "$SUMMARY" | wc -l)
skip=$(awk -F'\t' '$2!="PASS" && $2!="FAIL" && $2!="TIMEOUT"' "$SUMMARY" | wc -l)
{
  echo "gpu-validate finished in $(elapsed)s (budget ${BUDGET}s)"
  column -t -s $'\t' "$SUMMARY"
  echo "$pass passed, $fail failed, $skip skipped"
} | tee "$OUT/summary.txt"
((fail == 0))
