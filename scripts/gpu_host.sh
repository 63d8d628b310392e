#!/usr/bin/env bash
# Builds and checks foak on the air-gapped GPU host in ONE command, and leaves
# everything a remote caller needs in OUTDIR. See docs/gpu_host.md.
#
#   scripts/gpu_host.sh OUTDIR [--fixtures DIR] [--bundle DIR] [--prefix DIR]
#                       [--build DIR] [--budget SECONDS] [--jobs N]
#                       [--skip STEP,...] [--bench-8b]
#
# Why it looks like this:
#  - The host has LibTorch 2.11+CUDA (from pip), protobuf 3.21, NCCL, but no
#    gRPC/Abseil/GoogleTest/nlohmann-json: those come as Debian 12 .debs
#    (scripts/make_grpc_bundle.sh), unpacked into a private prefix -- never
#    into / -- with their pkg-config files relocated (shared/GPU_HOST.md). Their
#    CMake configs (gRPC, absl, GTest, nlohmann_json) compute paths from their
#    own location, so they need no rewriting.
#  - Device time is scarce and a command is killed at 10 minutes, so every
#    step runs under `timeout` with what is left of --budget (default 540 s),
#    a failing step never stops the later ones (each one's exit code and
#    seconds go to summary.txt), and summary.txt plus logs.tar.gz are
#    refreshed after every step, so even a killed run returns its logs.
#  - The caller gets back at most 8 files, no deep folders: OUTDIR holds only
#    summary.txt, env.txt, logs.tar.gz, bench.json, bench.md, hf_load.txt and
#    (with --fixtures) parity_fixtures.tar.gz.
#
# Steps, in this order (the most wanted first, should the budget run out):
# env, fixtures (only with --fixtures; needs no build), unpack, configure,
# build, ctest_gpu (`ctest -L gpu`; a SKIPPED gpu test counts as a failure
# here: it means CUDA was not usable), hf_load (scripts/check_hf_load.py:
# foak checkpoints load in transformers with the same logits, and the
# reverse), peft_load (PEFT loads a foak adapter with the same logits),
# train_gpu (scripts/check_gpu_train.py), ctest_cpu (every other test, against LibTorch 2.11), kernel_bench (each fused op vs its composite), bench
# (Llama-3.2-1B shape, bf16: 4x2048 and 16x512; --bench-8b adds the
# Llama-3-8B shape at 2x2048). --skip takes a comma-separated list of
# ctest_gpu, hf_load, peft_load, train_gpu, ctest_cpu, kernel_bench, bench,
# foakd_gpu, dp_gpu, qlora_bench, bench_e2e (e.g. on a rerun after a fix).
# qlora_bench (scripts/bench_qlora.sh) measures LoRA against QLoRA. dp_gpu needs 2
# GPUs (scripts/dp_gpu_check.sh). bench_e2e (scripts/bench_e2e.sh)
# compares foak through foakd with transformers on the same card.
# The bundle is unpacked again only when it changed (a stamp in the prefix),
# so a rerun on a still-warm machine rebuilds incrementally.
set -uo pipefail

usage() { sed -n '5,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ $# -ge 1 ] || usage
OUTDIR="$1"; shift
case "$OUTDIR" in -*) usage ;; esac
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="$REPO/third_party/grpc-bundle"
PREFIX="/opt/foak-deps"
BUILD="$REPO/build"
BUDGET=540
JOBS="$(nproc 2>/dev/null || echo 16)"
FIXTURES=""
BENCH_8B=0
SKIP=","
while [ $# -gt 0 ]; do
  case "$1" in --fixtures|--bundle|--prefix|--build|--budget|--jobs|--skip)
    [ $# -ge 2 ] || { echo "gpu_host: $1 needs a value" >&2; usage; } ;;
  esac
  case "$1" in
    --fixtures) FIXTURES="$2"; shift 2 ;;
    --bundle) BUNDLE="$2"; shift 2 ;;
    --prefix) PREFIX="$2"; shift 2 ;;
    --build) BUILD="$2"; shift 2 ;;
    --budget) BUDGET="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --skip) SKIP=",$2,"; shift 2 ;;
    --bench-8b) BENCH_8B=1; shift ;;
    *) echo "gpu_host: unknown argument '$1'" >&2; usage ;;
  esac
done

export PYTHONUNBUFFERED=1  # Python's output reaches the logs even if it is killed
START=$(date +%s)
DEADLINE=$((START + BUDGET))
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/foak_gpu_host.XXXXXX")"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
SUMMARY="$OUTDIR/summary.txt"
printf '%-14s %5s %7s  %s\n' step rc seconds note > "$SUMMARY"
declare -A RC=()
wanted() { case "$SKIP" in *",$1,"*) return 1 ;; *) return 0 ;; esac; }

log() { echo "[gpu_host $(date +%H:%M:%S) +$(( $(date +%s) - START ))s] $*" | tee -a "$LOGS/gpu_host.log" >&2; }

# Refreshes OUTDIR/logs.tar.gz (cheap) so a run killed later still returns logs.
pack_logs() {
  if [ -d "$BUILD/Testing/Temporary" ]; then
    cp -f "$BUILD"/Testing/Temporary/LastTest*.log "$LOGS/" 2>/dev/null || true
  fi
  tar -czf "$OUTDIR/logs.tar.gz.tmp" -C "$WORK" logs 2>/dev/null &&
    mv -f "$OUTDIR/logs.tar.gz.tmp" "$OUTDIR/logs.tar.gz"
}

record() {  # record STEP RC SECONDS NOTE
  RC[$1]=$2
  printf '%-14s %5s %7s  %s\n' "$1" "$2" "$3" "$4" >> "$SUMMARY"
  pack_logs
}

# run_step NAME CAP_SECONDS CMD...: runs CMD with stdout+stderr in
# logs/NAME.log under `timeout min(CAP, time left)`, and records the result.
run_step() {
  local name="$1" cap="$2"; shift 2
  local now left t0 rc note=""
  now=$(date +%s)
  left=$((DEADLINE - now - 15))  # 15 s kept for the final packing
  if [ "$left" -lt 10 ]; then
    log "skip $name: budget spent"
    record "$name" skip 0 "budget of ${BUDGET}s spent"
    return 0
  fi
  [ "$cap" -gt "$left" ] && { cap=$left; note="cap cut to ${cap}s by budget"; }
  local cmd="$*"
  [ "${#cmd}" -gt 240 ] && cmd="${cmd:0:240}..."
  log "start $name (cap ${cap}s): $cmd"
  t0=$(date +%s)
  timeout --kill-after=10 "$cap" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  [ "$rc" -eq 124 ] && note="TIMED OUT after ${cap}s${note:+; $note}"
  log "end $name: rc=$rc in $(( $(date +%s) - t0 ))s ${note}"
  record "$name" "$rc" "$(( $(date +%s) - t0 ))" "$note"
  return 0
}

skip_step() {  # skip_step NAME WHY
  log "skip $1: $2"
  record "$1" skip 0 "$2"
}

# At exit: the summary and the telling lines of each log on stdout, which is
# what a remote caller sees first (the device tool returns the output's tail).
finish() {
  local total=$(( $(date +%s) - START ))
  printf '%-14s %5s %7s  %s\n' total - "$total" "work dir $WORK" >> "$SUMMARY"
  pack_logs
  echo "================ digest ================"
  grep -h "foak: LibTorch" "$LOGS/configure.log" 2>/dev/null
  if [ -s "$LOGS/build_errors.txt" ]; then
    echo "--- build errors (first 40) ---"; cat "$LOGS/build_errors.txt"
  fi
  local f
  for f in ctest_gpu ctest_cpu; do
    [ -f "$LOGS/$f.log" ] || continue
    echo "--- $f ---"
    grep -E "tests passed|tests failed|\(Failed\)|\(Skipped\)|\(Timeout\)|\(SEGFAULT\)|\(Not Run\)|Exception|No tests were found" "$LOGS/$f.log" | head -40
  done
  [ -f "$OUTDIR/hf_load.txt" ] && { echo "--- hf_load ---"; cat "$OUTDIR/hf_load.txt"; }
  [ -f "$LOGS/hf_load.log" ] && [ ! -f "$OUTDIR/hf_load.txt" ] && { echo "--- hf_load (log tail) ---"; tail -20 "$LOGS/hf_load.log"; }
  [ -f "$LOGS/peft_load.log" ] && { echo "--- peft_load ---"; tail -6 "$LOGS/peft_load.log"; }
  [ -f "$LOGS/foakd_gpu.log" ] && { echo "--- foakd_gpu ---"; tail -25 "$LOGS/foakd_gpu.log"; }
  [ -f "$LOGS/train_gpu.log" ] && { echo "--- train_gpu ---"; grep -v "^\[" "$LOGS/train_gpu.log" | tail -12; }
  [ -f "$OUTDIR/kernel_bench.md" ] && { echo "--- kernel_bench ---"; grep -E "foak|ceilings|accuracy" "$OUTDIR/kernel_bench.md"; }
  [ -f "$OUTDIR/bench.md" ] && { echo "--- bench ---"; cat "$OUTDIR/bench.md"; }
  [ -f "$OUTDIR/bench_e2e.md" ] && { echo "--- bench_e2e ---"; cat "$OUTDIR/bench_e2e.md"; }
  [ -f "$LOGS/bench_e2e.log" ] && { echo "--- bench_e2e (log tail) ---"; tail -15 "$LOGS/bench_e2e.log"; }
  for f in "$LOGS"/bench_*.log; do
    [ -f "$f" ] || continue
    grep -q "tokens/s" "$f" || { echo "--- $(basename "$f") (tail) ---"; tail -8 "$f"; }
  done
  echo "--- summary.txt ---"; cat "$SUMMARY"
  log "done in ${total}s; OUTDIR has: $(ls "$OUTDIR" | tr '\n' ' ')"
}
trap finish EXIT

# ---------------------------------------------------------------- env -----
write_env() {
  set +e
  echo "== date"; date -u
  echo "== uname"; uname -a
  echo "== os-release"; grep -E '^(PRETTY_NAME|VERSION_ID)=' /etc/os-release
  echo "== cpu / memory / disk"; nproc; free -g | head -2; df -h "$REPO" /tmp | tail -n +1
  echo "== nvidia-smi"; nvidia-smi 2>&1
  echo "== nvidia-smi query"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  echo "== python / torch / transformers"
  python3 - <<'PY' 2>&1
import sys
print("python", sys.version.split()[0])
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda,
          "cxx11abi", torch._C._GLIBCXX_USE_CXX11_ABI)
    print("cuda available", torch.cuda.is_available())
    if torch.cuda.is_available():
        print("device", torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
    print("cmake prefix", torch.utils.cmake_prefix_path)
except Exception as e:
    print("torch import failed:", e)
for mod in ("transformers", "safetensors", "numpy"):
    try:
        m = __import__(mod)
        print(mod, getattr(m, "__version__", "?"))
    except Exception as e:
        print(mod, "import failed:", e)
PY
  echo "== nvcc"; (command -v nvcc && nvcc --version) 2>&1 || /usr/local/cuda/bin/nvcc --version 2>&1
  echo "== cmake"; cmake --version 2>&1 | head -1
  echo "== ninja"; ninja --version 2>&1
  echo "== gcc / g++"; gcc --version 2>&1 | head -1; g++ --version 2>&1 | head -1
  echo "== protoc"; protoc --version 2>&1
  echo "== host packages the build relies on (present = 1)"
  for f in /usr/include/google/protobuf/message.h /usr/include/openssl/ssl.h \
           /usr/include/zlib.h /usr/include/nccl.h; do
    printf '%s %s\n' "$([ -e "$f" ] && echo 1 || echo 0)" "$f"
  done
  for t in pkg-config dpkg-deb ccache; do
    printf '%s %s\n' "$(command -v "$t" >/dev/null && echo 1 || echo 0)" "$t"
  done
  echo "== repo"; echo "$REPO"; (cd "$REPO" && git status --short 2>/dev/null | wc -l) 2>&1
  echo "== bundle $BUNDLE"; ls -l "$BUNDLE" 2>&1; cat "$BUNDLE/MANIFEST.txt" 2>/dev/null
  return 0
}
write_env > "$OUTDIR/env.txt" 2>&1
cp "$OUTDIR/env.txt" "$LOGS/env.txt"
record env 0 "$(( $(date +%s) - START ))" "see env.txt"

# ----------------------------------------------------------- fixtures -----
# Only Python + transformers are needed, so this runs before the build and
# cannot be starved by it.
if [ -n "$FIXTURES" ]; then
  if [ -f "$REPO/scripts/make_parity_fixtures.py" ]; then
    mkdir -p "$FIXTURES"
    FIXTURES="$(cd "$FIXTURES" && pwd)"
    run_step fixtures 150 python3 "$REPO/scripts/make_parity_fixtures.py" "$FIXTURES"
    if [ "${RC[fixtures]}" = 0 ]; then
      tar -czf "$OUTDIR/parity_fixtures.tar.gz" -C "$(dirname "$FIXTURES")" "$(basename "$FIXTURES")"
      # A fixtures folder inside OUTDIR would exceed the 8 files that come back.
      case "$FIXTURES/" in "$OUTDIR"/*) rm -rf "$FIXTURES" ;; esac
    fi
  else
    skip_step fixtures "scripts/make_parity_fixtures.py not in the tree"
  fi
fi

# ------------------------------------------------------------- unpack -----
unpack_bundle() {
  set -e
  local arch_lib="$PREFIX/usr/lib/x86_64-linux-gnu"
  ls "$BUNDLE"/*.deb > /dev/null  # fails loudly when the bundle was not carried
  local need_ssl=0 need_pkgconf=0
  [ -e /usr/include/openssl/ssl.h ] || need_ssl=1
  command -v pkg-config > /dev/null || need_pkgconf=1
  echo "host lacks openssl headers: $need_ssl, lacks pkg-config: $need_pkgconf"
  local stamp
  stamp="$( (cd "$BUNDLE" && ls -l -- *.deb | awk '{print $5, $NF}'; echo "$need_ssl$need_pkgconf") | sha256sum | cut -c1-32)"
  if [ -f "$PREFIX/.foak-bundle-stamp" ] && [ "$(cat "$PREFIX/.foak-bundle-stamp")" = "$stamp" ]; then
    echo "bundle already unpacked in $PREFIX (stamp $stamp): nothing to do"
    return 0
  fi
  rm -rf "$PREFIX"
  mkdir -p "$PREFIX"
  local f pkg
  for f in "$BUNDLE"/*.deb; do
    pkg="$(dpkg-deb -f "$f" Package)"
    case "$pkg" in
      libssl-dev) [ "$need_ssl" = 1 ] || { echo "skip fallback $pkg"; continue; } ;;
      pkgconf|pkgconf-bin|libpkgconf3)
        [ "$need_pkgconf" = 1 ] || { echo "skip fallback $pkg"; continue; } ;;
    esac
    echo "unpack $pkg ($(basename "$f"))"
    dpkg -x "$f" "$PREFIX"
  done
  # pkg-config files carry absolute /usr paths (re2.pc even libdir=/usr/lib/...).
  local pcs=()
  for f in "$arch_lib"/pkgconfig/*.pc "$PREFIX"/usr/share/pkgconfig/*.pc; do
    [ -e "$f" ] && pcs+=("$f")
  done
  sed -i -E "s#=/usr(/|\$)#=$PREFIX/usr\\1#" "${pcs[@]}"
  echo "relocated ${#pcs[@]} .pc files; re2.pc now:"; cat "$arch_lib/pkgconfig/re2.pc"
  if [ "$need_ssl" = 1 ]; then
    # Debian's libssl.so links point at libssl.so.3 beside them, which is the
    # host's runtime: point them there (same OpenSSL 3.0 ABI).
    local l
    for l in ssl crypto; do
      ln -sfn "/usr/lib/x86_64-linux-gnu/lib$l.so.3" "$arch_lib/lib$l.so"
    done
  fi
  # The CMake configs locate themselves relative to their own file; report
  # any absolute /usr path that is not the "/usr move" guard, for the record.
  echo "absolute /usr paths in CMake configs (expected: only _realOrig guards):"
  grep -rn '"/usr' "$arch_lib/cmake" "$PREFIX/usr/share/cmake" 2>/dev/null | grep -v '_realOrig\|set(_IMPORT_PREFIX "/usr\|PACKAGE_PREFIX_DIR "/usr"' || echo "  none"
  echo "files: $(find "$PREFIX" -type f | wc -l), size: $(du -sh "$PREFIX" | cut -f1)"
  echo "$stamp" > "$PREFIX/.foak-bundle-stamp"
}

if ! mkdir -p "$PREFIX" 2>/dev/null || ! [ -w "$PREFIX" ]; then
  log "$PREFIX is not writable; using ${TMPDIR:-/tmp}/foak-deps"
  PREFIX="${TMPDIR:-/tmp}/foak-deps"
fi
run_step unpack 60 bash -c "$(declare -f unpack_bundle); PREFIX='$PREFIX' BUNDLE='$BUNDLE' unpack_bundle"

export PATH="$PREFIX/usr/bin:/usr/local/cuda/bin:$PATH"
export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PKG_CONFIG_PATH="$PREFIX/usr/lib/x86_64-linux-gnu/pkgconfig:$PREFIX/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

# ---------------------------------------------------------- configure -----
TORCH_PREFIX="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)"
log "torch cmake prefix: ${TORCH_PREFIX:-NOT FOUND}"
CMAKE_ARGS=(-S "$REPO" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release
  "-DCMAKE_PREFIX_PATH=$TORCH_PREFIX;$PREFIX/usr"
  -DCMAKE_CUDA_ARCHITECTURES=90)
NVCC="$(command -v nvcc || true)"
[ -n "$NVCC" ] && CMAKE_ARGS+=("-DCMAKE_CUDA_COMPILER=$NVCC")
[ -d /usr/local/cuda ] && CMAKE_ARGS+=(-DCUDAToolkit_ROOT=/usr/local/cuda)
run_step configure 120 cmake "${CMAKE_ARGS[@]}"
if [ "${RC[configure]}" = 0 ]; then
  # The line the top CMakeLists.txt prints; without "CUDA in LibTorch: ON" the
  # gpu tests would only skip.
  grep -h "foak: LibTorch" "$LOGS/configure.log" | tee -a "$LOGS/gpu_host.log" >&2 || true
  if ! grep -q "CUDA in LibTorch: ON" "$LOGS/configure.log"; then
    log "WARNING: configure did not find CUDA in LibTorch"
    printf '%-14s %5s %7s  %s\n' configure warn - "LibTorch without CUDA: GPU tests will skip" >> "$SUMMARY"
  fi
  grep -E "gRPC_DIR|absl_DIR|GTest_DIR|nlohmann_json_DIR|Torch_DIR|Protobuf_LIBRARY:|Protobuf_PROTOC_EXECUTABLE|CMAKE_CUDA_COMPILER:" \
    "$BUILD/CMakeCache.txt" > "$LOGS/configure_found.txt" 2>/dev/null || true
fi

# -------------------------------------------------------------- build -----
if [ "${RC[configure]}" = 0 ]; then
  # -k 0: build every target that can be built, so one broken file still
  # leaves the other tests and the benchmark runnable.
  # FOAK_BUILD_TARGETS (optional) limits the build to named targets, for a
  # quick rerun of one kernel's tests and benchmark.
  run_step build 330 ninja -C "$BUILD" -j "$JOBS" -k 0 ${FOAK_BUILD_TARGETS:-}
  grep -E "error:|FAILED:" "$LOGS/build.log" | head -40 > "$LOGS/build_errors.txt" || true
else
  skip_step build "configure failed"
fi

# ---------------------------------------------------------- ctest_gpu -----
if ! wanted ctest_gpu; then
  :
elif [ "${RC[configure]}" = 0 ]; then
  run_step ctest_gpu 150 bash -c "cd '$BUILD' && ctest -L gpu -j 4 --output-on-failure --timeout 140 --no-tests=error"
  if grep -q "(Skipped)" "$LOGS/ctest_gpu.log"; then
    n=$(grep -c "(Skipped)" "$LOGS/ctest_gpu.log")
    log "ctest_gpu: $n gpu tests SKIPPED on the GPU host (CUDA not usable?)"
    printf '%-14s %5s %7s  %s\n' ctest_gpu FAIL - "$n gpu tests skipped: CUDA not usable from the tests" >> "$SUMMARY"
  fi
else
  skip_step ctest_gpu "configure failed"
fi

# ------------------------------------------------------------ hf_load -----
WORKER_BIN="$BUILD/worker/foak-worker"
if ! wanted hf_load; then
  :
elif [ -x "$WORKER_BIN" ]; then
  HF_ARGS=(--worker "$WORKER_BIN" --work "$WORK/hf_load" --report "$OUTDIR/hf_load.txt")
  # Freshly made fixtures (when still on disk) are checked too.
  [ -n "$FIXTURES" ] && [ -d "$FIXTURES" ] && HF_ARGS+=(--fixtures "$FIXTURES")
  run_step hf_load 150 python3 "$REPO/scripts/check_hf_load.py" "${HF_ARGS[@]}"
else
  skip_step hf_load "no $WORKER_BIN (build failed?)"
fi

# --------------------------------------------------------- peft_load -----
# PEFT loads an adapter that foak saves (fresh, from this build) and computes
# the same logits (scripts/check_peft_load.py).
PEFT_TEST_BIN="$BUILD/tests/unit/lora_peft_parity_test"
if ! wanted peft_load; then
  :
elif [ -x "$PEFT_TEST_BIN" ]; then
  run_step peft_load 90 bash -c "FOAK_PEFT_EXPORT_DIR='$WORK/peft_export' '$PEFT_TEST_BIN' \
      --gtest_filter='*ExportForPeft' && python3 '$REPO/scripts/check_peft_load.py' \
      --base '$REPO/tests/testdata/parity/llama3_gqa' --adapter '$WORK/peft_export/adapter' \
      --logits '$WORK/peft_export/logits.safetensors'"
else
  skip_step peft_load "no $PEFT_TEST_BIN (build failed?)"
fi

# ---------------------------------------------------------- train_gpu -----
# foak-worker trains the debug model on CUDA in bf16-mixed, bf16 and fp32
# (scripts/check_gpu_train.py: finite, falling losses, a final checkpoint).
if ! wanted train_gpu; then
  :
elif [ -x "$WORKER_BIN" ]; then
  run_step train_gpu 240 python3 "$REPO/scripts/check_gpu_train.py" --worker "$WORKER_BIN" \
    --work "$WORK/train_gpu" --device cuda
else
  skip_step train_gpu "no $WORKER_BIN (build failed?)"
fi

# ---------------------------------------------------------- ctest_cpu -----
if ! wanted ctest_cpu; then
  :
elif [ "${RC[configure]}" = 0 ]; then
  # 8 tests at a time with 2 torch threads each fill the 16 cores without
  # oversubscribing them.
  run_step ctest_cpu 170 bash -c "cd '$BUILD' && OMP_NUM_THREADS=2 ctest -LE gpu -j 8 --output-on-failure --timeout 160"
else
  skip_step ctest_cpu "configure failed"
fi

# ------------------------------------------------------- kernel_bench -----
# Each fused op against its LibTorch composite (bench/kernels/*_bench.cc):
# kernel_bench.md holds their tables, kernel_bench.jsonl every row.
if ! wanted kernel_bench; then
  :
elif ls "$BUILD"/bench/foak_*_bench >/dev/null 2>&1; then
  : > "$OUTDIR/kernel_bench.jsonl"
  # KBENCH_OPS="fused_lora nf4" runs a subset (device time is scarce).
  KBENCH_OPS="${KBENCH_OPS:-rms_norm rope swiglu cross_entropy fused_linear_cross_entropy fused_lora nf4}"
  for op in $KBENCH_OPS; do
    bin="$BUILD/bench/foak_${op}_bench"
    [ -x "$bin" ] || { log "kernel_bench: no $bin"; continue; }
    run_step "kbench_$op" 120 "$bin" --json "$OUTDIR/kernel_bench.jsonl"
  done
  { for op in $KBENCH_OPS; do
      [ -f "$LOGS/kbench_$op.log" ] && { echo "## $op"; grep -E "^\||^#" "$LOGS/kbench_$op.log"; echo; }
    done; } > "$OUTDIR/kernel_bench.md"
else
  skip_step kernel_bench "no kernel benchmarks (build failed?)"
fi

# -------------------------------------------------------------- bench -----
BENCH_BIN="$BUILD/bench/foak_model_bench"
BENCH_JSONS=()
bench() {  # bench NAME CONFIG B T [KERNELS] [ACTIVATION_CHECKPOINTING on|off]
  local name="$1" config="$2" b="$3" t="$4" kernels="${5:-}" ac="${6:-off}"
  run_step "$name" 150 "$BENCH_BIN" --config "$REPO/$config" --batch "$b" --seq "$t" \
    --dtype bf16 --steps 10 --warmup 3 --json "$LOGS/$name.json" ${kernels:+--kernels "$kernels"} \
    --activation-checkpointing "$ac"
  [ -f "$LOGS/$name.json" ] && BENCH_JSONS+=("$LOGS/$name.json")
}
if ! wanted bench; then
  :
elif [ -x "$BENCH_BIN" ]; then
  bench bench_1b_4x2048 bench/models/llama-3.2-1b 4 2048
  bench bench_1b_4x2048_foak bench/models/llama-3.2-1b 4 2048 foak
  bench bench_1b_4x2048_all bench/models/llama-3.2-1b 4 2048 all
  bench bench_1b_16x512 bench/models/llama-3.2-1b 16 512
  bench bench_1b_16x512_all bench/models/llama-3.2-1b 16 512 all
  bench bench_1b_4x2048_all_ac bench/models/llama-3.2-1b 4 2048 all on
  bench bench_1b_16x2048_all_ac bench/models/llama-3.2-1b 16 2048 all on
  if [ "$BENCH_8B" = 1 ]; then
    bench bench_8b_2x2048 bench/models/llama-3-8b 2 2048
    bench bench_8b_2x2048_all bench/models/llama-3-8b 2 2048 all
  fi
  # bench.json (all runs) and bench.md (a table beside the transformers anchors).
  python3 - "$OUTDIR" "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)" \
      "${BENCH_JSONS[@]}" <<'PY' > "$LOGS/bench_merge.log" 2>&1 || log "bench merge failed"
import json, sys
out, gpu, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = [json.load(open(p)) for p in paths]
for r in runs:
    r["gpu"] = gpu
json.dump(runs, open(out + "/bench.json", "w"), indent=2)
# shared/TARGETS.md, H200, transformers 5.17 full FT with fused AdamW (ours: no optimizer step).
anchors = {(4, 2048): "50.1k tok/s, 32.1 GiB", (16, 512): "53.9k tok/s, 26.2 GiB"}
lines = [f"# foak_model_bench on {gpu or 'unknown GPU'}", "",
         "Forward + CausalLmLoss + backward, pure bf16, random init, no optimizer step; "
         "TFLOP/s from 6*N_matmul + 6*L*T*d_attn FLOPs per token (causal); peak = 790 TFLOP/s.", "",
         "| config | B x T | kernels | act. ckpt | ms/step | tokens/s | TFLOP/s | % peak | peak alloc GiB | loss first/last | transformers anchor (H200, incl. AdamW) |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
for r in runs:
    a = anchors.get((r["batch"], r["seq"]), "") if "1b" in r["config"] else ""
    lines.append(f"| {r['config'].rstrip('/').split('/')[-1]} | {r['batch']} x {r['seq']} | {r.get('kernels', 'none')} | "
                 f"{'on' if r.get('activation_checkpointing') else 'off'} | {r['ms_per_step']:.1f} | "
                 f"{r['tokens_per_s']:.0f} | {r['tflops']:.1f} | {r['pct_of_790_tflops']:.1f} | "
                 f"{r['peak_allocated_gib']:.2f} | {r['loss_first']:.3f}/{r['loss_last']:.3f} | {a} |")
open(out + "/bench.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
else
  skip_step bench "no $BENCH_BIN (build failed?)"
fi

# ---------------------------------------------------------- foakd_gpu -----
# Fine-tunes (full + all kernels in bf16; LoRA + foak kernels + activation
# checkpointing) submitted to foakd --gpus auto (scripts/foakd_gpu_check.sh).
if ! wanted foakd_gpu; then
  :
elif [ -x "$WORKER_BIN" ]; then
  run_step foakd_gpu 120 bash "$REPO/scripts/foakd_gpu_check.sh" "$WORK/foakd_gpu" "$BUILD"
else
  skip_step foakd_gpu "no $WORKER_BIN (build failed?)"
fi

# ---------------------------------------------------------- dp_gpu --------
# Issue 7 on a host with 2 GPUs (scripts/dp_gpu_check.sh): the data-parallel
# tests over NCCL, 1B scaling from 1 GPU to 2, 8B full fine-tuning with
# sharded optimizer state, fine-tunes through foakd with --gpus 2. OUTDIR gets
# dp_gpu.md and dp_gpu.jsonl.
if ! wanted dp_gpu; then
  skip_step dp_gpu "skipped by --skip"
elif [ "$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')" -lt 2 ]; then
  skip_step dp_gpu "needs 2 GPUs"
elif [ -x "$WORKER_BIN" ]; then
  run_step dp_gpu 560 env DP_LOGS="$LOGS/dp_gpu" bash "$REPO/scripts/dp_gpu_check.sh" "$OUTDIR" "$BUILD"
else
  skip_step dp_gpu "no $WORKER_BIN (build failed?)"
fi

# -------------------------------------------------------- qlora_bench -----
# Issue 10 (scripts/bench_qlora.sh): Llama-3-8B-shaped LoRA against QLoRA on
# one GPU with and without fused_lora, and a Llama-3-70B-shaped QLoRA step on
# one GPU and, with two, on two. OUTDIR gets qlora_bench.md and .jsonl.
if ! wanted qlora_bench; then
  :
elif [ -x "$WORKER_BIN" ]; then
  run_step qlora_bench 560 env QLORA_LOGS="$LOGS/qlora" bash "$REPO/scripts/bench_qlora.sh" "$OUTDIR" "$BUILD"
else
  skip_step qlora_bench "no $WORKER_BIN (build failed?)"
fi

# ---------------------------------------------------------- bench_e2e -----
# Issue 6's comparison (scripts/bench_e2e.sh): foak's benchmark jobs through
# foakd + `foakctl bench` beside bench/hf_peer.py (transformers) on the same
# card; OUTDIR gets bench_e2e.md, bench_e2e.json and bench_e2e.png, the raw
# rows and logs go into logs.tar.gz. BENCH_E2E_ARGS adds arguments (e.g.
# "--max-batch --shapes 1b_2048").
if ! wanted bench_e2e; then
  :
elif [ -x "$WORKER_BIN" ]; then
  export BENCH_WORK="$LOGS/bench_e2e"
  # shellcheck disable=SC2086
  run_step bench_e2e 560 bash "$REPO/scripts/bench_e2e.sh" "$OUTDIR" --build "$BUILD" ${BENCH_E2E_ARGS:-}
else
  skip_step bench_e2e "no $WORKER_BIN (build failed?)"
fi

# Exit status: 0 only when every recorded step passed.
bad=0
for k in "${!RC[@]}"; do
  case "${RC[$k]}" in 0) ;; *) bad=1 ;; esac
done
if grep -q " FAIL " "$SUMMARY"; then bad=1; fi
exit $bad
