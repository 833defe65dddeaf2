"""Run files: a run fully described by a TOML file, checked strictly before anything runs.

```toml
seed = 0                       # what the seed drives: generator = "numpy" (legacy) or "jax"
generator = "numpy"
steps = 3000                   # default for every method
record_every = 1
checkpoints = 4                # Gauss-Newton spectra at this many recorded steps (0: none)

[problem]
kind = "notebook"              # "notebook" | "spectral" | "npz" | "completion" | "sensing"
input = 6
output = 10
samples = 1000                 # an integer, or "population"

[model]
hidden = [6]                   # hidden widths; depth = len(hidden) + 1

[init]
kind = "notebook"              # notebook | gaussian | scaled_gaussian | orthogonal | balanced
                               # | spectral | npz
[[methods]]
name = "tf1-gd"
learning_rates = [1e-6, 1e-5]
steps = 3000                   # optional; other keys are the method's hyperparameters

[diagnostics]                  # optional
sharpness = false              # λ_max of the loss's Hessian at every record (Lanczos)
sharpness_iterations = 20      # Lanczos steps (Hessian-vector products) per record
```

Every error names the field by its TOML path (``problem.condition_number``) and what is expected.
Configs are data: parsed with ``tomllib``, never evaluated.
"""

from __future__ import annotations

import math
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from deeplinear.errors import UsageError
from deeplinear.methods import METHODS, make_method

TOP_KEYS = {
    "seed",
    "generator",
    "steps",
    "record_every",
    "checkpoints",
    "problem",
    "model",
    "init",
    "methods",
    "name",
    "diagnostics",
}
SPECTRUM_KEYS = {  # a drawn target's spectrum and vectors, and the label noise
    "rank",
    "condition_number",
    "law",
    "singular_values",
    "largest_singular_value",
    "vectors",
    "noise",
}
PROBLEM_KEYS = {
    "notebook": {"kind", "input", "output", "samples", "row_scale_min"},
    "spectral": {"kind", "input", "output", "samples", "whiten"} | SPECTRUM_KEYS,
    "npz": {"kind", "path"},
    "completion": {"probability", "observations"},  # + MEASURED_KEYS
    "sensing": {"measurements"},
}
# what completion and sensing problems share
MEASURED_KEYS = {"kind", "rows", "cols", "target", "frobenius_norm", "path"} | SPECTRUM_KEYS
for _kind in ("completion", "sensing"):
    PROBLEM_KEYS[_kind] = PROBLEM_KEYS[_kind] | MEASURED_KEYS
MEASURED_KINDS = ("completion", "sensing")
INIT_KEYS = {"kind", "scale", "strengths", "path", "end_to_end"}
INIT_KINDS = (
    "notebook",
    "gaussian",
    "scaled_gaussian",
    "orthogonal",
    "balanced",
    "spectral",
    "spectral_estimate",
    "npz",
)
INIT_KEYS_BY_KIND = {  # what each kind reads, beyond "kind": anything else would be ignored
    "notebook": set(),
    "gaussian": {"scale", "end_to_end"},
    "spectral_estimate": set(),
    "scaled_gaussian": {"scale"},
    "orthogonal": {"scale"},
    "balanced": {"scale"},
    "spectral": {"strengths"},
    "npz": {"path"},
}
METHOD_KEYS = {"name", "learning_rates", "steps"}
MAX_STEPS = 2**31 - 1  # the compiled loop counts steps in 32 bits
MAX_CHECKPOINTS = 1000  # each is a dense Gauss-Newton spectrum
MAX_TEXT_BYTES = 1 << 20  # a run or sweep file is a few kB: refuse anything over 1 MiB


@dataclass(frozen=True)
class MethodSpec:
    name: str
    learning_rates: tuple[float, ...]
    steps: int
    hyperparameters: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    """A parsed, checked run file. ``source`` is its text, copied into the results directory."""

    seed: int
    generator: str
    record_every: int
    checkpoints: int
    problem: dict
    hidden: tuple[int, ...]
    init: dict
    methods: tuple[MethodSpec, ...]
    base_dir: Path
    source: str
    name: str = ""
    diagnostics: dict = field(default_factory=dict)  # e.g. {"sharpness": True}


def _type_name(value) -> str:
    return type(value).__name__


def require_int(value, path: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{path} must be an integer, got {value!r} ({_type_name(value)})")
    if minimum is not None and value < minimum:
        raise UsageError(f"{path} must be ≥ {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{path} must be ≤ {maximum}, got {value}")
    return value


def require_number(value, path: str, minimum=None, *, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{path} must be a number, got {value!r} ({_type_name(value)})")
    if not math.isfinite(value):
        raise UsageError(f"{path} must be finite, got {value!r}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        raise UsageError(f"{path} must be {'>' if strict else '≥'} {minimum}, got {value!r}")
    return float(value)


def require_choice(value, path: str, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise UsageError(f"{path} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _check_keys(table: dict, allowed: set, path: str) -> None:
    if not isinstance(table, dict):
        raise UsageError(f"{path} must be a table, got {table!r}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise UsageError(f"unknown key {where} (allowed here: {', '.join(sorted(allowed))})")


def read_text(path: str | Path, what: str = "run file", limit: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of the regular file at ``path`` (at most ``limit`` bytes), or a one-line
    UsageError: never blocks on a FIFO or device, never reads an endless file."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist: check the path") from None
    except OSError as error:
        raise UsageError(f"{what} {path} cannot be read ({error.strerror or error})") from None
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{what} {path} is a directory: give the TOML file inside it")
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{what} {path} is not a regular file (a FIFO or device): give a file")
    try:  # O_NONBLOCK: should it have become a FIFO since, opening it must not wait
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise UsageError(f"{what} {path} is not a regular file: give a file")
            data = handle.read(limit + 1)
    except OSError as error:
        raise UsageError(f"{what} {path} cannot be read ({error.strerror or error})") from None
    if len(data) > limit:
        raise UsageError(
            f"{what} {path} is over {limit >> 20} MiB: is it the right file? (a run file is "
            "a few kB of TOML)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise UsageError(
            f"{what} {path} is not UTF-8 text (byte {error.start}, line {line}): save it as UTF-8"
        ) from None


def parse_toml(text: str, path, what: str = "run file") -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        reason = " ".join(str(error).split())
        raise UsageError(f"{what} {path} is not valid TOML: {reason}") from None


def load(path: str | Path, base_dir: str | Path | None = None) -> RunConfig:
    """Read and check the run file at ``path`` (relative paths in it are from ``base_dir``,
    by default the file's own folder)."""
    path = Path(path)
    text = read_text(path, "run file")
    data = parse_toml(text, path, "run file")
    return parse(data, base_dir=Path(base_dir) if base_dir else path.parent, source=text)


def parse(data: dict, *, base_dir: Path = Path("."), source: str = "") -> RunConfig:
    """Check a run file's contents (already parsed TOML) and fill in defaults."""
    if not isinstance(data, dict):
        raise UsageError(f"a run file must be a TOML table, got {_type_name(data)}")
    _check_keys(data, TOP_KEYS, "")
    seed = require_int(data.get("seed", 0), "seed", 0)
    if seed >= 2**32:
        raise UsageError(f"seed must be below 2**32, got {seed}")
    generator = require_choice(data.get("generator", "numpy"), "generator", ("numpy", "jax"))
    steps = require_int(data.get("steps", 1000), "steps", 1, MAX_STEPS)
    record_every = require_int(data.get("record_every", 1), "record_every", 1, MAX_STEPS)
    checkpoints = require_int(data.get("checkpoints", 4), "checkpoints", 0, MAX_CHECKPOINTS)

    problem = data.get("problem", {"kind": "notebook"})
    _check_keys(problem, set().union(*PROBLEM_KEYS.values()), "problem")
    problem = dict(problem)
    kind = require_choice(problem.get("kind", "notebook"), "problem.kind", tuple(PROBLEM_KEYS))
    problem["kind"] = kind
    _check_keys(problem, PROBLEM_KEYS[kind], "problem")
    _check_problem(problem)

    model = data.get("model", {})
    _check_keys(model, {"hidden"}, "model")
    hidden = model.get("hidden", [6] if kind == "notebook" else None)
    if hidden is None:
        raise UsageError("model.hidden is missing: give the hidden widths, e.g. [6] (depth 2)")
    if not isinstance(hidden, list) or not hidden:
        raise UsageError(
            f"model.hidden must be a non-empty list of widths (depth ≥ 2), got {hidden!r}"
        )
    hidden = tuple(require_int(h, f"model.hidden[{i}]", 1) for i, h in enumerate(hidden))

    init = data.get("init", {"kind": "notebook" if kind == "notebook" else "gaussian"})
    _check_keys(init, INIT_KEYS, "init")
    init = dict(init)
    init["kind"] = require_choice(init.get("kind", "gaussian"), "init.kind", INIT_KINDS)
    _check_init(init)
    if init["kind"] == "notebook" and (kind != "notebook" or len(hidden) != 1):
        raise UsageError("init.kind = 'notebook' needs problem.kind = 'notebook' and depth 2")
    if init["kind"] == "spectral_estimate" and kind not in MEASURED_KINDS:
        raise UsageError(
            "init.kind = 'spectral_estimate' needs a completion or sensing problem (it is the "
            "top singular subspace of the measurements' back-projection): use 'spectral'"
        )
    if isinstance(init.get("strengths"), list) and problem.get("path") is None:
        d_in = problem.get("cols", problem.get("input", 6))
        d_out = problem.get("rows", problem.get("output", 10))
        modes = min(*hidden, d_in, d_out, problem.get("rank", min(d_in, d_out)))
        if len(init["strengths"]) not in (1, modes):
            raise UsageError(
                f"init.strengths has {len(init['strengths'])} values: give 1, or one per mode "
                f"({modes} = the narrowest width or the target's rank)"
            )

    raw_methods = data.get("methods")
    if not isinstance(raw_methods, list) or not raw_methods:
        raise UsageError("methods is missing or empty: add at least one [[methods]] table")
    methods = tuple(_method(m, i, steps, record_every) for i, m in enumerate(raw_methods))
    check_unique_runs(methods, seed)
    name = data.get("name", "")
    if not isinstance(name, str):
        raise UsageError(f"name must be a string, got {name!r}")
    diagnostics = _diagnostics(data.get("diagnostics", {}))
    return RunConfig(
        seed,
        generator,
        record_every,
        checkpoints,
        problem,
        hidden,
        init,
        methods,
        Path(base_dir),
        source,
        name,
        diagnostics,
    )


DIAGNOSTICS_KEYS = {"sharpness", "sharpness_iterations"}
MAX_SHARPNESS_ITERATIONS = 1000  # Lanczos steps: each keeps a vector of every parameter


def _diagnostics(table) -> dict:
    """``[diagnostics]``: ``sharpness = true`` records λ_max of the loss's Hessian at every
    record (``sharpness.SharpnessProbe``, ``sharpness_iterations`` Lanczos steps, default 20)."""
    _check_keys(table, DIAGNOSTICS_KEYS, "diagnostics")
    out = dict(table)
    if not isinstance(out.get("sharpness", False), bool):
        raise UsageError(f"diagnostics.sharpness must be true or false, got {out['sharpness']!r}")
    if "sharpness_iterations" in out:
        if not out.get("sharpness"):
            raise UsageError(
                "diagnostics.sharpness_iterations needs diagnostics.sharpness = true: set it, "
                "or remove sharpness_iterations"
            )
        require_int(
            out["sharpness_iterations"],
            "diagnostics.sharpness_iterations",
            1,
            MAX_SHARPNESS_ITERATIONS,
        )
    return out


def _check_init(init: dict) -> None:
    kind = init["kind"]
    extra = sorted(set(init) - {"kind"} - INIT_KEYS_BY_KIND[kind])
    if extra:
        takes = ", ".join(sorted(INIT_KEYS_BY_KIND[kind])) or "nothing else"
        raise UsageError(
            f"init.{extra[0]} does not apply to init.kind = {kind!r} (it takes: {takes}): "
            "remove it or change init.kind"
        )
    if "scale" in init:
        require_number(init["scale"], "init.scale", 0, strict=True)
    if "end_to_end" in init:
        require_number(init["end_to_end"], "init.end_to_end", 0, strict=True)
    if "strengths" in init:
        values = init["strengths"]
        if isinstance(values, list):
            if not values:
                raise UsageError("init.strengths is an empty list: give one number per mode")
            for i, v in enumerate(values):
                require_number(v, f"init.strengths[{i}]", 0)
        else:
            require_number(values, "init.strengths", 0)
    if kind == "npz" and "path" not in init:
        raise UsageError("init.path is missing: init.kind = 'npz' needs a file with W1 … WL")
    if "path" in init and (not isinstance(init["path"], str) or not init["path"]):
        raise UsageError(f"init.path must be the path of an .npz file, got {init['path']!r}")


def _check_problem(problem: dict) -> None:
    for key in ("input", "output", "rank"):
        if key in problem:
            require_int(problem[key], f"problem.{key}", 1)
    if "row_scale_min" in problem:
        value = require_number(problem["row_scale_min"], "problem.row_scale_min", 0, strict=True)
        if value > 1:
            raise UsageError(
                f"problem.row_scale_min must be ≤ 1 (A's rows are scaled from 1 down to it), "
                f"got {value!r}"
            )
    samples = problem.get("samples", 1000 if problem["kind"] == "notebook" else "population")
    if samples != "population":
        require_int(samples, "problem.samples", 1)
    problem["samples"] = samples
    if problem["kind"] == "spectral":
        for key in ("input", "output"):
            if key not in problem:
                raise UsageError(f"problem.{key} is missing: a spectral problem needs its dims")
        rank = problem.get("rank", min(problem["input"], problem["output"]))
        if rank > min(problem["input"], problem["output"]):
            raise UsageError(
                f"problem.rank must be ≤ min(input, output) = "
                f"{min(problem['input'], problem['output'])}, got {rank}"
            )
        problem["rank"] = rank
        _check_spectrum_numbers(problem)
        if "whiten" in problem and not isinstance(problem["whiten"], bool):
            raise UsageError(f"problem.whiten must be true or false, got {problem['whiten']!r}")
        if "singular_values" in problem:
            values = problem["singular_values"]
            if not isinstance(values, list) or len(values) != rank:
                raise UsageError(f"problem.singular_values must be a list of rank = {rank} numbers")
            for i, v in enumerate(values):
                require_number(v, f"problem.singular_values[{i}]", 0, strict=True)
        if "law" in problem:
            require_choice(problem["law"], "problem.law", ("geometric", "linear", "gaussian"))
        if problem.get("law") == "gaussian":  # A = G, i.i.d. N(0, 1): its spectrum is drawn
            for key in ("singular_values", "condition_number", "largest_singular_value", "vectors"):
                if key in problem and (key != "vectors" or problem[key] != "random"):
                    raise UsageError(
                        f"problem.{key} does not apply to problem.law = 'gaussian' (A has "
                        "i.i.d. N(0, 1) entries, its spectrum is drawn): remove it"
                    )
            if rank != min(problem["input"], problem["output"]):
                raise UsageError(
                    f"problem.rank must be min(input, output) = "
                    f"{min(problem['input'], problem['output'])} with problem.law = 'gaussian' "
                    f"(a Gaussian A has full rank), got {rank}: remove problem.rank"
                )
        if "vectors" in problem:
            require_choice(problem["vectors"], "problem.vectors", ("random", "identity"))
        if problem.get("whiten") and samples == "population":
            raise UsageError("problem.whiten needs problem.samples to be an integer")
    if problem["kind"] in MEASURED_KINDS:
        _check_measured(problem)
    if problem["kind"] == "npz" and not isinstance(problem.get("path"), str):
        raise UsageError("problem.path is missing: give an .npz file with A, or X and Y")
    if problem["kind"] == "npz" and not problem["path"]:
        raise UsageError("problem.path is empty: give an .npz file with A, or X and Y")


def _check_spectrum_numbers(problem: dict) -> None:
    """The numbers that set a drawn target's spectrum and noise, where given."""
    if "condition_number" in problem:
        require_number(problem["condition_number"], "problem.condition_number", 1)
    if "largest_singular_value" in problem:
        require_number(
            problem["largest_singular_value"], "problem.largest_singular_value", 0, strict=True
        )
    if "frobenius_norm" in problem:
        require_number(problem["frobenius_norm"], "problem.frobenius_norm", 0, strict=True)
    if "noise" in problem:
        require_number(problem["noise"], "problem.noise", 0)


def _check_measured(problem: dict) -> None:
    """A completion or sensing problem: drawn (shape, truth, sample) or read from ``path``."""
    kind = problem["kind"]
    if "path" in problem:
        if not isinstance(problem["path"], str) or not problem["path"]:
            raise UsageError(
                f"problem.path must be the path of an .npz file, got {problem['path']!r}"
            )
        extra = sorted(set(problem) - {"kind", "path", "samples"})
        if extra:
            raise UsageError(
                f"problem.{extra[0]} does not apply with problem.path (the file holds the "
                "measurements): remove it, or remove path to draw a problem"
            )
        return
    for key in ("rows", "cols"):
        if key not in problem:
            raise UsageError(f"problem.{key} is missing: a {kind} problem needs its shape")
        require_int(problem[key], f"problem.{key}", 1)
    target = require_choice(
        problem.get("target", "spectrum"), "problem.target", ("spectrum", "gaussian_product")
    )
    problem["target"] = target
    smaller = min(problem["rows"], problem["cols"])
    rank = require_int(problem.get("rank", 1), "problem.rank", 1, smaller)
    problem["rank"] = rank
    spectrum_keys = ("condition_number", "law", "singular_values", "largest_singular_value")
    if target == "gaussian_product":
        for key in (*spectrum_keys, "vectors"):
            if key in problem:
                raise UsageError(
                    f"problem.{key} does not apply to problem.target = 'gaussian_product' (its "
                    "spectrum is drawn): remove it, or use target = 'spectrum'"
                )
    _check_spectrum_numbers(problem)
    law = problem.get("law", problem.get("singular_values", "geometric"))
    if isinstance(law, list):
        if len(law) != rank:
            raise UsageError(f"problem.singular_values must be a list of rank = {rank} numbers")
        for i, v in enumerate(law):
            require_number(v, f"problem.singular_values[{i}]", 0, strict=True)
    else:
        require_choice(law, "problem.singular_values", ("geometric", "linear"))
    if "vectors" in problem:
        require_choice(problem["vectors"], "problem.vectors", ("random", "rademacher"))
    if kind == "completion":
        given = [key for key in ("probability", "observations") if key in problem]
        if len(given) != 1:
            raise UsageError(
                "a completion problem needs exactly one of problem.probability (each entry "
                "observed with this probability) and problem.observations (this many entries)"
            )
        if given == ["probability"]:
            p = require_number(problem["probability"], "problem.probability", 0, strict=True)
            if p > 1:
                raise UsageError(f"problem.probability must be in (0, 1], got {p!r}")
        else:
            count = require_int(problem["observations"], "problem.observations", 1)
            if count > problem["rows"] * problem["cols"]:
                raise UsageError(
                    f"problem.observations must be ≤ rows·cols = "
                    f"{problem['rows'] * problem['cols']}, got {count}"
                )
    else:
        if "measurements" not in problem:
            raise UsageError("problem.measurements is missing: how many Gaussian measurements")
        require_int(problem["measurements"], "problem.measurements", 1)


def _method(table, index: int, steps: int, record_every: int) -> MethodSpec:
    path = f"methods[{index}]"
    if not isinstance(table, dict):
        raise UsageError(f"{path} must be a table, got {table!r}")
    if "name" not in table:
        raise UsageError(f'{path}.name is missing: name the method, e.g. "gd"')

    name = table["name"]
    if not isinstance(name, str):
        raise UsageError(f"{path}.name must be a string, got {name!r}")
    if name not in METHODS:
        try:
            make_method(name)
        except UsageError as error:
            raise UsageError(f"{path}.name: {error}") from None
    rates = table.get("learning_rates")
    if not isinstance(rates, list) or not rates:
        raise UsageError(f"{path}.learning_rates must be a non-empty list of numbers")
    rates = tuple(
        require_number(r, f"{path}.learning_rates[{i}]", 0, strict=True)
        for i, r in enumerate(rates)
    )
    method_steps = require_int(table.get("steps", steps), f"{path}.steps", 1, MAX_STEPS)
    if method_steps % record_every:
        raise UsageError(f"{path}.steps ({method_steps}) must be a multiple of record_every")
    hyper = {k: v for k, v in table.items() if k not in METHOD_KEYS}
    try:
        make_method(name, **hyper)
    except UsageError as error:
        raise UsageError(f"{path}: {error}") from None
    except TypeError as error:
        raise UsageError(f"{path}: {error}") from None
    return MethodSpec(name, rates, method_steps, hyper)


def format_number(value) -> str:
    """``value`` as short as ``:g`` prints it where that reads back as the same number, else
    exactly (``repr``): two different values never print alike (``1e-05``, ``1.0000001e-05``)."""
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def run_id(seed: int, method: str, rate: float, hyper: dict) -> str:
    """A run's id in the results table: ``seed0/adam(b1=0.8)/0.001``."""
    suffix = "".join(f",{k}={v}" for k, v in sorted(hyper.items()))  # floats: repr, exact
    return f"seed{seed}/{method}{f'({suffix[1:]})' if suffix else ''}/{format_number(rate)}"


def check_unique_runs(methods, seed: int, prefix: str = "") -> None:
    """Refuse, before anything runs, two runs that would be the same run (same method,
    hyperparameters and learning rate) or share an id in the results table."""

    seen: dict = {}
    ids: dict = {}
    for index, spec in enumerate(methods):
        path = f"{prefix}methods[{index}]"
        method = make_method(spec.name, **spec.hyperparameters)
        for position, rate in enumerate(spec.learning_rates):
            where = f"{path}.learning_rates[{position}]"
            key = (method, rate)
            if key in seen:
                other = seen[key]
                fix = (
                    "remove the repeated learning rate"
                    if other.startswith(path + ".")
                    else "merge the two tables (same method and hyperparameters)"
                )
                raise UsageError(
                    f"{where} repeats {other}: {spec.name} at learning rate "
                    f"{format_number(rate)} twice would be one run: {fix}"
                )
            seen[key] = where
            run = run_id(seed, spec.name, rate, spec.hyperparameters)
            if run in ids:
                raise UsageError(
                    f"{where} and {ids[run]} would both be run {run!r}: make their "
                    "hyperparameters differ by more than their spelling"
                )
            ids[run] = where
