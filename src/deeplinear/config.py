"""Run files: a run fully described by a TOML file, checked strictly before anything runs.

```toml
seed = 0                       # what the seed drives: generator = "numpy" (legacy) or "jax"
generator = "numpy"
steps = 3000                   # default for every method
record_every = 1
checkpoints = 4                # Gauss-Newton spectra at this many recorded steps (0: none)

[problem]
kind = "notebook"              # "notebook" | "spectral" | "npz"
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
```

Every error names the field by its TOML path (``problem.condition_number``) and what is expected.
Configs are data: parsed with ``tomllib``, never evaluated.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError

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
}
PROBLEM_KEYS = {
    "notebook": {"kind", "input", "output", "samples", "row_scale_min"},
    "spectral": {
        "kind",
        "input",
        "output",
        "rank",
        "condition_number",
        "law",
        "singular_values",
        "largest_singular_value",
        "vectors",
        "samples",
        "whiten",
        "noise",
    },
    "npz": {"kind", "path"},
}
INIT_KEYS = {"kind", "scale", "strengths", "path"}
INIT_KINDS = (
    "notebook",
    "gaussian",
    "scaled_gaussian",
    "orthogonal",
    "balanced",
    "spectral",
    "npz",
)
METHOD_KEYS = {"name", "learning_rates", "steps"}


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


def _type_name(value) -> str:
    return type(value).__name__


def require_int(value, path: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{path} must be an integer, got {value!r} ({_type_name(value)})")
    if minimum is not None and value < minimum:
        raise UsageError(f"{path} must be ≥ {minimum}, got {value}")
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
    if value not in choices:
        raise UsageError(f"{path} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _check_keys(table: dict, allowed: set, path: str) -> None:
    if not isinstance(table, dict):
        raise UsageError(f"{path} must be a table, got {table!r}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise UsageError(f"unknown key {where} (allowed here: {', '.join(sorted(allowed))})")


def load(path: str | Path, base_dir: str | Path | None = None) -> RunConfig:
    """Read and check the run file at ``path`` (relative paths in it are from ``base_dir``,
    by default the file's own folder)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"run file {path} does not exist: check the path") from None
    except OSError as error:
        raise UsageError(f"run file {path} cannot be read ({error.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"run file {path} is not valid TOML: {error}") from None
    return parse(data, base_dir=Path(base_dir) if base_dir else path.parent, source=text)


def parse(data: dict, *, base_dir: Path = Path("."), source: str = "") -> RunConfig:
    """Check a run file's contents (already parsed TOML) and fill in defaults."""
    _check_keys(data, TOP_KEYS, "")
    seed = require_int(data.get("seed", 0), "seed", 0)
    if seed >= 2**32:
        raise UsageError(f"seed must be below 2**32, got {seed}")
    generator = require_choice(data.get("generator", "numpy"), "generator", ("numpy", "jax"))
    steps = require_int(data.get("steps", 1000), "steps", 1)
    record_every = require_int(data.get("record_every", 1), "record_every", 1)
    checkpoints = require_int(data.get("checkpoints", 4), "checkpoints", 0)

    problem = dict(data.get("problem", {"kind": "notebook"}))
    _check_keys(problem, set().union(*PROBLEM_KEYS.values()), "problem")
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

    init = dict(data.get("init", {"kind": "notebook" if kind == "notebook" else "gaussian"}))
    _check_keys(init, INIT_KEYS, "init")
    init["kind"] = require_choice(init.get("kind", "gaussian"), "init.kind", INIT_KINDS)
    if "scale" in init:
        require_number(init["scale"], "init.scale", 0, strict=True)
    if init["kind"] == "notebook" and (kind != "notebook" or len(hidden) != 1):
        raise UsageError("init.kind = 'notebook' needs problem.kind = 'notebook' and depth 2")
    if init["kind"] == "npz" and "path" not in init:
        raise UsageError("init.path is missing: init.kind = 'npz' needs a file with W1 … WL")

    raw_methods = data.get("methods")
    if not isinstance(raw_methods, list) or not raw_methods:
        raise UsageError("methods is missing or empty: add at least one [[methods]] table")
    methods = tuple(_method(m, i, steps, record_every) for i, m in enumerate(raw_methods))
    ids = [(m.name, tuple(m.hyperparameters.items())) for m in methods]
    if len(set(map(str, ids))) != len(ids):
        raise UsageError("methods lists the same method and hyperparameters twice: merge them")
    name = data.get("name", "")
    if not isinstance(name, str):
        raise UsageError(f"name must be a string, got {name!r}")
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
    )


def _check_problem(problem: dict) -> None:
    for key in ("input", "output", "rank"):
        if key in problem:
            require_int(problem[key], f"problem.{key}", 1)
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
        if "condition_number" in problem:
            require_number(problem["condition_number"], "problem.condition_number", 1)
        if "largest_singular_value" in problem:
            require_number(
                problem["largest_singular_value"], "problem.largest_singular_value", 0, strict=True
            )
        if "noise" in problem:
            require_number(problem["noise"], "problem.noise", 0)
        if "whiten" in problem and not isinstance(problem["whiten"], bool):
            raise UsageError(f"problem.whiten must be true or false, got {problem['whiten']!r}")
        if "singular_values" in problem:
            values = problem["singular_values"]
            if not isinstance(values, list) or len(values) != rank:
                raise UsageError(f"problem.singular_values must be a list of rank = {rank} numbers")
            for i, v in enumerate(values):
                require_number(v, f"problem.singular_values[{i}]", 0, strict=True)
        if "law" in problem:
            require_choice(problem["law"], "problem.law", ("geometric", "linear"))
        if "vectors" in problem:
            require_choice(problem["vectors"], "problem.vectors", ("random", "identity"))
        if problem.get("whiten") and samples == "population":
            raise UsageError("problem.whiten needs problem.samples to be an integer")
    if problem["kind"] == "npz" and not isinstance(problem.get("path"), str):
        raise UsageError("problem.path is missing: give an .npz file with A, or X and Y")


def _method(table, index: int, steps: int, record_every: int) -> MethodSpec:
    path = f"methods[{index}]"
    if not isinstance(table, dict):
        raise UsageError(f"{path} must be a table, got {table!r}")
    if "name" not in table:
        raise UsageError(f'{path}.name is missing: name the method, e.g. "gd"')
    from .methods import METHODS, make_method

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
    method_steps = require_int(table.get("steps", steps), f"{path}.steps", 1)
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
