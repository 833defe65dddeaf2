"""Problems seen through measurements: matrix completion and matrix sensing.

A ``MeasuredProblem`` is a shape n1 × n2, measurements (``measurement.Completion`` or
``Sensing``, as NumPy arrays) and, when known, the truth M = U diag(s) Vᵀ (for the recovery
error). Generators draw, in this order from one random stream: the truth's factors, the sample
(entries or operators), the label noise.

Truths (``target_factors``):
- ``"spectrum"``: exactly the singular values given, singular vectors ``"random"`` (Haar) or
  ``"rademacher"`` (the left singular vectors of n × r ±1 matrices, as Tong, Ma & Chi's scripts);
- ``"gaussian_product"``: M = G Hᵀ with G, H i.i.d. N(0, 1) of width r (Arora, Cohen, Hu & Luo
  2019); its spectrum is whatever the draw gives.
``frobenius_norm`` rescales M to that norm.

Completion samples each entry with probability p (a dense Bernoulli mask up to 2·10⁷ entries;
beyond, exactly round(p·n1·n2) distinct entries uniformly) or exactly ``observations`` distinct
entries, and pads to a capacity fixed by the shape and p, so problems of several seeds stack.
Sensing draws m operators with i.i.d. N(0, 1/m) entries (E‖𝒜(E)‖² = ‖E‖²).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from deeplinear.core.backend import jax, jnp
from deeplinear.diagnostics.floors import Floor, measured_minimum
from deeplinear.diagnostics.identifiability import degrees_of_freedom, line_counts
from deeplinear.diagnostics.probes import RecoveryProbe
from deeplinear.errors import UsageError
from deeplinear.objectives.measurement import Completion, Sensing, completion, count
from deeplinear.problems import truths
from deeplinear.problems.dense import _check_header, _npz_headers, read_vectors

MAX_DENSE_MASK = 20_000_000  # entries above which a Bernoulli mask is not drawn densely
TARGETS = ("spectrum", "gaussian_product")
VECTORS = ("random", "rademacher")


@dataclass(frozen=True, eq=False)
class MeasuredProblem:
    """Measurements of an n1 × n2 matrix M, and M's factors when known."""

    name: str
    shape: tuple[int, int]
    measurements: Completion | Sensing  # NumPy arrays
    U: np.ndarray | None = None  # the truth M = U diag(s) Vᵀ (orthonormal U, V), if known
    s: np.ndarray | None = None
    V: np.ndarray | None = None
    noise: float = 0.0
    draws: int = 1  # samples drawn until every line had ``min_per_line`` entries (completion)
    dense_svd_entries: int = 4_000_000  # the spectral estimate's dense SVD up to this n1·n2

    @property
    def has_truth(self) -> bool:
        return self.s is not None

    @property
    def kind(self) -> str:
        return "completion" if isinstance(self.measurements, Completion) else "sensing"

    @property
    def count(self) -> int:
        """The number of measurements m (padding excluded)."""
        return count(self.measurements)

    @property
    def fraction(self) -> float:
        """m / (n1 n2): the sampling rate p of a completion problem."""
        return self.count / (self.shape[0] * self.shape[1])

    @property
    def oversampling(self) -> float | None:
        """ρ = m / (r (n1 + n2 − r)): the measurements per degree of freedom of the truth's
        rank (None without a truth)."""
        if not self.has_truth:
            return None
        return self.count / degrees_of_freedom(self.shape, self.rank)

    @cached_property
    def line_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """The observed entries in each row and each column (completion; computed once: each
        run's recovery verdict asks)."""
        obs = self.measurements
        return line_counts(obs.rows, obs.cols, obs.weights, self.shape)

    @property
    def singular_values(self) -> np.ndarray:
        """The truth's non-zero singular values, largest first (empty when unknown)."""
        return np.zeros(0) if self.s is None else np.asarray(self.s)

    @property
    def rank(self) -> int:
        return int(self.singular_values.size)

    @property
    def condition_number(self) -> float:
        s = self.singular_values
        return float(s[0] / s[-1]) if s.size else float("nan")

    def modes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(U, s, V) of the truth."""
        if not self.has_truth:
            raise UsageError(f"{self.name} has no truth: give 'truth' in the problem's .npz")
        return self.U, self.s, self.V

    def floor(self, widths, objective=None) -> Floor:
        """The reachable minimum at the narrowest width (``floors.measured_minimum``)."""
        return measured_minimum(self, int(min(widths)), objective)

    def probe(self, widths) -> RecoveryProbe | None:
        """The recovery probe (‖W − M‖/‖M‖, σ(W), per-mode progress); None without a truth."""
        return RecoveryProbe.for_problem(self, widths) if self.has_truth else None

    def objective(self) -> Completion | Sensing:
        """The measured loss as JAX arrays."""

        return jax.tree_util.tree_map(jnp.asarray, self.measurements)

    def back_projection(self):
        """𝒜*(y)/p for completion (P_Ω(M)/p, as a SciPy sparse matrix), Σ_k y_k A_k for sensing
        (dense): the matrix whose top singular subspace is the spectral estimate of M."""
        n1, n2 = self.shape
        obs = self.measurements
        keep = obs.weights > 0
        if isinstance(obs, Completion):
            from scipy import sparse

            values = obs.values[keep] / self.fraction
            return sparse.csr_matrix((values, (obs.rows[keep], obs.cols[keep])), shape=(n1, n2))
        return (obs.values[keep] @ obs.operators[keep]).reshape(n1, n2)

    def spectral_estimate(self, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(U, s, V): the top-r singular triplets of the back-projection (dense SVD up to
        ``dense_svd_entries`` entries, else ARPACK from a fixed start vector: the same result
        every time)."""
        B = self.back_projection()
        n1, n2 = self.shape
        r = min(r, n1, n2)
        if n1 * n2 <= self.dense_svd_entries or r >= min(n1, n2) - 1:
            dense = B.toarray() if hasattr(B, "toarray") else np.asarray(B)
            U, s, Vt = np.linalg.svd(dense, full_matrices=False)
            return U[:, :r], s[:r], Vt[:r].T
        from scipy.sparse.linalg import svds

        start = np.ones(min(n1, n2)) / math.sqrt(min(n1, n2))
        U, s, Vt = svds(B, k=r, v0=start)
        order = np.argsort(s)[::-1]
        return U[:, order], s[order], Vt[order].T

    def dense_truth(self) -> np.ndarray:
        """M itself (n1 × n2): for small problems and tests."""
        U, s, V = self.modes()
        return (U * s) @ V.T


def target_factors(
    rng, shape: tuple[int, int], values=None, *, target: str = "spectrum",
    vectors: str = "random", rank: int | None = None, frobenius_norm: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(U, s, V) of a truth M = U diag(s) Vᵀ with orthonormal U (n1 × r), V (n2 × r)."""
    n1, n2 = shape
    if target == "spectrum":
        values = np.asarray(values, dtype=np.float64)
        r = values.size
        if r > min(n1, n2):
            raise UsageError(f"problem.rank must be ≤ min(rows, cols) = {min(n1, n2)}, got {r}")
        if vectors == "random":
            U, V = (
                _orthonormal(rng.standard_normal((n1, r))),
                _orthonormal(rng.standard_normal((n2, r))),
            )
        elif vectors == "rademacher":
            U = _orthonormal(np.sign(rng.rand(n1, r) - 0.5))
            V = _orthonormal(np.sign(rng.rand(n2, r) - 0.5))
        else:
            raise UsageError(
                f"problem.vectors must be one of {', '.join(VECTORS)}, got {vectors!r}"
            )
        s = values
    elif target == "gaussian_product":
        if rank is None or rank > min(n1, n2):
            raise UsageError(f"problem.rank must be ≤ min(rows, cols) = {min(n1, n2)}, got {rank}")
        G, H = rng.standard_normal((n1, rank)), rng.standard_normal((n2, rank))
        Qg, Rg = np.linalg.qr(G)
        Qh, Rh = np.linalg.qr(H)
        u, s, vt = np.linalg.svd(Rg @ Rh.T)
        U, V = Qg @ u, Qh @ vt.T
    else:
        raise UsageError(f"problem.target must be one of {', '.join(TARGETS)}, got {target!r}")
    if frobenius_norm is not None:
        s = s * (frobenius_norm / np.linalg.norm(s))
    return U, np.asarray(s, dtype=np.float64), V


def _orthonormal(M: np.ndarray) -> np.ndarray:
    """The left singular vectors of M (n × r, orthonormal columns), signs fixed."""
    U, _, _ = np.linalg.svd(M, full_matrices=False)
    return U * np.where(U[0] < 0, -1.0, 1.0)


def capacity(shape: tuple[int, int], probability: float) -> int:
    """Room for a Bernoulli(p) sample of n1·n2 entries: the mean plus 7 standard deviations
    (exceeded with probability below 1e-11), at most every entry."""
    n = shape[0] * shape[1]
    mean = probability * n
    return min(n, math.ceil(mean + 7 * math.sqrt(mean * (1 - probability)) + 1))


def oversampled_count(shape: tuple[int, int], rank: int, oversampling: float) -> int:
    """|Ω| = ρ · r (n1 + n2 − r), rounded: ρ times the degrees of freedom of a rank-r
    n1 × n2 matrix (ρ = 1 is the information limit; MatrixIRLS's experiments sweep 1.05–4)."""
    return max(1, round(oversampling * degrees_of_freedom(shape, rank)))


MAX_DRAWS = 1000  # ``min_per_line``: samples drawn before giving up


def _lines_short(index: np.ndarray, shape, least: int) -> int:
    """How many rows and columns of the sample ``index`` hold fewer than ``least`` entries."""
    rows, cols = np.divmod(index, shape[1])
    per_row, per_col = line_counts(rows, cols, np.ones(index.size), shape)
    return int((per_row < least).sum() + (per_col < least).sum())


def sample_entries(rng, shape, *, probability=None, observations=None) -> np.ndarray:
    """Linear indices (row-major) of the observed entries, in drawing order."""
    n1, n2 = shape
    n = n1 * n2
    if observations is not None:
        if observations > n:
            raise UsageError(f"problem.observations must be ≤ rows·cols = {n}, got {observations}")
        return _distinct(rng, n, observations)
    if n <= MAX_DENSE_MASK:
        return np.flatnonzero(rng.rand(n1, n2).reshape(-1) < probability)
    return _distinct(rng, n, round(probability * n))


def _distinct(rng, n: int, count: int) -> np.ndarray:
    """``count`` distinct integers uniform in [0, n), in the order first drawn."""
    if count > n // 2:  # dense enough: a permutation's prefix
        return np.argsort(rng.rand(n), kind="stable")[:count]
    drawn = np.zeros(0, dtype=np.int64)
    while True:
        more = np.floor(rng.rand(count - drawn.size + 16) * n).astype(np.int64)
        drawn = np.concatenate([drawn, np.minimum(more, n - 1)])
        _, first = np.unique(drawn, return_index=True)
        if first.size >= count:
            return drawn[np.sort(first)][:count]
        drawn = drawn[np.sort(first)]


def completion_problem(
    rng, shape, truth, *, probability=None, observations=None, noise: float = 0.0,
    name: str = "completion", min_per_line: int = 0,
) -> MeasuredProblem:  # fmt: skip
    """Entries of M = U diag(s) Vᵀ sampled as ``sample_entries`` does, plus N(0, noise²);
    drawn again (at most ``MAX_DRAWS`` times) until every row and column holds at least
    ``min_per_line`` entries, the draws counted."""
    U, s, V = truth
    draws = 0
    while True:
        draws += 1
        index = sample_entries(rng, shape, probability=probability, observations=observations)
        if not min_per_line or not _lines_short(index, shape, min_per_line):
            break
        if draws < MAX_DRAWS:
            continue
        raise UsageError(
            f"problem.min_per_line = {min_per_line}: no sample of {MAX_DRAWS} had that many "
            "entries in every row and column; observe more entries or lower min_per_line"
        )
    if index.size == 0:
        raise UsageError("problem.probability is too small: no entry was observed; raise it")
    rows, cols = np.divmod(index, shape[1])
    values = np.einsum("kr,r,kr->k", U[rows], s, V[cols])
    if noise:
        values = values + noise * rng.standard_normal(values.shape)
    room = index.size if observations is not None else capacity(shape, probability)
    pad = max(0, room - index.size)
    measurements = completion(
        np.concatenate([rows, np.zeros(pad, np.int64)]),
        np.concatenate([cols, np.zeros(pad, np.int64)]),
        np.concatenate([values, np.zeros(pad)]),
        shape,
        np.concatenate([np.ones(index.size), np.zeros(pad)]),
    )
    return MeasuredProblem(name, tuple(shape), measurements, U, s, V, noise, draws)


def sensing_problem(
    rng, shape, truth, *, measurements: int, noise: float = 0.0, name: str = "sensing"
) -> MeasuredProblem:
    """y_k = ⟨A_k, M⟩ + noise·ξ_k for m operators with i.i.d. N(0, 1/m) entries."""
    U, s, V = truth
    n1, n2 = shape
    A = rng.standard_normal((measurements, n1 * n2)) / math.sqrt(measurements)
    values = A @ ((U * s) @ V.T).reshape(-1)
    if noise:
        values = values + noise * rng.standard_normal(values.shape)
    ones = np.ones(measurements)
    return MeasuredProblem(
        name, tuple(shape), Sensing(A, values, ones, np.float64(0.0)), U, s, V, noise
    )


# name → the dimensions allowed for it in a completion or sensing .npz
NPZ_NDIMS = {"rows": (1,), "cols": (1,), "values": (1,), "shape": (1,), "operators": (2, 3),
             "truth": (2,), "U": (2,), "s": (1,), "V": (2,)}  # fmt: skip
FACTORS = ("U", "s", "V")  # the truth as factors, M = U diag(s) Vᵀ
NPZ_ARRAYS = {"completion": ["rows", "cols", "values", "shape"],
              "sensing": ["operators", "values", "shape"]}  # fmt: skip


def npz_layout(path: str | Path, kind: str, field: str = "problem.path") -> tuple[int, int, int]:
    """(rows, cols, measurements) of a completion or sensing .npz, every array's presence,
    dtype, dimensions and length checked against the others from the headers alone (and the
    two numbers of ``shape``); a one-line UsageError naming the array and the fix."""
    path = Path(path)
    headers = _npz_headers(path, field)
    needed = NPZ_ARRAYS[kind]
    for name in needed:
        if name not in headers:
            raise UsageError(f"{field} has no '{name}': a {kind} file needs {', '.join(needed)}")
    for name in [*needed, "truth", *FACTORS]:
        if name in headers:
            _check_header(name, *headers[name][:2], field, NPZ_NDIMS[name])
    shape = read_vectors(path, field, ["shape"])["shape"]
    if shape.shape != (2,) or np.any(shape < 1) or np.any(shape != np.round(shape)):
        raise UsageError(f"{field}: shape must be two positive integers (rows, cols), got {shape}")
    n1, n2 = (int(x) for x in shape)
    (m,) = headers["values"][0]
    if kind == "completion":
        lengths = [headers[name][0][0] for name in ("rows", "cols", "values")]
        if len(set(lengths)) > 1:
            raise UsageError(
                f"{field}: rows, cols and values must have the same length, got "
                f"{', '.join(map(str, lengths))}: one entry (row, col, value) each"
            )
    else:
        operators = headers["operators"][0]
        if (
            operators[0] != m
            or math.prod(operators[1:]) != n1 * n2
            or (len(operators) == 3 and operators[1:] != (n1, n2))
        ):
            raise UsageError(
                f"{field}: operators has shape {operators}, expected {(m, n1, n2)} or "
                f"{(m, n1 * n2)}: one {n1} × {n2} operator for each of the {m} values"
            )
    if "truth" in headers and headers["truth"][0] != (n1, n2):
        raise UsageError(f"{field}: truth has shape {headers['truth'][0]}, expected {(n1, n2)}")
    _check_factors(headers, n1, n2, field)
    return n1, n2, m


def _check_factors(headers: dict, n1: int, n2: int, field: str) -> None:
    """U (n1 × k), s (k), V (n2 × k), all three or none, and not beside a dense truth."""
    given = [name for name in FACTORS if name in headers]
    if not given:
        return
    if len(given) < 3:
        missing = ", ".join(name for name in FACTORS if name not in headers)
        raise UsageError(f"{field} has {', '.join(given)} but not {missing}: the truth as "
                         "factors M = U diag(s) Vᵀ needs all three")  # fmt: skip
    if "truth" in headers:
        raise UsageError(f"{field} has both truth and U, s, V: give the truth one way")
    (k,) = headers["s"][0]
    for name, expected in (("U", (n1, k)), ("V", (n2, k))):
        if headers[name][0] != expected:
            raise UsageError(
                f"{field}: {name} has shape {headers[name][0]}, expected {expected} "
                f"(shape {n1} × {n2}, {k} values in s)"
            )


def read_measured_npz(path: str | Path, kind: str, field: str = "problem.path"):
    """((rows, cols), the arrays) of a completion or sensing .npz: ``npz_layout``, then every
    value finite, the indices integers in range and each entry once, the truth (dense or as
    factors) not zero and explaining the values (``truths.check_explains``)."""
    n1, n2, _ = npz_layout(path, kind, field)
    data = read_vectors(path, field, [*NPZ_ARRAYS[kind], "truth", *FACTORS])
    if "truth" in data and not np.any(data["truth"]):
        raise UsageError(f"{field}: truth is zero: give the matrix the values measure")
    if "U" in data and not all(np.any(data[name]) for name in FACTORS):
        raise UsageError(f"{field}: U diag(s) Vᵀ is zero: give the factors of the matrix measured")
    if kind == "completion":
        rows, cols = data["rows"], data["cols"]
        for name, idx, n in (("rows", rows, n1), ("cols", cols, n2)):
            if np.any(idx != np.round(idx)) or np.any(idx < 0) or np.any(idx >= n):
                raise UsageError(f"{field}: {name} must be integers in [0, {n}): fix the indices")
        pairs = np.sort(rows.astype(np.int64) * n2 + cols.astype(np.int64))
        if np.any(pairs[1:] == pairs[:-1]):  # a sort: 6 ms for 10⁶ entries, np.unique 0.9 s
            raise UsageError(f"{field}: an entry is listed twice: give each (row, col) once")
    if "truth" in data or "U" in data:
        _check_truth_explains(kind, data, field)
    return (n1, n2), data


def _check_truth_explains(kind: str, data: dict, field: str) -> None:
    """The truth's predictions of the observed values, from the arrays as given (no
    factorization): a gather for completion, the operators for sensing."""
    dense = data.get("truth")
    if kind == "completion":
        rows, cols = data["rows"].astype(np.int64), data["cols"].astype(np.int64)
        if dense is not None:
            predicted = dense[rows, cols]
        else:
            predicted = np.einsum("mr,mr->m", data["U"][rows] * data["s"], data["V"][cols])
    else:
        M = dense if dense is not None else (data["U"] * data["s"]) @ data["V"].T
        predicted = data["operators"].reshape(data["values"].size, -1) @ M.ravel()
    given = "truth" if dense is not None else "U diag(s) Vᵀ"
    truths.check_explains(predicted, data["values"], field, given)


def npz_measured_problem(path: str | Path, kind: str, field: str = "problem.path"):
    """A completion (``rows``, ``cols``, ``values``, ``shape``) or sensing (``operators``
    m × n1 × n2 or m × n1·n2, ``values``, ``shape``) problem from an .npz, with an optional
    ``truth`` (n1 × n2) or its factors ``U``, ``s``, ``V`` (M = U diag(s) Vᵀ) for the recovery
    error, reduced to its modes without a full SVD (``truths``); every array checked
    (``read_measured_npz``)."""

    path = Path(path)
    (n1, n2), data = read_measured_npz(path, kind, field)
    values = data["values"]
    truth = None
    if "truth" in data:
        truth = truths.dense_modes(data["truth"], field)
    elif "U" in data:
        truth = truths.factor_modes(data["U"], data["s"], data["V"], field)
    ones = np.ones(values.size)
    if kind == "completion":
        rows, cols = data["rows"], data["cols"]
        obs = completion(rows, cols, values, (n1, n2))
    else:
        obs = Sensing(data["operators"].reshape(values.size, -1), values, ones, np.float64(0.0))
    U, s, V = truth if truth else (None, None, None)
    return MeasuredProblem(path.stem, (n1, n2), obs, U, s, V)


def dense_truth_values(spec: dict, base_dir: Path) -> int:
    """The entries of a dense ``truth`` a problem's .npz holds (0: none, or not from a file)."""
    if "path" not in spec:
        return 0
    headers = _npz_headers(Path(base_dir) / spec["path"], "problem.path")
    return math.prod(headers["truth"][0]) if "truth" in headers else 0


def measured_dims(spec: dict, base_dir: Path) -> tuple[int, int, int]:
    """(rows, cols, measurements) a run file's completion or sensing problem will have, without
    drawing it (the measurement count of a Bernoulli sample is its padded capacity) or reading
    more of its .npz than ``shape`` and the headers."""
    if "path" in spec:
        path = Path(base_dir) / spec["path"]
        return npz_layout(path, spec["kind"])
    shape = (spec["rows"], spec["cols"])
    if spec["kind"] == "sensing":
        return *shape, spec["measurements"]
    if "observations" in spec:
        return *shape, spec["observations"]
    return *shape, capacity(shape, spec["probability"])
