"""Ratings r_k of user u_k for item i_k (k < m, a few % of users × items observed) read from a
file into a `RatingsTable`, checked, and written back; NumPy and Arrow, no JAX.

Ids of any type (integers, strings) become codes 0..n−1 in **sorted order of the ids** (numbers
numerically, text lexicographically), so the codes do not depend on the order of the rows:
user code u is ``user_ids[u]``, item code i is ``item_ids[i]``. Refused in one line naming the
field, the line (row of a Parquet file) and the fix: a missing or empty file, an unreadable
format, missing columns, ratings that are missing, not numbers or infinite, ratings outside a
given ``scale``, ids missing, timestamps that are not integers, and a (user, item) pair rated
twice. With ``drop_invalid`` the ratings that are not numbers, those outside the scale and the
repeated pairs (the last kept: by timestamp, else in the file) are dropped instead and counted
in ``RatingsTable.dropped``. Layouts: `ratings_files`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from deeplinear.core.checks import check_keys, require_flag
from deeplinear.core.words import counted
from deeplinear.errors import UsageError
from deeplinear.problems.ratings_files import COLUMNS, RawColumns, read_columns, write_columns

DROPPED = ("nan", "out_of_scale", "duplicates")
_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_INTEGER = r"^[-+]?\d+$"


@dataclass(frozen=True, eq=False)
class RatingsTable:
    """Observed ratings: entry k is user ``users[k]``'s rating ``ratings[k]`` of item
    ``items[k]`` (codes into ``user_ids``/``item_ids``), at ``timestamps[k]`` if known.

    ``scale`` = (lo, hi): given, or the ratings' (min, max). ``dropped``: rows dropped by
    ``drop_invalid``, per reason (`DROPPED`). ``truth`` and ``noise``: for synthetic ratings,
    the noiseless, unquantized score of each entry and the noise's standard deviation.
    """

    users: np.ndarray  # int32
    items: np.ndarray  # int32
    ratings: np.ndarray  # float64
    timestamps: np.ndarray | None  # int64
    user_ids: np.ndarray
    item_ids: np.ndarray
    scale: tuple[float, float]
    dropped: dict = field(default_factory=lambda: dict.fromkeys(DROPPED, 0))
    truth: np.ndarray | None = None
    noise: float | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_users, self.n_items

    def __len__(self) -> int:
        return len(self.ratings)

    def take(self, index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(users, items, ratings) of the entries ``index`` (a split's part)."""
        return self.users[index], self.items[index], self.ratings[index]


def _prefix(name: str) -> str:
    return name.rsplit(".", 1)[0] + "." if "." in name else ""


def check_columns(columns, prefix: str) -> dict[str, str] | None:
    """``columns`` (canonical name → the file's), checked; None when not given."""
    if columns is None:
        return None
    check_keys(columns, set(COLUMNS), f"{prefix}columns")
    for key, name in columns.items():
        if not isinstance(name, str) or not name:
            raise UsageError(
                f"{prefix}columns.{key} must be the name of a column in the file, got {name!r}"
            )
    return dict(columns)


def check_scale(scale, prefix: str) -> tuple[float, float] | None:
    """``scale`` as (lo, hi), checked; None when not given."""
    if scale is None:
        return None
    numbers = (
        isinstance(scale, list | tuple)
        and len(scale) == 2
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in scale)
    )
    if not numbers or not all(map(math.isfinite, scale)) or not scale[0] < scale[1]:
        raise UsageError(f"{prefix}scale must be [lo, hi], finite with lo < hi, got {scale!r}")
    return float(scale[0]), float(scale[1])


def _numbers(column: pa.Array, field: str) -> np.ndarray:
    """A rating column as float64, NaN where it is missing or not a number."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = pc.utf8_trim_whitespace(column)
        valid = pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)
        column = pc.cast(pc.if_else(valid, text, "nan"), pa.float64())
    elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
        raise UsageError(f"{field}: the rating column holds {kind}; give ratings as numbers")
    filled = pc.fill_null(pc.cast(column, pa.float64()), math.nan)
    return filled.to_numpy(zero_copy_only=False)


def _shown(column: pa.Array, row: int) -> str:
    value = column[row].as_py()
    return "missing" if value is None else repr(value)


def _valid(raw: RawColumns, ratings, given, drop_invalid: bool, field: str):
    """The rows to keep, and the count dropped per reason."""
    prefix = _prefix(field)
    bad = ~np.isfinite(ratings)
    if bad.any() and not drop_invalid:
        row = int(np.argmax(bad))
        raise UsageError(
            f"{field}: the rating at {raw.where(row)} is {_shown(raw.columns['rating'], row)}, "
            f"not a number ({counted(int(bad.sum()), 'such row')}); fix them, or set "
            f"{prefix}drop_invalid = true to drop them"
        )
    out = np.zeros_like(bad)
    if given is not None:
        with np.errstate(invalid="ignore"):
            out = ~bad & ((ratings < given[0]) | (ratings > given[1]))
    if out.any() and not drop_invalid:
        row = int(np.argmax(out))
        raise UsageError(
            f"{field}: the rating {ratings[row]:g} at {raw.where(row)} is outside "
            f"{prefix}scale = [{given[0]:g}, {given[1]:g}] "
            f"({counted(int(out.sum()), 'such row')}); fix them, widen {prefix}scale, or set "
            f"{prefix}drop_invalid = true to drop them"
        )
    return ~(bad | out), {"nan": int(bad.sum()), "out_of_scale": int(out.sum())}


def _codes(raw: RawColumns, key: str, rows: np.ndarray, column: pa.ChunkedArray, field: str):
    """Codes 0..n−1 of an id column (sorted order of the ids) and the ids."""
    if column.null_count:
        row = int(rows[np.argmax(column.is_null().to_numpy(zero_copy_only=False))])
        raise UsageError(f"{field}: no {key} id at {raw.where(row)}; give every row a {key} id")
    encoded = pc.dictionary_encode(column)
    dictionary = encoded.chunk(0).dictionary
    if not all(chunk.dictionary.equals(dictionary) for chunk in encoded.chunks):
        encoded = pa.chunked_array([pc.dictionary_encode(column.combine_chunks())])
        dictionary = encoded.chunk(0).dictionary
    indices = np.concatenate(
        [chunk.indices.to_numpy(zero_copy_only=False) for chunk in encoded.chunks]
    )
    order = pc.sort_indices(dictionary).to_numpy()
    rank = np.empty(len(order), np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return rank[indices], dictionary.take(pa.array(order)).to_numpy(zero_copy_only=False)


def _timestamps(raw: RawColumns, rows: np.ndarray, column: pa.Array | None, field: str):
    if column is None:
        return None
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        column = pc.cast(pc.cast(column, pa.timestamp("s")), pa.int64())
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        column = pc.utf8_trim_whitespace(column)
        valid = pc.fill_null(pc.match_substring_regex(column, _INTEGER), False)
        column = pc.if_else(valid, column, None)
    elif pa.types.is_floating(kind):
        whole = pc.equal(column, pc.floor(column))
        column = pc.if_else(pc.and_kleene(whole, pc.is_finite(column)), column, None)
    values = pc.cast(column, pa.int64()) if column.null_count == 0 else None
    if values is None:
        row = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
        shown = _shown(raw.columns["timestamp"], int(rows[row]))
        raise UsageError(
            f"{field}: the timestamp at {raw.where(int(rows[row]))} is {shown}, not an integer; "
            "give integer timestamps (e.g. seconds since 1970) or leave the column out"
        )
    return values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _id(ids: np.ndarray, code: int):
    value = ids[code]
    return value.item() if isinstance(value, np.generic) else value


def _repeats(users, items, timestamps, n_items: int, drop_invalid: bool):
    """None when every (user, item) pair is rated once; else the sorted order of the pairs
    (ties by timestamp if dropping, then by row) and the mask of each group's first."""
    n_users = int(users.max()) + 1
    kind = np.uint32 if n_users * n_items <= 2**32 else np.int64  # uint32 sorts 1.6× faster
    keys = users.astype(kind) * kind(n_items) + items.astype(kind)
    ordered = np.sort(keys)
    if not (ordered[1:] == ordered[:-1]).any():
        return None
    if drop_invalid and timestamps is not None:
        order = np.lexsort((np.arange(len(keys)), timestamps, keys))
    else:
        order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    return order, np.r_[True, ordered[1:] != ordered[:-1]]


def _unique_pairs(table: RatingsTable, raw, rows, drop_invalid: bool, field: str):
    """The rows to keep (None: all) so that every (user, item) pair is rated once."""
    found = _repeats(table.users, table.items, table.timestamps, table.n_items, drop_invalid)
    if found is None:
        return None, 0
    order, first = found
    count = int(len(first) - first.sum())
    if drop_invalid:
        return np.sort(order[np.r_[first[1:], True]]), count
    place = int(np.argmin(np.where(first, len(order), order)))
    start = int(np.flatnonzero(first[: place + 1])[-1])
    row, again = int(order[start]), int(order[place])
    user, item = _id(table.user_ids, table.users[row]), _id(table.item_ids, table.items[row])
    raise UsageError(
        f"{field}: {counted(count, 'duplicate (user, item) pair')}, the first user {user!r} "
        f"and item {item!r} at {raw.where(int(rows[row]))} and {raw.where(int(rows[again]))}; "
        f"keep one rating per pair, or set {_prefix(field)}drop_invalid = true to keep the last "
        "(by timestamp, else in the file)"
    )


def read_ratings(
    path, *, columns=None, scale=None, drop_invalid=False, field="problem.path"
) -> RatingsTable:
    """The ratings file at ``path`` (tab-separated ``user item rating [timestamp]`` without a
    header, CSV or Parquet with named columns, ``columns`` mapping the canonical names to the
    file's), checked; ``field`` names the file in messages, its prefix the other keys."""
    prefix = _prefix(field)
    names, given = check_columns(columns, prefix), check_scale(scale, prefix)
    require_flag(drop_invalid, f"{prefix}drop_invalid")
    raw = read_columns(Path(path), names, field)
    if raw.rows == 0:
        raise UsageError(f"{field}: {Path(path).name} holds no ratings; give at least one row")
    ratings = _numbers(raw.columns["rating"], field)
    keep, dropped = _valid(raw, ratings, given, drop_invalid, field)
    rows = np.arange(raw.rows) if keep.all() else np.flatnonzero(keep)
    if len(rows) == 0:
        raise UsageError(
            f"{field}: every rating in {Path(path).name} was dropped ({dropped['nan']} not "
            f"numbers, {dropped['out_of_scale']} outside {prefix}scale); check the rating column"
        )
    mask = None if len(rows) == raw.rows else pa.array(keep)
    kept = {key: col if mask is None else col.filter(mask) for key, col in raw.columns.items()}
    users, user_ids = _codes(raw, "user", rows, kept["user"], field)
    items, item_ids = _codes(raw, "item", rows, kept["item"], field)
    timestamps = _timestamps(raw, rows, kept.get("timestamp"), field)
    ratings = ratings if mask is None else ratings[rows]
    table = RatingsTable(users, items, ratings, timestamps, user_ids, item_ids, (0.0, 0.0))
    unique, dropped["duplicates"] = _unique_pairs(table, raw, rows, drop_invalid, field)
    if unique is not None:
        stamps = None if timestamps is None else timestamps[unique]
        users, items, ratings, timestamps = users[unique], items[unique], ratings[unique], stamps
    low, high = float(ratings.min()), float(ratings.max())
    lo, hi = given or raw.scale or (low, high)
    if not lo <= low <= high <= hi:  # a stored scale the ratings left
        lo, hi = low, high
    return RatingsTable(
        users, items, ratings, timestamps, user_ids, item_ids, (lo, hi), dropped=dropped
    )


def write_ratings(table: RatingsTable, path) -> None:
    """``table`` with its original ids: Parquet (``.parquet``/``.pq``; the scale kept in its
    metadata), CSV with a header (``.csv``), else tab-separated without one (u.data)."""
    ratings = table.ratings
    integral = bool(np.all(ratings == np.round(ratings)))
    columns = {
        "user": pc.take(pa.array(table.user_ids), pa.array(table.users)),
        "item": pc.take(pa.array(table.item_ids), pa.array(table.items)),
        "rating": pa.array(ratings.astype(np.int64) if integral else ratings),
    }
    if table.timestamps is not None:
        columns["timestamp"] = pa.array(table.timestamps)
    write_columns(pa.table(columns), Path(path), table.scale)
