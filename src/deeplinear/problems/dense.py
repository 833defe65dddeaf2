"""Problems: a target map A, optionally with samples X and Y = A X.

A problem knows its true spectrum. The notebook's generator (``notebook_problem``) reproduces the
2017 draws exactly: after ``np.random.seed(seed)`` it draws W1, W2, A and X in this order::

    W1 = randn(ydim, wdim); W2 = randn(wdim, xdim)
    A  = linspace(1, 1e-5, ydim)[:, None] * rand(ydim, xdim)   # rows scaled, not singular values
    X  = randn(xdim, n);    Y = A @ X

The same generator can be driven by a JAX key instead of NumPy's legacy global state.
"""

from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeplinear.core.backend import jax
from deeplinear.core.limits import Limits, check_bytes
from deeplinear.diagnostics.floors import Floor, reachable_minimum
from deeplinear.diagnostics.probes import Probe
from deeplinear.errors import UsageError
from deeplinear.objectives.objective import Objective


@dataclass(frozen=True)
class NotebookDims:
    """Sizes of the notebook's problem: x in R^input, hidden width, y in R^output, n samples."""

    input: int = 6
    hidden: int = 6
    output: int = 10
    samples: int = 1000

    def __post_init__(self) -> None:
        for field in ("input", "hidden", "output", "samples"):
            value = getattr(self, field)
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise UsageError(f"dims.{field} must be a positive integer, got {value!r}")


@dataclass(frozen=True, eq=False)
class Problem:
    """A target ``A`` (output × input) and, for a sample loss, data ``X`` and ``Y``.

    Without data the objective is the population loss ‖W − A‖²_F.
    """

    name: str
    A: np.ndarray
    X: np.ndarray | None = None
    Y: np.ndarray | None = None
    U: np.ndarray | None = None  # singular vectors and values of A, when known exactly
    V: np.ndarray | None = None
    s: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(output, input): the shape of the end-to-end map."""
        return tuple(self.A.shape)

    @property
    def singular_values(self) -> np.ndarray:
        """Singular values of A, largest first."""
        return np.linalg.svd(self.A, compute_uv=False)

    def modes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(U, s, V) of A's non-zero singular modes: A = U diag(s) Vᵀ."""
        if self.U is not None:
            return self.U, self.s, self.V
        U, s, Vt = np.linalg.svd(self.A, full_matrices=False)
        r = self.rank
        return U[:, :r], s[:r], Vt[:r].T

    @property
    def rank(self) -> int:
        """Numerical rank of A: singular values above max(shape)·eps·σ_max."""
        s = self.singular_values
        if not s.size or s[0] == 0:
            return 0
        return int(np.sum(s > max(self.A.shape) * np.finfo(float).eps * s[0]))

    @property
    def condition_number(self) -> float:
        """κ(A) = σ_max / σ_min over the non-zero singular values (NaN for A = 0)."""
        s = self.singular_values[: self.rank]
        return float(s[0] / s[-1]) if s.size else float("nan")

    def floor(self, widths, objective=None) -> Floor:
        """The reachable minimum for a net of these widths (``floors.reachable_minimum``)."""
        return reachable_minimum(self, widths, objective)

    def probe(self, widths) -> Probe:
        """What its runs record beside the loss: per-mode progress of A, layer σ, imbalance."""
        return Probe.for_problem(self)

    def objective(self) -> Objective:
        """The loss to minimise: the sample sum of squares if there is data, else population."""
        if self.X is None or self.Y is None:
            return Objective.population(self.A)
        return Objective.from_samples(self.X, self.Y)


def notebook_problem(
    seed: int, dims: NotebookDims | None = None, generator: str = "numpy", row_scale_min=1e-5
) -> tuple[Problem, tuple[np.ndarray, np.ndarray]]:
    """The notebook's problem and initial weights (W1, W2), drawn as the notebook draws them.

    ``generator="numpy"`` uses NumPy's legacy ``RandomState(seed)`` (identical to
    ``np.random.seed(seed)``); ``generator="jax"`` draws the same distributions from
    ``jax.random.key(seed)``, split into one key per array in the same order.
    """
    dims = dims or NotebookDims()
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
    shapes = {
        "W1": (dims.output, dims.hidden),
        "W2": (dims.hidden, dims.input),
        "A": (dims.output, dims.input),
        "X": (dims.input, dims.samples),
    }
    scale = np.linspace(1, row_scale_min, dims.output).reshape(-1, 1)
    if generator == "numpy":
        rng = np.random.RandomState(seed)
        W1 = rng.randn(*shapes["W1"])
        W2 = rng.randn(*shapes["W2"])
        A = scale * rng.rand(*shapes["A"])
        X = rng.randn(*shapes["X"])
    elif generator == "jax":
        keys = jax.random.split(jax.random.key(seed), 4)
        normal = lambda k, s: np.asarray(jax.random.normal(k, s, dtype=np.float64))
        W1 = normal(keys[0], shapes["W1"])
        W2 = normal(keys[1], shapes["W2"])
        A = scale * np.asarray(jax.random.uniform(keys[2], shapes["A"], dtype=np.float64))
        X = normal(keys[3], shapes["X"])
    else:
        raise UsageError(f"generator must be 'numpy' or 'jax', got {generator!r}")
    Y = A.dot(X)
    return Problem(name=f"notebook-seed{seed}", A=A, X=X, Y=Y), (W1, W2)


def singular_values(
    rank: int, condition_number: float = 1.0, law="geometric", largest: float = 1.0
) -> np.ndarray:
    """``rank`` singular values from ``largest`` down to ``largest / condition_number``.

    ``law``: "geometric" (s_i = s_1 κ^{-(i-1)/(r-1)}), "linear" (evenly spaced), or a list of
    values (then ``condition_number`` and ``largest`` are ignored).
    """
    if not isinstance(law, str):
        values = np.asarray(law, dtype=np.float64)
        if values.ndim != 1 or values.size != rank:
            raise UsageError(f"problem.singular_values must be a list of {rank} numbers")
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise UsageError("problem.singular_values must be finite and positive")
        return np.sort(values)[::-1]
    if not np.isfinite(condition_number) or condition_number < 1:
        raise UsageError(f"problem.condition_number must be ≥ 1, got {condition_number!r}")
    if not np.isfinite(largest) or largest <= 0:
        raise UsageError(f"problem.largest_singular_value must be > 0, got {largest!r}")
    if rank == 1:
        return np.array([largest])
    if law == "geometric":
        return largest * condition_number ** (-np.arange(rank) / (rank - 1))
    if law == "linear":
        return np.linspace(largest, largest / condition_number, rank)
    raise UsageError(f"problem.law must be 'geometric', 'linear' or a list, got {law!r}")


def random_orthonormal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A Haar-random ``rows × cols`` matrix with orthonormal columns."""
    q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
    return q * np.sign(np.diag(r))


def spectral_problem(
    input: int,
    output: int,
    values: np.ndarray,
    *,
    rng: np.random.Generator,
    vectors: str = "random",
    samples: int | None = None,
    whiten: bool = False,
    noise: float = 0.0,
    name: str = "spectral",
) -> Problem:
    """A = U diag(values) Vᵀ with exactly these singular values, and optionally data.

    ``vectors``: "random" (Haar) or "identity" (U, V the leading coordinate vectors).
    ``samples=None`` gives the population loss; otherwise X has n Gaussian columns, exactly
    whitened (X Xᵀ = n I) if ``whiten``, and Y = A X + noise · E with E standard Gaussian.
    """
    rank = len(values)
    if rank > min(input, output):
        raise UsageError(
            f"problem.rank must be ≤ min(input, output) = {min(input, output)}, got {rank}"
        )
    if vectors == "random":
        U, V = random_orthonormal(rng, output, rank), random_orthonormal(rng, input, rank)
    elif vectors == "identity":
        U, V = np.eye(output)[:, :rank], np.eye(input)[:, :rank]
    else:
        raise UsageError(f"problem.vectors must be 'random' or 'identity', got {vectors!r}")
    A = (U * values) @ V.T
    if samples is None:
        return Problem(name, A, U=U, V=V, s=np.asarray(values, dtype=np.float64))
    X = rng.standard_normal((input, samples))
    if whiten:
        if samples < input:
            raise UsageError(f"problem.samples must be ≥ input ({input}) to whiten, got {samples}")
        evals, evecs = np.linalg.eigh(X @ X.T)
        X = np.sqrt(samples) * (evecs / np.sqrt(evals)) @ evecs.T @ X
    Y = A @ X
    if noise:
        Y = Y + noise * rng.standard_normal(Y.shape)
    return Problem(name, A, X, Y, U=U, V=V, s=np.asarray(values, dtype=np.float64))


# .npz files (problem data, initial weights): read defensively, headers first -----------------

NPY_MAGIC = b"\x93NUMPY"
_REFUSED_KINDS = {
    "c": "complex: the imaginary part would be lost",
    "b": "booleans",
    "m": "time differences",
    "M": "dates",
    "U": "text",
    "S": "bytes",
    "V": "records",
    "O": "Python objects",
}


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _npz_headers(path: Path, field: str) -> dict[str, tuple[tuple, np.dtype, zipfile.ZipInfo]]:
    """name → (shape, dtype, member) of every array in the .npz at ``path``, from the headers
    alone (nothing is allocated, nothing unpickled), or a one-line UsageError."""
    where = f"{field} = {str(path)!r}"
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"{where} does not exist: check the path") from None
    except OSError as error:
        raise UsageError(f"{where} cannot be read ({error.strerror or error})") from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{where} is not a regular file: give an .npz file (np.savez)")
    try:
        with open(path, "rb") as handle:
            start = handle.read(len(NPY_MAGIC))
    except OSError as error:
        raise UsageError(f"{where} cannot be read ({error.strerror or error})") from None
    if start == NPY_MAGIC:
        raise UsageError(f"{where} is a single .npy array: save named arrays with np.savez")
    headers = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if not member.filename.endswith(".npy"):
                    continue
                with archive.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
                    elif version in ((2, 0), (3, 0)):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
                    else:
                        raise ValueError(f"unsupported .npy format version {version}")
                headers[member.filename[: -len(".npy")]] = (tuple(shape), dtype, member)
    except UsageError:
        raise
    except Exception as error:  # a damaged file: zipfile, zlib, the .npy header parser
        raise UsageError(
            f"{where} is not a readable .npz file ({_one_line(error)}): write it again with "
            "np.savez"
        ) from None
    return headers


def _check_header(
    name: str, shape: tuple, dtype: np.dtype, field: str, ndims: tuple[int, ...] = (2,)
) -> None:
    if dtype.kind in _REFUSED_KINDS or dtype.names is not None or dtype.shape != ():
        what = _REFUSED_KINDS.get(dtype.kind, "records")
        raise UsageError(
            f"{field}: {name} has dtype {dtype} ({what}): save real numbers "
            "(floating point or integers)"
        )
    if dtype.kind not in "fiu":
        raise UsageError(f"{field}: {name} has dtype {dtype}: save real floating-point numbers")
    if len(shape) not in ndims:
        allowed = " or ".join(f"{n}-d" for n in ndims)
        raise UsageError(f"{field}: {name} must be a {allowed} array, got shape {shape}")
    if 0 in shape:
        raise UsageError(f"{field}: {name} is empty (shape {shape}): it needs at least one entry")


def read_npz(path: str | Path, field: str, names, shapes: dict | None = None, ndims=(2,)) -> dict:
    """The arrays ``names`` of the .npz at ``path`` as float64 matrices, each checked: a real
    dtype (floating, or integers converted), 2-d, not empty, finite, of ``shapes[name]`` where
    given, and all together within the memory limit; else a one-line UsageError naming
    ``field``. Other arrays in the file are never read."""
    path = Path(path)
    headers = _npz_headers(path, field)
    total = 0
    for name in names:
        if name not in headers:
            continue
        shape, dtype, _ = headers[name]
        _check_header(name, shape, dtype, field, ndims)
        if shapes and name in shapes and shape != tuple(shapes[name]):
            raise UsageError(f"{field}: {name} has shape {shape}, expected {tuple(shapes[name])}")
        total += 8 * int(np.prod(shape, dtype=object))
    check_bytes(total, Limits.from_env(), f"{field}'s arrays")
    out = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in names:
                if name not in headers:
                    continue
                with archive.open(headers[name][2]) as handle:
                    array = np.lib.format.read_array(handle, allow_pickle=False)
                if array.shape != headers[name][0]:
                    raise ValueError(f"{name} does not match its header")
                out[name] = array
    except Exception as error:  # truncated data, a bad CRC, a damaged stream
        raise UsageError(
            f"{field} = {str(path)!r} is damaged ({_one_line(error)}): write it again with np.savez"
        ) from None
    for name, array in out.items():
        array = array.astype(np.float64, copy=False)  # no copy of a float64 array (10⁸: 0.8 GB)
        if not np.all(np.isfinite(array)):
            raise UsageError(f"{field}: {name} has non-finite values (NaN or inf): fix the data")
        out[name] = array
    return out


def read_vectors(path: str | Path, field: str, names) -> dict:
    """``read_npz`` for arrays of 1 to 3 dimensions (index lists, shapes, operator stacks)."""
    return read_npz(path, field, names, ndims=(1, 2, 3))


def npz_problem_shapes(path: str | Path, field: str = "problem.path"):
    """(output, input, samples or None) of a problem .npz, from its headers alone."""
    path = Path(path)
    headers = _npz_headers(path, field)
    for name in ("A", "X", "Y"):
        if name in headers:
            _check_header(name, *headers[name][:2], field)
    if "X" in headers or "Y" in headers:
        if not ("X" in headers and "Y" in headers):
            raise UsageError(f"{field} {path} has only one of X and Y: it needs both (or A)")
        (d_in, n), (d_out, n_y) = headers["X"][0], headers["Y"][0]
        if n != n_y:
            raise UsageError(
                f"{field}: X has {n} samples but Y has {n_y}: they must match "
                "(X is input × n, Y is output × n)"
            )
        return d_out, d_in, n
    if "A" not in headers:
        raise UsageError(
            f"{field} {path} has neither A nor X and Y (it has {sorted(headers) or 'no arrays'})"
        )
    d_out, d_in = headers["A"][0]
    return d_out, d_in, None


def npz_problem(path: str | Path, field: str = "problem.path") -> Problem:
    """The problem in an .npz: a target ``A`` (population loss), or data ``X``, ``Y`` (sample
    loss; A is then the least-squares map), every array checked (``read_npz``)."""
    path = Path(path)
    data = read_npz_problem(path, field)
    if "A" in data:
        return Problem(path.stem, data["A"])
    X, Y = data["X"], data["Y"]
    A = np.linalg.lstsq(X.T, Y.T, rcond=None)[0].T  # the best linear map
    return Problem(path.stem, A, X, Y)


def read_npz_problem(path: str | Path, field: str = "problem.path") -> dict:
    """The arrays of a problem .npz (``A``, or ``X`` and ``Y``), every one checked."""
    _, _, samples = npz_problem_shapes(path, field)
    if samples is None:
        return read_npz(path, field, ["A"])
    data = read_npz(path, field, ["X", "Y"])
    if not np.any(data["X"]):
        raise UsageError(f"{field}: X is all zero: the inputs must not all vanish")
    return data
