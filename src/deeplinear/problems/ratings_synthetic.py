"""Synthetic ratings with a known statistical floor: a low-rank model plus noise, quantized to
stars (NumPy and SciPy's normal CDF, no JAX).

Score s = μ + b_u + c_i + ⟨p_u, q_i⟩ with, on the scale [lo, hi] of half-width h = (hi − lo)/2:
μ = lo + 0.63·(hi − lo) (3.52 on 1–5 stars), b_u ~ N(0, (0.2h)²), c_i ~ N(0, (0.25h)²) and
p_u, q_i ~ N(0, σ_f² I_rank) with σ_f² = 0.3h/√rank, so ⟨p_u, q_i⟩ has standard deviation 0.3h
whatever the rank. Rating r = clip(lo + ⌊s + noise·ε − lo + ½⌋, lo, hi), ε ~ N(0, 1): whole
stars from lo. Which entries are observed: user u rates n_u distinct items (at least
min(5, items, ratings // users); the rest spread by log-normal activity), drawn with weights
w_i ∝ (rank of i)^(−popularity) over a random order of the items (Zipf-like; 0: uniform).

The best predictor of r given (u, i) is E[r | s] (`expected_rating`); its RMSE, √mean Var[r | s]
(`floor_rmse`), is the statistical floor no model fitted to these ratings can beat in
expectation. The table's ``truth`` holds each entry's s, ``noise`` the noise's deviation.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from deeplinear.core.checks import require_int, require_number
from deeplinear.errors import UsageError
from deeplinear.problems.ratings_data import RatingsTable

MIN_PER_USER = 5
_POPULAR_ROUNDS, _UNIFORM_ROUNDS = 12, 8
_BLOCK = 1 << 20
_START, _YEAR = 883_612_800, 365 * 86_400  # 1998-01-01, in seconds


def check_synthetic(
    users, items, ratings, rank, noise, seed, scale, popularity, field=None
) -> tuple[float, float]:
    """The arguments of ``synthetic_ratings`` checked (one line naming ``field.key``, e.g.
    ``problem.synthetic.ratings``, or ``synthetic_ratings(key)``); the scale (lo, hi)."""

    def where(key: str) -> str:
        return f"synthetic_ratings({key})" if field is None else f"{field}.{key}"

    require_int(users, where("users"), 1)
    require_int(items, where("items"), 1)
    require_int(ratings, where("ratings"), users, users * items)
    require_int(rank, where("rank"), 0)
    require_int(seed, where("seed"), 0)
    require_number(noise, where("noise"), 0)
    require_number(popularity, where("popularity"), 0)
    if not (isinstance(scale, list | tuple) and len(scale) == 2):
        raise UsageError(f"{where('scale')} must be (lo, hi), got {scale!r}")
    lo, hi = (require_number(x, where("scale")) for x in scale)
    if not (hi > lo and float(hi - lo).is_integer()):
        raise UsageError(f"{where('scale')} must be (lo, hi) whole stars apart, got {scale!r}")
    return lo, hi


def _counts(rng, users: int, items: int, ratings: int) -> np.ndarray:
    """Ratings per user: each ≥ min(5, items, ratings // users), ≤ items, summing to ratings."""
    floor = min(MIN_PER_USER, items, ratings // users)
    counts = np.full(users, floor, np.int64)
    activity = rng.lognormal(0.0, 1.0, users)
    while (rest := ratings - counts.sum()) > 0:
        room = items - counts
        weights = activity * (room > 0)
        counts += np.minimum(rng.multinomial(rest, weights / weights.sum()), room)
    return counts


def _contains(chunk: np.ndarray, keys: np.ndarray) -> np.ndarray:
    at = np.minimum(np.searchsorted(chunk, keys), len(chunk) - 1)
    return chunk[at] == keys


def _fill(rng, chunks, need, items: int) -> np.ndarray:
    """The last few users' missing items, drawn uniformly from those they have not rated."""
    keys = []
    for user in np.flatnonzero(need):
        low, high = user * items, (user + 1) * items
        have = np.concatenate(
            [c[np.searchsorted(c, low) : np.searchsorted(c, high)] for c in chunks]
        )
        free = np.setdiff1d(np.arange(low, high), have)
        keys.append(rng.choice(free, size=need[user], replace=False))
    return np.sort(np.concatenate(keys))


def _pairs(rng, counts: np.ndarray, items: int, popularity: float) -> np.ndarray:
    """Distinct keys u·items + i, ``counts[u]`` for each user: each round draws every user's
    missing items with replacement and keeps those new to them (rejection: sampling without
    replacement); after a few popularity rounds, uniform ones, then an exact fill."""
    weights = (1.0 + rng.permutation(items)) ** -popularity
    popular = np.cumsum(weights / weights.sum())
    chunks, need = [], counts.copy()
    for round_ in range(_POPULAR_ROUNDS + _UNIFORM_ROUNDS):
        if not need.any():
            break
        user = np.repeat(np.arange(len(counts), dtype=np.int64), need)
        draws = rng.random(len(user))
        item = (
            np.minimum(np.searchsorted(popular, draws, side="right"), items - 1)
            if round_ < _POPULAR_ROUNDS
            else (draws * items).astype(np.int64)
        )
        keys = np.sort(user * items + item)
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
        for chunk in chunks:
            keys = keys[~_contains(chunk, keys)]
        if len(keys):
            chunks.append(keys)
        need -= np.bincount(keys // items, minlength=len(counts))
    if need.any():
        chunks.append(_fill(rng, chunks, need, items))
    return np.concatenate(chunks)


def _scores(rng, users, items, shape, rank: int, lo: float, hi: float) -> np.ndarray:
    """s = μ + b_u + c_i + ⟨p_u, q_i⟩ of each entry, computed block by block."""
    h = (hi - lo) / 2
    user_bias = rng.normal(0.0, 0.2 * h, shape[0])
    item_bias = rng.normal(0.0, 0.25 * h, shape[1])
    deviation = np.sqrt(0.3 * h / np.sqrt(rank)) if rank else 0.0
    P = rng.normal(0.0, deviation, (shape[0], rank))
    Q = rng.normal(0.0, deviation, (shape[1], rank))
    scores = (lo + 0.63 * (hi - lo)) + user_bias[users] + item_bias[items]
    for start in range(0, len(scores), _BLOCK):
        u, i = users[start : start + _BLOCK], items[start : start + _BLOCK]
        scores[start : start + _BLOCK] += np.einsum("kr,kr->k", P[u], Q[i])
    return scores


def synthetic_ratings(
    *, users, items, ratings, rank, noise, seed, scale=(1, 5), popularity=1.0
) -> RatingsTable:
    """``ratings`` distinct (user, item) pairs of ``users`` × ``items`` rated by the model in the
    module docstring, in random order, with integer timestamps and the scores as ``truth``.
    Items nobody rated are left out (as in a real file): ``item_ids`` are the model's indices."""
    lo, hi = check_synthetic(users, items, ratings, rank, noise, seed, scale, popularity)
    rng = np.random.default_rng(seed)
    keys = _pairs(rng, _counts(rng, users, items, ratings), items, popularity)
    keys = keys[rng.permutation(len(keys))]
    user, item = (keys // items).astype(np.int32), (keys % items).astype(np.int32)
    truth = _scores(rng, user, item, (users, items), rank, lo, hi)
    stars = np.floor(truth + noise * rng.standard_normal(len(truth)) - lo + 0.5)
    values = np.clip(lo + stars, lo, hi)
    start = rng.integers(0, 3 * _YEAR, users)
    span = rng.integers(1, _YEAR, users)
    timestamps = _START + start[user] + (rng.random(len(user)) * span[user]).astype(np.int64)
    rated = np.flatnonzero(np.bincount(item, minlength=items))
    code = np.zeros(items, np.int32)
    code[rated] = np.arange(len(rated), dtype=np.int32)
    return RatingsTable(
        user,
        code[item],
        values,
        timestamps,
        np.arange(users, dtype=np.int64),
        rated.astype(np.int64),
        (lo, hi),
        truth=truth,
        noise=float(noise),
    )


def expected_rating(truth: np.ndarray, noise: float, scale) -> tuple[np.ndarray, np.ndarray]:
    """E[r | s] and Var[r | s] of the quantized rating: r = lo + J with J = Σ_j 1[x ≥ t_j],
    x = s + noise·ε and thresholds t_j = lo + j − ½ (j = 1..hi − lo), so E J = Σ_j P_j and
    E J² = Σ_j (2j − 1) P_j with P_j = Φ((s − t_j)/noise)."""
    lo, hi = scale
    mean, square = np.zeros_like(truth), np.zeros_like(truth)
    for j in range(1, round(hi - lo) + 1):
        gap = truth - (lo + j - 0.5)
        p = ndtr(gap / noise) if noise > 0 else (gap >= 0).astype(float)
        mean += p
        square += (2 * j - 1) * p
    return lo + mean, np.maximum(square - mean**2, 0.0)


def floor_rmse(table: RatingsTable) -> float:
    """√ mean Var[r | s] over the table's entries: the RMSE of the best predictor E[r | s]."""
    if table.truth is None or table.noise is None:
        raise UsageError(
            "floor_rmse(table) needs the scores and noise of synthetic ratings; give a table "
            "from synthetic_ratings"
        )
    return float(np.sqrt(np.mean(expected_rating(table.truth, table.noise, table.scale)[1])))
