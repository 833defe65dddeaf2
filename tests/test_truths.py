"""A measured problem's truth without a full SVD (issue 22, item 1): a dense low-rank truth by
the range finder, factors U, s, V by two QRs, each against NumPy's full SVD of the dense
product; a truth that does not explain the values, and inconsistent factors, refused in one
line; the memory estimate counting a dense truth."""

import io
import tomllib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deeplinear.errors import UsageError
from deeplinear.experiment import budget, config
from deeplinear.problems import truths
from deeplinear.problems.measured import npz_measured_problem


def low_rank(rng, n1, n2, r, spread=1.3):
    left, right = rng.standard_normal((n1, r)), rng.standard_normal((r, n2))
    return left @ np.diag(np.logspace(0, -spread, r)) @ right


def assert_modes_of(M, modes, rtol=1e-12):
    U, s, V = modes
    sv = np.linalg.svd(M, compute_uv=False)
    rank = np.linalg.matrix_rank(M)  # the same cut-off: max(n1, n2)·ε·σ₁
    assert s.shape == (rank,) and np.all(np.diff(s) <= 0)
    np.testing.assert_allclose(s, sv[:rank], rtol=rtol)
    np.testing.assert_allclose(U.T @ U, np.eye(rank), atol=1e-13)
    np.testing.assert_allclose(V.T @ V, np.eye(rank), atol=1e-13)
    assert np.linalg.norm((U * s) @ V.T - M) <= 1e-13 * np.linalg.norm(M)


@settings(max_examples=25, deadline=None, database=None)
@given(
    n1=st.integers(1, 160),
    n2=st.integers(1, 160),
    r=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_a_dense_truth_has_the_modes_of_its_svd(n1, n2, r, seed):
    rng = np.random.default_rng(seed)
    M = low_rank(rng, n1, n2, min(r, n1, n2))
    assert_modes_of(M, truths.dense_modes(M, "problem.path"))


def test_a_large_low_rank_truth_takes_the_range_finder_and_a_full_rank_one_the_svd(monkeypatch):
    rng = np.random.default_rng(0)
    calls, original = [], np.linalg.svd

    def modes(M):
        def counted(A, *args, **kwargs):
            calls.append(A.shape)
            return original(A, *args, **kwargs)

        monkeypatch.setattr(np.linalg, "svd", counted)
        try:
            return truths.dense_modes(M, "f")
        finally:
            monkeypatch.setattr(np.linalg, "svd", original)

    M = low_rank(rng, 600, 500, 7)
    assert_modes_of(M, modes(M))
    assert calls and all(min(shape) <= 16 + truths.OVERSAMPLING for shape in calls), calls
    calls.clear()
    full = rng.standard_normal((120, 100))
    assert_modes_of(full, modes(full))
    assert calls[-1] == (120, 100)  # not low rank: the SVD it needs


@settings(max_examples=25, deadline=None, database=None)
@given(
    n1=st.integers(1, 60),
    n2=st.integers(1, 60),
    k=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_factors_have_the_modes_of_their_product(n1, n2, k, seed):
    rng = np.random.default_rng(seed)
    U, V = rng.standard_normal((n1, k)), rng.standard_normal((n2, k))  # not orthonormal
    s = rng.uniform(0.1, 3, k)
    assert_modes_of((U * s) @ V.T, truths.factor_modes(U, s, V, "f"), rtol=1e-11)


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def completion_file(rng, n1=40, n2=30, r=3, m=600, noise=0.0):
    M = low_rank(rng, n1, n2, r)
    pairs = rng.choice(n1 * n2, m, replace=False)
    rows, cols = pairs // n2, pairs % n2
    values = M[rows, cols] + noise * np.std(M) * rng.standard_normal(m)
    return M, {"rows": rows, "cols": cols, "values": values, "shape": np.array([n1, n2])}


@pytest.mark.parametrize("kind", ["completion", "sensing"])
def test_factors_in_the_npz_give_the_dense_truths_problem(tmp_path, kind):
    rng = np.random.default_rng(3)
    M, arrays = completion_file(rng)
    if kind == "sensing":
        operators = rng.standard_normal((300, *M.shape))
        arrays = {"operators": operators, "values": operators.reshape(300, -1) @ M.ravel(),
                  "shape": arrays["shape"]}  # fmt: skip
    u, sv, _ = np.linalg.svd(M)
    left = u[:, :3] * sv[:3] @ rng.standard_normal((3, 3))  # a basis of M's range, not orthonormal
    factors = {"U": left, "s": np.ones(3), "V": np.linalg.lstsq(left, M, rcond=None)[0].T}
    (tmp_path / "dense.npz").write_bytes(npz(**arrays, truth=M))
    (tmp_path / "factors.npz").write_bytes(npz(**arrays, **factors))
    dense = npz_measured_problem(tmp_path / "dense.npz", kind)
    given = npz_measured_problem(tmp_path / "factors.npz", kind)
    np.testing.assert_allclose(given.s, dense.s, rtol=1e-12)
    np.testing.assert_allclose((given.U * given.s) @ given.V.T, M, atol=1e-12)


@pytest.mark.parametrize(
    "change, words",
    [
        (
            lambda M, a, rng: {"truth": M[::-1]},
            "truth does not match the observed values",
        ),
        (
            lambda M, a, rng: {"truth": low_rank(rng, *M.shape, 3)},
            "truth does not match the observed values",
        ),
        (
            lambda M, a, rng: {
                "U": rng.standard_normal((40, 2)),
                "s": np.ones(2),
                "V": rng.standard_normal((30, 2)),
            },
            "U diag(s) Vᵀ does not match",
        ),
        (
            lambda M, a, rng: {"U": np.ones((40, 2)), "s": np.ones(3), "V": np.ones((30, 3))},
            "U has shape (40, 2), expected (40, 3)",
        ),
        (lambda M, a, rng: {"U": np.ones((40, 2)), "s": np.ones(2)}, "not V"),
        (
            lambda M, a, rng: {
                "U": np.ones((40, 1)),
                "s": np.ones(1),
                "V": np.ones((30, 1)),
                "truth": M,
            },
            "both truth and U, s, V",
        ),
        (
            lambda M, a, rng: {"U": np.zeros((40, 1)), "s": np.ones(1), "V": np.ones((30, 1))},
            "is zero",
        ),
    ],
    ids=["shuffled", "another", "other-factors", "factor-shape", "missing-V", "both", "zero"],
)
def test_a_truth_that_does_not_fit_is_refused_in_one_line(tmp_path, change, words):
    rng = np.random.default_rng(5)
    M, arrays = completion_file(rng)
    (tmp_path / "m.npz").write_bytes(npz(**arrays, **change(M, arrays, rng)))
    with pytest.raises(UsageError) as error:
        npz_measured_problem(tmp_path / "m.npz", "completion")
    message = str(error.value)
    assert "\n" not in message and message.startswith("problem.path") and words in message


def test_label_noise_as_large_as_the_signal_is_not_a_mismatch(tmp_path):
    rng = np.random.default_rng(6)
    M, arrays = completion_file(rng, noise=1.0)
    (tmp_path / "m.npz").write_bytes(npz(**arrays, truth=M))
    assert npz_measured_problem(tmp_path / "m.npz", "completion").rank == 3


def test_the_memory_estimate_counts_a_dense_truth_and_not_factors(tmp_path):
    rng = np.random.default_rng(7)
    M, arrays = completion_file(rng, n1=400, n2=300, m=5000)
    u, sv, vt = np.linalg.svd(M, full_matrices=False)
    (tmp_path / "dense.npz").write_bytes(npz(**arrays, truth=M))
    (tmp_path / "factors.npz").write_bytes(npz(**arrays, U=u[:, :3], s=sv[:3], V=vt[:3].T))
    bytes_of = {}
    for name in ("dense", "factors"):
        text = (
            f'steps = 5\n[problem]\nkind = "completion"\npath = "{name}.npz"\n[model]\n'
            'hidden = [3]\n[[methods]]\nname = "gd"\nlearning_rates = [0.01]\n'
        )
        parsed = config.parse(tomllib.loads(text), base_dir=tmp_path, source=text)
        assert budget.dims(parsed).dense_truth == (400 * 300 if name == "dense" else 0)
        bytes_of[name] = budget.estimate_run(parsed).bytes
    assert bytes_of["dense"] - bytes_of["factors"] >= 3 * 400 * 300 * 8


def test_a_truth_that_does_not_fit_is_refused_before_the_estimate(tmp_path):
    """``check_data`` (what ``sweep`` calls before it says what the work costs) refuses it too:
    the fit is judged from the arrays as given, without factorizing them."""
    from deeplinear.problems.kinds import problem_kind

    rng = np.random.default_rng(8)
    M, arrays = completion_file(rng)
    other = low_rank(rng, *M.shape, 3)
    u, sv, vt = np.linalg.svd(other, full_matrices=False)
    for name, truth in (("dense", {"truth": other}), ("factors", {"U": u, "s": sv, "V": vt.T})):
        (tmp_path / f"{name}.npz").write_bytes(npz(**arrays, **truth))
        with pytest.raises(UsageError, match="does not match the observed values"):
            problem_kind("completion").check_data({"path": f"{name}.npz"}, tmp_path)
    (tmp_path / "right.npz").write_bytes(npz(**arrays, truth=M))
    problem_kind("completion").check_data({"path": "right.npz"}, tmp_path)
