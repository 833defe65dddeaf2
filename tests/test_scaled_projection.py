"""ScaledGD's scaled projection (Tong, Ma & Chi 2021, the completion algorithm): the lab's
Gram-form P_B against the NumPy port's dense formula, and whole projected runs against the
port's on the same arrays."""

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_scaledgd as bench
import scaledgd_reference as ref
from deeplinear.core.backend import jnp
from deeplinear.diagnostics.probes import product_singular_values
from deeplinear.errors import UsageError
from deeplinear.experiment import config as configs
from deeplinear.experiment import execution
from deeplinear.loop import runner
from deeplinear.methods import make_method
from deeplinear.methods._structured import scaled_projection


@settings(max_examples=25, deadline=None)
@given(
    n1=st.integers(2, 40), n2=st.integers(2, 40), r=st.integers(1, 5),
    quantile=st.floats(0.0, 1.0), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_projection_is_the_dense_formula_and_bounds_every_row(n1, n2, r, quantile, seed):
    rng = np.random.default_rng(seed)
    L = rng.standard_normal((n1, r)) * rng.lognormal(0, 2, (n1, 1))  # some rows far larger
    R = rng.standard_normal((n2, r)) * rng.lognormal(0, 2, (n2, 1))
    rows = np.sqrt(n1) * np.linalg.norm(L @ R.T, axis=1)
    bound = float(np.quantile(rows, quantile))
    lab = scaled_projection((jnp.asarray(L), jnp.asarray(R.T)), bound)
    port = ref.scaled_projection(L, R, bound)
    np.testing.assert_allclose(np.asarray(lab[0]), port[0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(np.asarray(lab[1]).T, port[1], rtol=1e-12, atol=0)
    new_rows = np.sqrt(n1) * np.linalg.norm(np.asarray(lab[0]) @ R.T, axis=1)  # old R
    assert np.all(new_rows <= bound * (1 + 1e-12))
    inside = rows < bound * (1 - 1e-12)  # clear of the bound (the two formulas differ in ulps)
    np.testing.assert_array_equal(np.asarray(lab[0])[inside], L[inside])  # untouched


def test_product_singular_values_are_numpys():
    rng = np.random.default_rng(3)
    L, W2 = rng.standard_normal((50, 4)), rng.standard_normal((4, 70))
    got = np.asarray(product_singular_values(jnp.asarray(L), jnp.asarray(W2)))
    assert got[0] == pytest.approx(np.linalg.norm(L @ W2, 2), rel=1e-12)
    np.testing.assert_allclose(got, np.linalg.svd(L @ W2, compute_uv=False)[:4], rtol=1e-10)


N, RANK, P, PROJECTION, ETA = 120, 4, 0.15, 1.0, 0.5


def _setup(hidden=(RANK,)):
    return execution.build(
        configs.parse(
            {
                "seed": 2,
                "checkpoints": 0,
                "problem": {
                    "kind": "completion", "rows": N, "cols": N, "rank": RANK,
                    "condition_number": 5.0, "singular_values": "linear",
                    "vectors": "rademacher", "probability": P,
                },
                "model": {"hidden": list(hidden)},
                "init": {"kind": "spectral_estimate"},
                "methods": [{"name": "scaled-gd", "learning_rates": [1.0]}],
            }
        )
    )  # fmt: skip


def test_projected_scaledgd_is_the_ports_projected_run():
    setup = _setup()
    problem = bench.reference_problem(setup.problem, P)
    L0, R0 = np.array(setup.weights[0]), np.array(setup.weights[1]).T
    bound = PROJECTION * np.sqrt(RANK) * np.linalg.norm(L0 @ R0.T, 2)
    assert not np.allclose(ref.scaled_projection(L0, R0, bound)[0], L0)  # the start is clipped
    steps = 60
    port = ref.run(problem, RANK, "scaledgd", ETA, steps, 0.0, (L0, R0), projection=PROJECTION)
    method = make_method("scaled-gd", projection=PROJECTION)
    lab = runner.run(method, setup.objective, setup.weights, [ETA / (2 * P)], steps,
                     probe=setup.probe)  # fmt: skip
    errors = np.asarray(lab.curves[0].extras["recovery_error"])
    assert errors.shape == port.shape == (steps + 1,)
    # step 0 is the projected start; every iterate the port's (its error to 1e-9 relative)
    np.testing.assert_allclose(errors, port, rtol=1e-9, atol=1e-13)
    _, lab_bound = lab.final_state
    assert float(lab_bound[0]) == pytest.approx(bound, rel=1e-12)
    plain = runner.run(make_method("scaled-gd"), setup.objective, setup.weights,
                       [ETA / (2 * P)], 1, probe=setup.probe)  # fmt: skip
    assert plain.curves[0].extras["recovery_error"][0] != pytest.approx(errors[0], rel=1e-6)


def test_projection_refuses_more_than_two_factors():
    setup = _setup(hidden=(RANK, RANK))
    with pytest.raises(UsageError, match="projection is defined for two factors"):
        runner.run(make_method("scaled-gd", projection=1.0), setup.objective, setup.weights,
                   [0.1], 2)  # fmt: skip


@pytest.mark.parametrize("value", [-1.0, float("nan"), "1"])
def test_projection_must_be_a_number_at_least_zero(value):
    with pytest.raises(UsageError, match=r"scaled-gd\.projection"):
        make_method("scaled-gd", projection=value)
