#!/usr/bin/env bash
# Every GPU number in BENCHMARKS.md, in one device-machine call (the `device` tool's `run`):
#   bash benchmarks/gpu_session.sh [PART ...]    (parts: throughput pallas zoo sweep; default all)
# Logs land in $OUT (or /tmp/gpu_out). Each part has its own time limit, so one that fails or
# runs long does not cost the others.
set -u
export PYTHONPATH=$PWD/src:$PWD/benchmarks PYTHONUNBUFFERED=1 DEEPLINEAR_JAX_CACHE=/tmp/jax_cache
out=${OUT:-/tmp/gpu_out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import jax, optax, lineax, optimistix; print('jax', jax.__version__, jax.devices())"
part() {  # part NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]}, $((SECONDS - start)) s"
}
parts=("$@")
[ $# -eq 0 ] && parts=(throughput pallas zoo sweep)
for name in "${parts[@]}"; do
    case $name in
    throughput)
        part throughput 90 python3 benchmarks/bench_throughput.py --steps 500 \
            --variants batched ;;
    pallas)  # the Triton build of this kernel takes minutes: measured where it matters only
        part pallas 200 python3 benchmarks/bench_throughput.py --steps 500 --runs 100000 \
            --variants pallas:128:4,pallas:256:8 ;;
    zoo)
        part zoo 150 python3 benchmarks/bench_zoo.py --part scale --size 4096 --budget 20 ;;
    sweep)
        part sweep 60 python3 -m deeplinear.cli sweep examples/seed_fair.toml --out /tmp/fair ;;
    *) echo "unknown part $name (throughput pallas zoo sweep)"; exit 2 ;;
    esac
done
