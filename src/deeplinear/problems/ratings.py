"""A ratings problem: users × items, the training ratings seen as a completion problem, the
validation and test ratings held out (never in the loss), and the model's baseline.

With ``biases`` the prediction is μ + b_u + c_i + W[u, i]: the global mean μ and the user and
item biases are the **baseline predictors** (Koren 2008, §2.1) fitted first, by alternating
ridge regression to convergence on the training ratings,

    min_{b, c} Σ_{(u,i) ∈ train} (r_ui − μ − b_u − c_i)² + λ_b (Σ_u b_u² + Σ_i c_i²)

(a convex problem: block coordinate descent reaches its minimum), and the factorization fits
the residuals r_ui − μ − b_u − c_i. They are fitted before the factorization, not jointly with
it (the factorization's gradient does not move them). ``regularization`` λ adds the ALS-WR
penalty λ (Σ_u n_u ‖left_u‖² + Σ_i n_i ‖right_i‖²) (``measurement.Penalty``) to the loss.
There is no truth: the reachable minimum of a regularized fit of real data is unknown, and
what matters is the held-out error (``diagnostics.held_out``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deeplinear.core.backend import jnp
from deeplinear.diagnostics.floors import Floor
from deeplinear.diagnostics.held_out import Entries, HeldOutProbe
from deeplinear.objectives.measurement import Penalty, completion
from deeplinear.problems.measured import MeasuredProblem

BASELINE_TOLERANCE = 1e-12  # relative change of the biases at which the sweeps stop
BASELINE_SWEEPS = 500


def baseline_predictors(users, items, ratings, shape, lam: float):
    """(μ, b (n_users,), c (n_items,)): the minimizer above, by alternating exact updates
    b_u = Σ_i (r − μ − c_i) / (λ + n_u), c_i = Σ_u (r − μ − b_u) / (λ + n_i) until the
    biases change by less than ``BASELINE_TOLERANCE`` of their size (λ = 0: plain least
    squares, its gauge b + t, c − t fixed by starting from 0)."""
    n_users, n_items = shape
    mu = float(np.mean(ratings))
    centred = ratings - mu
    n_u = np.bincount(users, minlength=n_users).astype(np.float64)
    n_i = np.bincount(items, minlength=n_items).astype(np.float64)
    b, c = np.zeros(n_users), np.zeros(n_items)
    for _ in range(BASELINE_SWEEPS):
        b_new = np.bincount(users, centred - c[items], n_users) / np.maximum(lam + n_u, 1e-300)
        c_new = np.bincount(items, centred - b_new[users], n_items) / np.maximum(lam + n_i, 1e-300)
        change = max(np.max(np.abs(b_new - b), initial=0), np.max(np.abs(c_new - c), initial=0))
        b, c = b_new, c_new
        size = max(np.max(np.abs(b), initial=0), np.max(np.abs(c), initial=0), 1.0)
        if change <= BASELINE_TOLERANCE * size:
            break
    return mu, b, c


@dataclass(frozen=True, eq=False)
class RatingsProblem(MeasuredProblem):
    """A ``MeasuredProblem`` of the training residuals, with the held-out splits, the
    baseline, the rating scale, the penalty's λ and the original ids."""

    splits: dict = field(default_factory=dict)  # "train"/"validation"/"test" → Entries (host)
    scale: tuple[float, float] = (1.0, 5.0)
    regularization: float = 0.0
    baseline: tuple = (0.0, None, None)  # (μ, user biases, item biases); None: no biases
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    about: dict = field(default_factory=dict)  # counts of the split and what was dropped

    @property
    def kind(self) -> str:
        return "ratings"

    def lines(self) -> list[str]:
        """What a run and explain print of the data before any verdict: the split's counts and
        what the simplest predictors reach on the held-out ratings (the bars a fit must beat)."""
        a = self.about
        cold = f", {a['cold']:,} cold set aside" if a.get("cold") else ""
        out = [
            f"ratings: {a['users']:,} users × {a['items']:,} items; {a['train']:,} train, "
            f"{a['validation']:,} validation, {a['test']:,} test{cold}"
        ]
        for name, errors in a.get("baselines", {}).items():
            shown = ", ".join(f"{k} RMSE {v:.4f}" for k, v in errors.items() if v == v)
            out.append(f"  {name} alone: {shown}")
        return out

    def objective(self):
        obj = super().objective()
        if self.regularization <= 0:
            return obj
        rows, cols = self.line_counts
        penalty = Penalty(
            jnp.asarray(self.regularization, dtype=jnp.float64),
            jnp.asarray(rows, dtype=jnp.float64),
            jnp.asarray(cols, dtype=jnp.float64),
        )
        return obj._replace(penalty=penalty)

    def probe(self, widths) -> HeldOutProbe:
        parts = {name: Entries(*(jnp.asarray(a) for a in e)) for name, e in self.splits.items()}
        lo, hi = self.scale
        return HeldOutProbe(**parts, low=jnp.asarray(float(lo)), high=jnp.asarray(float(hi)))

    def floor(self, widths, objective=None) -> Floor:
        """Unknown (0 is a lower bound): no closed form for a rank-constrained, regularized fit
        of real ratings; the held-out error, not the training loss, says where it stops."""
        keep = np.asarray(self.measurements.weights) > 0
        energy = float(np.sum(np.asarray(self.measurements.values)[keep] ** 2))
        resolution = max(int(min(widths)) * np.finfo(np.float64).eps ** 2 * energy, 1e-300)
        note = (
            "unknown: a rank-constrained, regularized fit of real ratings has no closed form; "
            "the held-out error (validation_rmse) says whether more steps would help"
        )
        how = "no closed form: the excess is measured against the lower bound 0"
        return Floor(0.0, ("unknown",), 0.0, 0.0, int(min(widths)), 0, resolution, how,
                     known=False, note=note)  # fmt: skip


def ratings_problem(
    table, split, *, biases: bool, regularization: float, bias_regularization: float,
    name: str = "ratings",
) -> RatingsProblem:  # fmt: skip
    """The ``RatingsProblem`` of a ``ratings_data`` table and its split (index arrays)."""
    users = np.asarray(table.users, np.int64)
    items = np.asarray(table.items, np.int64)
    ratings = np.asarray(table.ratings, np.float64)
    shape = (len(table.user_ids), len(table.item_ids))
    train = np.asarray(split.train)
    if biases:
        mu, b, c = baseline_predictors(
            users[train], items[train], ratings[train], shape, bias_regularization
        )
        offset = mu + b[users] + c[items]
    else:
        mu, b, c = 0.0, None, None
        offset = np.zeros(ratings.size)
    residual = ratings - offset
    measurements = completion(users[train], items[train], residual[train], shape)

    def part(index, size=None):
        """The entries of ``index``, padded with weight-0 copies of the first to ``size``."""
        index = np.asarray(index, np.int64)
        pad = 0 if size is None else max(size - index.size, 0)
        full = np.r_[index, np.full(pad, index[0] if index.size else 0, np.int64)]
        weights = np.r_[np.ones(index.size), np.zeros(pad)]
        if not full.size:
            return tuple(np.zeros(0, t) for t in (np.int32, np.int32, float, float, float))
        return (users[full].astype(np.int32), items[full].astype(np.int32), ratings[full],
                offset[full], weights)  # fmt: skip

    sizes = held_out_sizes(split, ratings.size)
    splits = {"train": part(train), "validation": part(split.validation, sizes["validation"]),
              "test": part(split.test, sizes["test"])}  # fmt: skip
    about = {
        "train": int(train.size),
        "validation": int(np.size(split.validation)),
        "test": int(np.size(split.test)),
        "cold": int(np.size(getattr(split, "excluded", ()))),
        "users": shape[0],
        "items": shape[1],
        "baselines": _baselines(splits, ratings[train], offset if biases else None, table.scale),
    }
    return RatingsProblem(
        name, shape, measurements, dense_svd_entries=0,  # the spectral estimate by ARPACK
        splits=splits, scale=tuple(map(float, table.scale)), regularization=float(regularization),
        baseline=(mu, b, c), user_ids=table.user_ids, item_ids=table.item_ids, about=about,
    )  # fmt: skip


def held_out_sizes(split, m: int) -> dict[str, int]:
    """The size each held-out split is padded to: what the split assigns before the cold
    entries are set aside (round(f · m) for a random split: the same for every seed), so the
    problems of several seeds (several random splits) stack into one batch."""
    if split.how != "random":
        return {"validation": len(split.validation), "test": len(split.test)}
    return {
        "validation": round(split.validation_fraction * m),
        "test": round(split.test_fraction * m),
    }


def _baselines(splits, train_ratings, offset, scale) -> dict:
    """The held-out RMSEs of the global mean and (with biases) of the baseline predictors
    alone, clipped to the scale: what a factorization must beat."""
    lo, hi = scale
    mu = float(np.mean(train_ratings))
    out = {"the global mean": {}, "the biases": {}}
    for name in ("validation", "test"):
        _, _, ratings, baseline, weights = splits[name]
        keep = weights > 0
        if not keep.any():
            continue
        ratings, baseline = ratings[keep], baseline[keep]
        out["the global mean"][name] = float(np.sqrt(np.mean((np.clip(mu, lo, hi) - ratings) ** 2)))
        if offset is not None:
            error = np.clip(baseline, lo, hi) - ratings
            out["the biases"][name] = float(np.sqrt(np.mean(error**2)))
    return {k: v for k, v in out.items() if v}
