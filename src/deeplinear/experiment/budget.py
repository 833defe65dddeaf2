"""What a run, a sweep or an explain will cost, estimated before anything runs, and the limits
it is checked against.

A model, not a measurement, sized to tell a run that takes minutes from one that would take
days or more memory than the machine has: peak memory is the problem's data, the initial
weights, the largest batch's working set (``method.memory_values``: dense Jacobians, Grams,
optimizer state) and every recorded row (three copies: device, host, table); time is compile
time (growing like depth^1.35 · passes^0.7) plus, per step, a fixed overhead per layer traversal
(``method.passes``) and the analytic FLOPs of ``cost.step_flops`` at a sustained rate.

The limits: memory, half of this machine's RAM; time, one hour. Raise them with
``--max-memory GIB`` / ``--max-hours H`` or the environment variables ``DEEPLINEAR_MAX_MEMORY_GIB``
and ``DEEPLINEAR_MAX_HOURS`` (which sweeps' Ray workers inherit).
"""

from __future__ import annotations

from dataclasses import dataclass

from deeplinear.core.limits import (
    BYTES_PER_VALUE,
    RUNTIME_BYTES,
    Estimate,
    Limits,
    check,
)
from deeplinear.diagnostics.probes import spectrum_fits
from deeplinear.methods import check_method, make_method
from deeplinear.methods.cost import SVD, Measurements, residual_rows, step_flops
from deeplinear.objectives.measurement import lines_values
from deeplinear.problems.kinds import problem_kind

# Time model, calibrated on 2 CPU cores (float64): a step of GD at width 6 costs 4.3 µs per layer
# (dispatch-bound); compiling a run of depth L takes 1 + 0.0111 · L^1.35 · min(passes, 25)^0.7 s,
# fitted to compiles measured without the cache (benchmarks/bench_estimates.py): GD 1.95 s at
# L = 25, 5.5 s at 100, 15.2 at 200, 30.2 at 400, 92.7 at 800; Adam 7.1 at 100, 33.3 at 400; LM
# with CG (24 passes) 6.6 at 16, 10.0 at 32, 27.9 at 64.
FLOPS_PER_SECOND = 2e10
STEP_SECONDS = 5e-6
LAYER_SECONDS = 4e-6
COMPILE_SECONDS = 1.0
COMPILE_PER_LAYER = 0.0111
COMPILE_EXPONENT = 1.35
PASSES_EXPONENT = 0.7  # a program with more traversals of the chain compiles sublinearly longer
EXPECTED_CG_STEPS = 20  # the model's CG iterations per step (at most cg_max_steps)


@dataclass(frozen=True)
class Dims:
    """What the estimate needs to know of a problem: widths, data size, rank."""

    widths: tuple[int, ...]  # d_out, h_1, …, d_in
    samples: int | None  # None: population loss
    spectral_init: bool = False
    measurements: int | None = None  # completion, sensing: m (then samples is None)
    dense_operator: bool = False  # sensing: every measurement reads the whole W
    dense_truth: int = 0  # entries of a dense truth read from the .npz

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return list(zip(self.widths, self.widths[1:]))

    @property
    def parameters(self) -> int:
        return sum(a * b for a, b in self.shapes)

    @property
    def k(self):
        """Rows of the reduced residual (None for the population loss), or the measurements
        (``cost.Measurements``) of a completion or sensing problem."""
        if self.measurements is not None:
            return Measurements(self.measurements, self.dense_operator)
        return None if self.samples is None else min(self.samples, self.widths[-1])

    @property
    def depth(self) -> int:
        return len(self.widths) - 1


def dims(config) -> Dims:
    """The dimensions a run file describes (reading only the headers of its .npz files)."""
    spec = config.problem
    size = problem_kind(spec["kind"]).dims(spec, config.base_dir)
    widths = (size.d_out, *config.hidden, size.d_in)
    if size.measurements is not None:
        return Dims(widths, None, False, size.measurements, size.dense_operator, size.dense_truth)
    return Dims(widths, size.samples, config.init["kind"] == "spectral")


def _data_values(d: Dims) -> float:
    d_out, d_in = d.widths[0], d.widths[-1]
    if d.measurements is not None:  # indices, values, weights; or the dense operator twice
        # the truth's modes; a dense truth read from the file, its residual check and the range
        # finder's products (three n1 × n2 arrays at most)
        truth = 2 * (d_in + d_out) * min(d.widths) + 3 * d.dense_truth
        if d.dense_operator:
            return truth + 2 * d.measurements * d_in * d_out
        # and Ω laid out by row and by column (``measurement.Lines``)
        return truth + 6 * d.measurements + lines_values((d_out, d_in), d.measurements)
    if d.samples is None:
        return 6 * d_out * d_in
    # X, Y, the QR of Xᵀ, the floor's range basis and residual (a few copies each)
    return 12 * (d_in + d_out) * d.samples + 6 * d_in * d_out + 2 * d_in * d_in


def _init_values(d: Dims) -> float:
    return 4 * d.parameters + 2 * sum(d.widths) * min(d.widths)


def _record_values(d: Dims) -> int:
    """Numbers in one recorded row: the table's, per-mode and per-layer diagnostics."""
    return 16 + min(d.widths) + 3 * d.depth


def _step_seconds(method, d: Dims, runs: int) -> float:

    per_step, per_cg = step_flops(method, d.shapes, d.k)
    cg = min(getattr(method, "cg_max_steps", 0), EXPECTED_CG_STEPS) if per_cg else 0
    passes = method.passes(d.depth)
    overhead = STEP_SECONDS + LAYER_SECONDS * d.depth * passes
    if not method.in_loop:  # one run after another, from Python
        return runs * (overhead + (per_step + cg * per_cg) / FLOPS_PER_SECOND)
    return overhead + runs * (per_step + cg * per_cg) / FLOPS_PER_SECOND


def _record_seconds(d: Dims, runs: int) -> float:

    svds = sum(SVD(a, b) for a, b in d.shapes)
    return LAYER_SECONDS * d.depth * 3 + runs * (svds + 6 * d.parameters) / FLOPS_PER_SECOND


def compile_seconds(method, d: Dims) -> float:
    """Compiling ``method``'s programs for one batch at this depth."""
    size = d.depth**COMPILE_EXPONENT * min(method.passes(d.depth), 25) ** PASSES_EXPONENT
    return COMPILE_SECONDS + COMPILE_PER_LAYER * size


def _loop_gradient_values(d: Dims) -> float:
    """What the loop's own loss gradient (every record, and every step for a first-order
    method) holds on a completion: the factors' rows gathered over Ω and the adjoint's
    products, m (d0 + dL) each, and half as much again (XLA's buffers). Calibrated on the peak
    resident memory of ALS runs here, 1.02, 3.08 and 6.76 GiB at 10⁴², 2·10⁴² and 10⁵² (10⁶,
    4·10⁶, 10⁷ entries, r = 10; estimated 1.05, 3.15 and 8.0 GiB with it, 0.61, 1.36 and
    3.53 without)."""
    if not isinstance(d.k, Measurements) or d.k.dense:
        return 0.0
    (_, d0), (dL, _) = d.shapes[0], d.shapes[-1]
    return 3 * d.k.count * (d0 + dL)


def batch(method, d: Dims, runs: int, steps: int, record_every: int, checkpoints: int = 0):
    """(working bytes, record bytes, seconds without compiling) of ``runs`` runs in one batch."""
    check_method(method, d.shapes, d.k)  # a method from outside the lab: its step, traced
    rows = steps // record_every + 1
    residuals = residual_rows(d.shapes, d.k)
    keep = checkpoints > 0 and spectrum_fits(d.parameters, residuals)
    probe = 3 * sum(h * h for h in d.widths[1:-1])  # the probe's W_iᵀW_i, h × h per junction
    per_run = method.memory_values(d.shapes, d.k) + 3 * d.parameters + probe
    per_run += _loop_gradient_values(d)
    records = rows * _record_values(d) * 3 + (rows * d.parameters if keep else 0)
    seconds = method.updates(steps) * _step_seconds(method, d, runs)
    seconds += (rows - 1) * _record_seconds(d, runs)
    if keep:  # dense Gauss-Newton spectra: J (r × p) and its SVD per checkpoint
        svd = SVD(residuals, d.parameters) + 2 * residuals * d.parameters
        seconds += runs * (checkpoints + 2) * svd / FLOPS_PER_SECOND
    return (
        runs * per_run * BYTES_PER_VALUE,
        runs * records * BYTES_PER_VALUE,
        seconds,
    )


def _advice(parts: dict[str, float], advice: dict[str, str]) -> str:
    return advice[max(parts, key=parts.get)]


def estimate_run(config, steps: int | None = None, d: Dims | None = None) -> Estimate:
    """The cost of running every method of ``config`` (for ``steps`` steps each, if given)."""

    d = dims(config) if d is None else d
    setup = (_data_values(d) + _init_values(d)) * BYTES_PER_VALUE
    working, records, seconds, compiling = 0.0, 0.0, 0.0, 0.0
    heaviest = ""
    for spec in config.methods:
        method = make_method(spec.name, **spec.hyperparameters)
        runs, length = len(spec.learning_rates), spec.steps if steps is None else steps
        every = config.record_every if steps is None else max(1, length // 1000)
        work, rec, secs = batch(method, d, runs, length, every, config.checkpoints)
        if work > working:
            working, heaviest = work, spec.name
        records += rec
        seconds += secs
        compiling += compile_seconds(method, d)
    memory = {"data": setup, "working": working, "records": records}
    memory_advice = {
        "data": problem_kind(config.problem["kind"]).smaller_data,
        "working": f"{heaviest} holds matrices this large: use smaller widths or another method",
        "records": "record less often (record_every) or run fewer steps",
    }
    time = {"compile": compiling, "steps": seconds}
    time_advice = {
        "compile": f"a depth-{d.depth} program is slow to compile: use a shallower model",
        "steps": "run fewer steps, fewer learning rates or smaller widths",
    }
    return Estimate(
        RUNTIME_BYTES + setup + working + records,
        compiling + seconds,
        _advice(memory, memory_advice),
        _advice(time, time_advice),
    )


def check_setup_memory(config, limits: Limits | None = None) -> None:
    """Refuse a problem and initial weights that alone would not fit (before building them)."""
    d = dims(config)
    need = RUNTIME_BYTES + (_data_values(d) + _init_values(d)) * BYTES_PER_VALUE
    kind = problem_kind(config.problem["kind"])
    check(
        Estimate(need, 0.0, f"{kind.smaller_data}, or smaller widths"),
        limits or Limits.from_env(),
        f"{kind.data_source} and the initial weights",
    )
