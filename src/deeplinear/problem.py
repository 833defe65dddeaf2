"""Problems: a target map A, optionally with samples X and Y = A X.

A problem knows its true spectrum. The notebook's generator (``notebook_problem``) reproduces the
2017 draws exactly: after ``np.random.seed(seed)`` it draws W1, W2, A and X in this order::

    W1 = randn(ydim, wdim); W2 = randn(wdim, xdim)
    A  = linspace(1, 1e-5, ydim)[:, None] * rand(ydim, xdim)   # rows scaled, not singular values
    X  = randn(xdim, n);    Y = A @ X

The same generator can be driven by a JAX key instead of NumPy's legacy global state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UsageError
from .objective import Objective


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

    @property
    def singular_values(self) -> np.ndarray:
        """Singular values of A, largest first."""
        return np.linalg.svd(self.A, compute_uv=False)

    @property
    def rank(self) -> int:
        """Numerical rank of A: singular values above max(shape)·eps·σ_max."""
        s = self.singular_values
        return int(np.sum(s > max(self.A.shape) * np.finfo(float).eps * s[0]))

    @property
    def condition_number(self) -> float:
        """κ(A) = σ_max / σ_min over the non-zero singular values."""
        s = self.singular_values[: self.rank]
        return float(s[0] / s[-1])

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
        from ._backend import jax

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
