#!/usr/bin/env bash
# Every GPU number in BENCHMARKS.md, in one device-machine call (the `device` tool's `run`),
# within 8 minutes:   bash benchmarks/gpu_session.sh [PART ...]
# Worst case 480 s: builds and tests 200 (in parallel), pallas 70, fastpath 60 + 150. The wide
# fast-path case finds its Pallas program built (build-fastpath in pallas_build.txt has the
# cold build time).
# Parts: tests (tests/test_batched.py on the GPU: the Pallas variants built by Triton),
# pallas (gd_pallas variants against the plain vmap at 1e5 runs, measured in the same process),
# fastpath (runner.run's plain loop against fast_gd.recorded_gd), throughput (fast_gd.gd at
# 1e3-1e5 runs), zoo, sweep, completion (issue #10's 1e5 × 1e5 completion, alone: ~9 min). Default: tests pallas fastpath. Logs land in $OUT (or /tmp/gpu_out).
#
# Building one gd_pallas variant takes 1-2 minutes of one CPU core (Triton), so the variants are
# first built in parallel, one process each, into the persistent compilation cache, while the
# tests run; the timing runs then find them built. Each step has its own time limit, so one that
# fails or runs long does not cost the others. The machine's own python3 (jax with CUDA, optax,
# lineax, optimistix, pyarrow, pytest: KINDS.md) runs the repository's source from src/.
set -u
export PYTHONPATH=$PWD/src:$PWD/benchmarks PYTHONUNBUFFERED=1 DEEPLINEAR_JAX_CACHE=/tmp/jax_cache
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several processes share the GPU while building
out=${OUT:-/tmp/gpu_out}
mkdir -p "$out" /tmp/gpu_logs
py=${PY:-python3}  # the machine's python3 holds jax with CUDA
command -v "$py" >/dev/null || py=python
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
timeout 60 "$py" -c "import jax, optax, lineax, optimistix, pyarrow; print('jax', jax.__version__, jax.devices())" \
    2>&1 | tee -a "$out/gpu.txt"
part() {  # part NAME SECONDS COMMAND...: its output in $OUT/NAME.txt
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    local start=$SECONDS
    timeout "$limit" "$@" >"$out/$name.txt" 2>&1
    local status=$?
    tail -n 40 "$out/$name.txt"
    echo "== $name: exit $status, $((SECONDS - start)) s" | tee -a "$out/$name.txt"
}
# gd_pallas variants (pallas:BLOCK:WARPS:FLAGS; m = M hoisted, k = K in registers, w = the
# weights in registers): the kept kernel's best (256:8) and its neighbours
# (GPU_VARIANTS, PALLAS_RUNS, PALLAS_STEPS override them, for a quick check on a CPU)
VARIANTS=(pallas:256:8 pallas:256:8:k pallas:256:8:mk pallas:128:4:k pallas:512:8:k
    pallas:128:4:w pallas:64:2:w pallas:128:4:wk pallas:256:8:wk pallas:128:4:wmk)
[ -n "${GPU_VARIANTS:-}" ] && read -r -a VARIANTS <<<"$GPU_VARIANTS"
runs=${PALLAS_RUNS:-100000}
steps=${PALLAS_STEPS:-500}
build() {  # in the background, in parallel: every variant at 1e5 runs, and the fast path's
    # Pallas program for the wide case (one untimed pass); logs in /tmp/gpu_logs
    for v in "${VARIANTS[@]}"; do
        timeout 200 "$py" benchmarks/bench_throughput.py --steps "$steps" --runs "$runs" \
            --variants "$v" --precompile >"/tmp/gpu_logs/build-${v//:/_}.txt" 2>&1 &
    done
    timeout 200 "$py" benchmarks/bench_fast_path.py --cases wide --kernels pallas --repeats 0 \
        >/tmp/gpu_logs/build-fastpath.txt 2>&1 &
}
parts=("$@")
[ $# -eq 0 ] && parts=(tests pallas fastpath)
for name in "${parts[@]}"; do
    case $name in
    tests)
        [[ " ${parts[*]} " == *" pallas "* ]] && build
        part tests 200 "$py" -m pytest -q -p no:cacheprovider tests/test_batched.py ;;
    pallas)
        [[ " ${parts[*]} " == *" tests "* ]] || build
        echo "== waiting for the builds"
        wait
        cat /tmp/gpu_logs/build-*.txt >"$out/pallas_build.txt"
        cat "$out/pallas_build.txt"
        part pallas 70 "$py" benchmarks/bench_throughput.py --steps "$steps" --runs "$runs" \
            --variants "$(IFS=,; echo "${VARIANTS[*]}")" ;;
    fair)  # the seed_fair GD group with its probe: over 60 s on an H100 (per-record SVDs)
        part fastpath_fair 120 "$py" benchmarks/bench_fast_path.py --cases fair --repeats 1 \
            --kernels xla ;;
    fastpath)  # Pallas only where it can fill the GPU (its build is timed in "compile")
        part fastpath_wide 150 "$py" benchmarks/bench_fast_path.py --cases wide --repeats 2 \
            --kernels xla,pallas ;;
    throughput)
        part throughput 90 "$py" benchmarks/bench_throughput.py --steps 500 --variants batched ;;
    zoo)
        part zoo 150 "$py" benchmarks/bench_zoo.py --part scale --size 4096 --budget 20 ;;
    sweep)
        part sweep 60 "$py" -m deeplinear.cli sweep examples/seed_fair.toml --out /tmp/fair ;;
    completion)  # issue #10: 1e5 × 1e5 rank 10, κ = 10, from 1e8 entries (scaled-gd, als,
        # gn-cg to 1e-10 recovery), the NumPy anchor (n = 1000) in the same process. Not yet run
        # on a device: the sampling and spectral init take minutes of host time at this size.
        part completion 540 "$py" benchmarks/bench_completion_scale.py --n 100000 \
            --eta 0.5 0.2 --record-every 5 --max-seconds 90 --anchor-updates 5 ;;
    *) echo "unknown part $name (tests pallas fastpath fair throughput zoo sweep completion)"
        exit 2 ;;
    esac
done
