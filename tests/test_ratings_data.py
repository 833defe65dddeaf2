"""Ratings files: the three layouts, ids, refusals, ``drop_invalid``, splits that never leak a
held-out rating into training, and synthetic ratings with a known floor (no JAX, seconds)."""

import gzip
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deeplinear.errors import UsageError
from deeplinear.problems.ratings_data import RatingsTable, read_ratings, write_ratings
from deeplinear.problems.ratings_split import split
from deeplinear.problems.ratings_synthetic import (
    expected_rating,
    floor_rmse,
    synthetic_ratings,
)

U_DATA = (
    "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n196\t51\t2\t880606923\n"
)


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def entries(table: RatingsTable) -> set:
    """(user id, item id, rating, timestamp) of every row: the table read as data."""
    stamps = table.timestamps if table.timestamps is not None else [None] * len(table)
    return {
        (table.user_ids[u], table.item_ids[i], float(r), None if t is None else int(t))
        for u, i, r, t in zip(table.users, table.items, table.ratings, stamps)
    }


def assert_same(a: RatingsTable, b: RatingsTable) -> None:
    for name in ("users", "items", "ratings", "timestamps", "user_ids", "item_ids"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype.kind == y.dtype.kind and np.array_equal(x, y), name
    assert a.scale == b.scale


# --- reading -------------------------------------------------------------------------------


def test_u_data_layout_is_read_with_ids_remapped_in_sorted_order(tmp_path):
    table = read_ratings(write(tmp_path, "u.data", U_DATA))
    assert table.users.dtype == np.int32 and table.items.dtype == np.int32
    assert table.ratings.dtype == np.float64 and table.timestamps.dtype == np.int64
    assert list(table.user_ids) == [22, 186, 196] and list(table.item_ids) == [51, 242, 302, 377]
    assert list(table.users) == [2, 1, 0, 2] and list(table.items) == [1, 2, 3, 0]
    assert list(table.ratings) == [3, 3, 1, 2] and table.timestamps[0] == 881250949
    assert table.scale == (1.0, 3.0) and table.shape == (3, 4) and len(table) == 4
    assert table.dropped == {"nan": 0, "out_of_scale": 0, "duplicates": 0}


def test_three_columns_without_timestamp_and_other_delimiters(tmp_path):
    table = read_ratings(write(tmp_path, "r.txt", "1 10 4.5\n2 10 3\n"), scale=(0.5, 5))
    assert table.timestamps is None and list(table.ratings) == [4.5, 3.0]
    assert table.scale == (0.5, 5.0)
    ml1m = read_ratings(write(tmp_path, "ratings.dat", "1::1193::5::978300760\n2::661::3::9\n"))
    assert list(ml1m.item_ids) == [661, 1193] and list(ml1m.timestamps) == [978300760, 9]
    headerless_csv = read_ratings(write(tmp_path, "plain.csv", "a,x,1\nb,x,2\n"))
    assert list(headerless_csv.user_ids) == ["a", "b"]


def test_gzipped_text_is_read_through(tmp_path):
    path = tmp_path / "u.data.gz"
    path.write_bytes(gzip.compress(U_DATA.encode()))
    assert_same(read_ratings(path), read_ratings(write(tmp_path, "u.data", U_DATA)))


def test_csv_header_with_string_ids_and_column_mapping(tmp_path):
    text = "movieId,userId,rating,timestamp\nm9,bob,4,5\nm1,alice,5,6\nm9,alice,2,7\n"
    path = write(tmp_path, "ratings.csv", text)
    table = read_ratings(path, columns={"user": "userId", "item": "movieId"})
    assert list(table.user_ids) == ["alice", "bob"] and list(table.item_ids) == ["m1", "m9"]
    assert entries(table) == {
        ("bob", "m9", 4.0, 5),
        ("alice", "m1", 5.0, 6),
        ("alice", "m9", 2.0, 7),
    }
    plain = read_ratings(write(tmp_path, "p.csv", "user,item,rating\n1,2,3\n"))
    assert plain.timestamps is None and plain.user_ids.dtype.kind == "i"


def test_parquet_with_column_mapping(tmp_path):
    path = tmp_path / "r.parquet"
    data = {"uid": ["u2", "u1"], "iid": [7, 3], "stars": [1.0, 2.0], "ts": [10, 11]}
    pq.write_table(pa.table(data), path)
    names = {"user": "uid", "item": "iid", "rating": "stars", "timestamp": "ts"}
    table = read_ratings(path, columns=names)
    assert entries(table) == {("u2", 7, 1.0, 10), ("u1", 3, 2.0, 11)}
    with pytest.raises(UsageError, match=r"no column 'user', 'item', 'rating' \(found: 'uid'"):
        read_ratings(path)


def test_ids_that_change_type_between_blocks_are_read_as_text(tmp_path):
    rows = [f"{u}\t{u % 7}\t3\n" for u in range(200_000)] + ["user-x\t1\t4\n"]
    table = read_ratings(write(tmp_path, "mixed.tsv", "".join(rows)))
    assert len(table) == 200_001 and "user-x" in set(table.user_ids)


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".parquet"])
def test_round_trip_with_string_ids(tmp_path, suffix):
    text = "user,item,rating,timestamp\nzed,b,1,3\namy,a,5,1\namy,b,2.5,2\n"
    table = read_ratings(write(tmp_path, "in.csv", text), scale=(0.5, 5))
    write_ratings(table, tmp_path / f"out{suffix}")
    back = read_ratings(tmp_path / f"out{suffix}", scale=(0.5, 5))
    assert_same(back, table)
    assert list(back.user_ids) == ["amy", "zed"]


@pytest.mark.parametrize("suffix", [".data", ".csv", ".parquet"])
def test_round_trip_of_synthetic_ratings(tmp_path, suffix):
    table = synthetic_ratings(users=30, items=40, ratings=400, rank=2, noise=0.5, seed=3)
    write_ratings(table, tmp_path / f"s{suffix}")
    back = read_ratings(tmp_path / f"s{suffix}", scale=table.scale)
    assert_same(back, table)
    if suffix == ".parquet":  # the scale travels in the metadata
        assert read_ratings(tmp_path / f"s{suffix}").scale == table.scale


# --- refusals: one line naming the field and the fix ------------------------------------------


REFUSED = {
    "missing file": (None, {}, r"^problem\.path: '.*nowhere\.csv' does not exist; give the path"),
    "empty file": ("", {}, r"^problem\.path: '.*' is empty; give a file with one rating a row$"),
    "header only": (
        "user,item,rating\n",
        {},
        r"^problem\.path: bad\.csv holds no ratings; give at least one row$",
    ),
    "missing column": (
        "userId,movieId,rating\n1,2,3\n",
        {},
        r"^problem\.path: bad\.csv has no column 'user', 'item' \(found: 'userId', 'movieId', "
        r"'rating'\); name the file's columns with problem\.columns = \{user = ",
    ),
    "a first line of data with a bad rating": (
        "1\t1\tx\n",
        {},
        r"no column 'user', 'item', 'rating' \(found: '1', '1', 'x'\); name the file's columns "
        r".* \(a first line of data needs a number as its third field, the rating\)$",
    ),
    "missing mapped timestamp": (
        "u,i,rating\n1,2,3\n",
        {"columns": {"user": "u", "item": "i", "timestamp": "when"}},
        r"no column 'when' \(found: 'u', 'i', 'rating'\)",
    ),
    "duplicate": (
        "user,item,rating\n1,2,3\n1,3,3\n1,2,4\n5,6,1\n1,3,2\n",
        {},
        r"^problem\.path: 2 duplicate \(user, item\) pairs, the first user 1 and item 2 at line 2 "
        r"and line 4; keep one rating per pair, or set problem\.drop_invalid = true to keep the "
        r"last \(by timestamp, else in the file\)$",
    ),
    "nan": (
        "user,item,rating\n1,2,3\n1,3,NaN\n",
        {},
        r"^problem\.path: the rating at line 3 is missing, not a number \(1 such row\); fix them,"
        r" or set problem\.drop_invalid = true to drop them$",
    ),
    "not a number": (
        "user,item,rating\n1,2,3\n1,3,four\n2,3,\n",
        {},
        r"^problem\.path: the rating at line 3 is 'four', not a number \(2 such rows\)",
    ),
    "out of scale": (
        "user,item,rating\n1,2,3\n1,3,6\n",
        {"scale": (1, 5)},
        r"^problem\.path: the rating 6 at line 3 is outside problem\.scale = \[1, 5\] \(1 such "
        r"row\); fix them, widen problem\.scale, or set problem\.drop_invalid = true",
    ),
    "ragged rows": (
        "1\t2\t3\t4\n1\t2\n",
        {},
        r"^problem\.path: cannot read bad\.csv as delimited text \(.*\); give every row the same "
        r"columns",
    ),
    "timestamp": (
        "user,item,rating,timestamp\n1,2,3,yesterday\n",
        {},
        r"^problem\.path: the timestamp at line 2 is 'yesterday', not an integer; give integer ",
    ),
    "columns on a headerless file": (
        "1,2,3\n",
        {"columns": {"user": "uid"}},
        r"^problem\.columns names header columns, but bad\.csv has no header \(its first line is "
        r"data: '1 2 3'\); remove problem\.columns or add a header line$",
    ),
    "bad scale": ("1,2,3\n", {"scale": (5, 1)}, r"^problem\.scale must be \[lo, hi\], finite"),
    "bad columns key": (
        "1,2,3\n",
        {"columns": {"users": "u"}},
        r"^unknown key problem\.columns\.users \(allowed here: item, rating, timestamp, user\)$",
    ),
    "bad drop_invalid": ("1,2,3\n", {"drop_invalid": 1}, r"problem\.drop_invalid must be true"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refusals_name_the_field_and_the_fix(tmp_path, case):
    text, options, message = REFUSED[case]
    path = tmp_path / ("nowhere.csv" if text is None else "bad.csv")
    if text is not None:
        path.write_text(text)
    with pytest.raises(UsageError, match=message) as refused:
        read_ratings(path, **options)
    assert "\n" not in str(refused.value)


def test_unreadable_formats_are_refused(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(UsageError, match=r"^problem\.path: cannot read bad\.parquet as Parquet"):
        read_ratings(tmp_path / "bad.parquet")
    (tmp_path / "bin.dat").write_bytes(bytes(range(256)))
    with pytest.raises(UsageError, match=r"bin\.dat is neither UTF-8 text nor Parquet; give a"):
        read_ratings(tmp_path / "bin.dat")
    with pytest.raises(UsageError, match=r"^data\.ratings: "):
        read_ratings(tmp_path / "absent.tsv", field="data.ratings")


def test_parquet_rows_are_named_by_row(tmp_path):
    pq.write_table(
        pa.table({"user": [1, 1], "item": [2, 2], "rating": [3.0, 4.0]}), tmp_path / "d.pq"
    )
    with pytest.raises(UsageError, match=r"at row 1 and row 2;"):
        read_ratings(tmp_path / "d.pq")


# --- drop_invalid ----------------------------------------------------------------------------


def test_drop_invalid_drops_and_counts_each_kind(tmp_path):
    text = (
        "user,item,rating,timestamp\n"
        "a,x,3,10\n"  # kept
        "a,y,NaN,11\n"  # nan
        "a,z,nope,12\n"  # nan (not a number)
        "b,x,9,13\n"  # out of scale
        "b,y,0,14\n"  # out of scale
        "c,x,5,30\n"  # the later of a repeated pair: kept although it comes first
        "c,x,1,20\n"  # duplicate, earlier: dropped
        "d,q,2,1\n"  # kept
    )
    table = read_ratings(write(tmp_path, "r.csv", text), scale=(1, 5), drop_invalid=True)
    assert table.dropped == {"nan": 2, "out_of_scale": 2, "duplicates": 1}
    assert entries(table) == {("a", "x", 3.0, 10), ("c", "x", 5.0, 30), ("d", "q", 2.0, 1)}
    assert list(table.user_ids) == ["a", "c", "d"] and list(table.item_ids) == ["q", "x"]


def test_drop_invalid_keeps_the_last_in_the_file_without_timestamps(tmp_path):
    table = read_ratings(write(tmp_path, "r.tsv", "1\t1\t2\n1\t1\t4\n2\t1\t3\n"), drop_invalid=True)
    assert entries(table) == {(1, 1, 4.0, None), (2, 1, 3.0, None)}
    assert table.dropped["duplicates"] == 1
    with pytest.raises(
        UsageError,
        match=r"every rating in r\.tsv was dropped \(1 not numbers, 1 outside problem\.scale\)",
    ):
        read_ratings(
            write(tmp_path, "r.tsv", "1\t1\t2\n1\t2\tx\n"), scale=(3, 5), drop_invalid=True
        )


# --- splits ----------------------------------------------------------------------------------


def test_random_split_respects_the_fractions_and_the_seed():
    table = synthetic_ratings(users=200, items=300, ratings=10_000, rank=3, noise=0.5, seed=0)
    one = split(table, test_fraction=0.2, validation_fraction=0.1, seed=4)
    assert one.counts["test"] + one.cold >= 2000 >= one.counts["test"]
    assert len(one.test) + len(one.validation) + len(one.excluded) == 3000
    assert len(one.train) == 7000
    again = split(table, test_fraction=0.2, validation_fraction=0.1, seed=4)
    other = split(table, test_fraction=0.2, validation_fraction=0.1, seed=5)
    assert np.array_equal(one.test, again.test) and not np.array_equal(one.test, other.test)


def test_time_split_holds_out_each_users_latest_ratings():
    table = synthetic_ratings(users=80, items=400, ratings=4000, rank=2, noise=0.5, seed=1)
    parts = split(table, test_fraction=0.1, validation_fraction=0.2, how="time")
    role = np.zeros(len(table), int)
    role[parts.validation], role[parts.test], role[parts.excluded] = 1, 2, -1
    for user in range(table.n_users):
        mine = np.flatnonzero(table.users == user)
        order = mine[np.argsort(table.timestamps[mine], kind="stable")]
        n = len(mine)
        n_test = min(math.ceil(0.1 * n), n - 1)
        n_validation = min(math.ceil(round(0.2 * n, 9)), n - 1 - n_test)
        expected = [0] * (n - n_test - n_validation) + [1] * n_validation + [2] * n_test
        got = role[order]
        assert np.all((got == np.array(expected)) | (got == -1)), user
        assert (got == 0).sum() == n - n_test - n_validation >= 1


def test_time_split_keeps_a_users_only_rating_in_training():
    table = RatingsTable(
        users=np.array([0, 1, 1], np.int32),
        items=np.array([0, 0, 1], np.int32),
        ratings=np.array([1.0, 2.0, 3.0]),
        timestamps=np.array([5, 1, 2]),
        user_ids=np.array([10, 11]),
        item_ids=np.array([20, 21]),
        scale=(1.0, 3.0),
    )
    parts = split(table, test_fraction=0.5, how="time")
    assert list(parts.train) == [0, 1] and list(parts.excluded) == [2] and parts.cold == 1
    assert parts.counts == {"train": 2, "validation": 0, "test": 0, "cold": 1}


def test_cold_users_and_items_are_dropped_from_held_out_and_counted():
    # item 2 is rated once (by user 0, the latest): held out, it has no training rating.
    table = RatingsTable(
        users=np.array([0, 0, 0, 1, 1], np.int32),
        items=np.array([0, 1, 2, 0, 1], np.int32),
        ratings=np.ones(5),
        timestamps=np.array([1, 2, 9, 1, 2]),
        user_ids=np.arange(2),
        item_ids=np.arange(3),
        scale=(1.0, 1.0),
    )
    parts = split(table, test_fraction=0.3, how="time")
    assert list(parts.excluded) == [2] and parts.cold == 1
    assert list(parts.test) == [4] and list(parts.train) == [0, 1, 3]


@pytest.mark.parametrize("how", ["random", "time"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_held_out_entries_never_reach_training(how, seed):
    table = synthetic_ratings(
        users=60, items=500, ratings=1500, rank=2, noise=1.0, seed=seed, popularity=1.5
    )
    parts = split(table, test_fraction=0.25, validation_fraction=0.15, seed=seed, how=how)
    sets = [set(parts.train), set(parts.validation), set(parts.test), set(parts.excluded)]
    assert sum(map(len, sets)) == len(table) and set.union(*sets) == set(range(len(table)))
    for a in range(4):
        for b in range(a + 1, 4):
            assert not sets[a] & sets[b]
    for part in (parts.train, parts.validation, parts.test):
        assert np.all(np.diff(part) > 0)
    users, items, _ = table.take(parts.train)
    trained = set(zip(users.tolist(), items.tolist()))
    for held in (parts.test, parts.validation):
        pairs = set(zip(table.users[held].tolist(), table.items[held].tolist()))
        assert not trained & pairs
        assert set(table.users[held]) <= set(users) and set(table.items[held]) <= set(items)
    assert parts.cold > 0  # sparse items: the rule was exercised
    for user, item in zip(table.users[parts.excluded], table.items[parts.excluded]):
        assert user not in set(users) or item not in set(items)


SPLIT_REFUSED = [
    ({"test_fraction": 1.0}, r"^problem\.test_fraction must be in \[0, 1\), got 1\.0$"),
    ({"test_fraction": -0.1}, r"^problem\.test_fraction must be ≥ 0, got -0\.1$"),
    ({"validation_fraction": "a"}, r"^problem\.validation_fraction must be a number"),
    (
        {"test_fraction": 0.6, "validation_fraction": 0.4},
        r"^problem\.test_fraction \+ problem\.validation_fraction must be < 1 \(training needs",
    ),
    ({"how": "latest"}, r"^problem\.split must be one of 'random', 'time', got 'latest'$"),
    ({"seed": -1}, r"^problem\.split_seed must be ≥ 0, got -1$"),
]


@pytest.mark.parametrize(("options", "message"), SPLIT_REFUSED)
def test_split_refusals(options, message):
    table = synthetic_ratings(users=5, items=5, ratings=20, rank=1, noise=0.1, seed=0)
    with pytest.raises(UsageError, match=message):
        split(table, **options)


def test_time_split_needs_timestamps(tmp_path):
    table = read_ratings(write(tmp_path, "r.tsv", "1\t1\t2\n1\t2\t4\n"))
    with pytest.raises(UsageError, match=r'^problem\.split = "time" needs timestamps.*use '):
        split(table, how="time")


# --- synthetic ratings -------------------------------------------------------------------------


def test_synthetic_ratings_shape_scale_count_and_uniqueness():
    table = synthetic_ratings(users=300, items=200, ratings=12_000, rank=4, noise=0.7, seed=2)
    assert len(table) == 12_000 and table.n_users == 300 and table.n_items <= 200
    keys = table.users.astype(np.int64) * table.n_items + table.items
    assert len(np.unique(keys)) == len(keys)
    assert set(np.unique(table.ratings)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert table.scale == (1.0, 5.0) and np.bincount(table.users).min() >= 5
    assert table.timestamps.dtype == np.int64 and len(np.unique(table.timestamps)) > 11_000
    assert 3.0 < table.ratings.mean() < 4.0 and 0.8 < table.ratings.std() < 1.4
    same = synthetic_ratings(users=300, items=200, ratings=12_000, rank=4, noise=0.7, seed=2)
    assert_same(same, table)
    assert np.array_equal(same.truth, table.truth)


def test_popularity_skews_which_items_are_rated():
    flat, skewed = (
        synthetic_ratings(
            users=200, items=1000, ratings=10_000, rank=2, noise=0.5, seed=0, popularity=p
        )
        for p in (0.0, 1.5)
    )
    top = [np.sort(np.bincount(t.items))[-10:].sum() / len(t) for t in (flat, skewed)]
    assert top[0] < 0.03 < 0.15 < top[1]


def test_every_pair_rated_takes_the_exact_fill():
    table = synthetic_ratings(users=20, items=30, ratings=600, rank=2, noise=0.5, seed=0)
    assert len(table) == 600 and table.shape == (20, 30)
    keys = table.users.astype(np.int64) * 30 + table.items
    assert np.array_equal(np.sort(keys), np.arange(600))


def test_the_statistical_floor_is_the_best_predictors_rmse():
    table = synthetic_ratings(users=400, items=300, ratings=40_000, rank=5, noise=0.8, seed=7)
    mean, _ = expected_rating(table.truth, table.noise, table.scale)
    best = np.sqrt(np.mean((mean - table.ratings) ** 2))
    floor = floor_rmse(table)
    assert abs(best - floor) < 0.01 * floor
    clipped = np.sqrt(np.mean((np.clip(table.truth, 1, 5) - table.ratings) ** 2))
    assert best < clipped
    exact = synthetic_ratings(users=40, items=30, ratings=600, rank=2, noise=0.0, seed=7)
    assert floor_rmse(exact) == 0.0
    assert np.array_equal(np.clip(np.floor(exact.truth + 0.5), 1, 5), exact.ratings)


def test_synthetic_refusals():
    with pytest.raises(UsageError, match=r"synthetic_ratings\(ratings\) must be ≤ 200, got 201"):
        synthetic_ratings(users=10, items=20, ratings=201, rank=1, noise=0.1, seed=0)
    with pytest.raises(UsageError, match=r"synthetic_ratings\(ratings\) must be ≥ 10, got 9"):
        synthetic_ratings(users=10, items=20, ratings=9, rank=1, noise=0.1, seed=0)
    with pytest.raises(UsageError, match=r"synthetic_ratings\(scale\) must be \(lo, hi\) whole"):
        synthetic_ratings(users=10, items=20, ratings=50, rank=1, noise=0.1, seed=0, scale=(1, 2.5))
    with pytest.raises(UsageError, match=r"floor_rmse\(table\) needs the scores and noise"):
        floor_rmse(
            RatingsTable(
                np.zeros(1, np.int32),
                np.zeros(1, np.int32),
                np.ones(1),
                None,
                np.arange(1),
                np.arange(1),
                (1.0, 1.0),
            )
        )
