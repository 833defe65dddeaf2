"""Run files: a run fully described by a TOML file, checked strictly before anything runs.

```toml
seed = 0                       # what the seed drives: generator = "numpy" (legacy) or "jax"
generator = "numpy"
steps = 3000                   # default for every method
record_every = 1
checkpoints = 4                # Gauss-Newton spectra at this many recorded steps (0: none)

[problem]
kind = "notebook"              # a kind in deeplinear.problems.kinds.PROBLEM_KINDS
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

import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from deeplinear.core.checks import check_keys as _check_keys
from deeplinear.core.checks import require_choice, require_int, require_number
from deeplinear.core.checks import type_name as _type_name
from deeplinear.errors import UsageError
from deeplinear.methods import METHODS, make_method
from deeplinear.problems import kinds

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
PROBLEM_KEYS = kinds.PROBLEM_KEYS  # kind → the keys its [problem] table takes (live)
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


MAX_NESTING = 16  # arrays and tables within each other: a run or sweep file needs 4


def parse_toml(text: str, path, what: str = "run file") -> dict:
    """The TOML ``text`` as a dict, or a one-line UsageError: invalid TOML, or values nested
    deeper than ``MAX_NESTING`` (Python's parser recurses once per level)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        reason = " ".join(str(error).split())
        raise UsageError(f"{what} {path} is not valid TOML: {reason}") from None
    except RecursionError:
        data = None
    if data is None or _nesting(data) > MAX_NESTING:
        raise UsageError(
            f"{what} {path} nests arrays or tables more than {MAX_NESTING} deep: "
            "write the values flat (a list of numbers, a table of keys)"
        )
    return data


def _nesting(value) -> int:
    """How deep arrays and tables nest in ``value`` (iteratively: any depth)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            inner = item.values() if isinstance(item, dict) else item
            stack.extend((v, depth + 1) for v in inner)
    return deepest


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

    problem = data.get("problem", {"kind": kinds.DEFAULT_KIND})
    _check_keys(problem, set().union(*PROBLEM_KEYS.values()), "problem")
    kind = kinds.problem_kind(problem.get("kind", kinds.DEFAULT_KIND))
    problem = kind.check(problem)

    model = data.get("model", {})
    _check_keys(model, {"hidden"}, "model")
    hidden = model.get("hidden", list(kind.hidden) if kind.hidden else None)
    if hidden is None:
        raise UsageError("model.hidden is missing: give the hidden widths, e.g. [6] (depth 2)")
    if not isinstance(hidden, list) or not hidden:
        raise UsageError(
            f"model.hidden must be a non-empty list of widths (depth ≥ 2), got {hidden!r}"
        )
    hidden = tuple(require_int(h, f"model.hidden[{i}]", 1) for i, h in enumerate(hidden))

    init = data.get("init", {"kind": kind.init})
    _check_keys(init, INIT_KEYS, "init")
    init = dict(init)
    init["kind"] = require_choice(init.get("kind", "gaussian"), "init.kind", INIT_KINDS)
    _check_init(init)
    if init["kind"] == "notebook" and (not kind.draws_initial_weights or len(hidden) != 1):
        raise UsageError("init.kind = 'notebook' needs problem.kind = 'notebook' and depth 2")
    if init["kind"] == "spectral_estimate" and not kind.measured:
        raise UsageError(
            "init.kind = 'spectral_estimate' needs a completion or sensing problem (it is the "
            "top singular subspace of the measurements' back-projection): use 'spectral'"
        )
    shape = kind.shape(problem)
    if isinstance(init.get("strengths"), list) and shape is not None:
        rank = kind.rank(problem)
        modes = min(*hidden, *shape, min(shape) if rank is None else rank)
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
