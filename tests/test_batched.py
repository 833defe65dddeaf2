"""The throughput kernel computes exactly what ``gd`` computes, run by run."""

import numpy as np

from deeplinear import batched, runner
from deeplinear._backend import jnp
from deeplinear.methods import make_method
from deeplinear.problem import notebook_problem


def test_batched_gd_equals_the_compiled_loop():
    problems = [notebook_problem(seed) for seed in range(4)]
    rates = np.array([1e-6, 1e-5, 2e-6, 5e-6])
    objectives = [p.objective() for p, _ in problems]
    stack = lambda xs: jnp.asarray(np.stack(xs))
    W1, W2 = (stack([w[i] for _, w in problems]) for i in (0, 1))
    L = stack([o.factor for o in objectives])
    T = stack([o.target for o in objectives])
    out = batched.gd(W1, W2, L, T, jnp.asarray(rates), 50, tile=2)
    losses = batched.loss(
        *(jnp.moveaxis(x, 0, -1) for x in (*out, L, T)),
        jnp.asarray([float(o.floor) for o in objectives]),
    )
    for i, ((_, w), objective) in enumerate(zip(problems, objectives)):
        curve = runner.run(make_method("gd"), objective, w, [rates[i]], 50).curves[0]
        np.testing.assert_allclose(float(losses[i]), curve.loss[-1], rtol=1e-12)


def test_pallas_kernel_equals_the_xla_kernel():
    """On a CPU the Pallas kernel runs in Pallas's interpreter: same lowering input as on a GPU.
    The batch (5) is not a multiple of the block (8): padding runs must not leak into results."""
    rng = np.random.default_rng(3)
    W1, W2, L, T = (
        jnp.asarray(scale * rng.standard_normal(shape))
        for scale, shape in ((1, (5, 10, 6)), (1, (5, 6, 6)), (30, (5, 6, 6)), (1, (5, 10, 6)))
    )
    lr = jnp.asarray([1e-6, 2e-6, 5e-7, 1e-6, 3e-6])
    expected = batched.gd(W1, W2, L, T, lr, 6)
    got = batched.gd_pallas(W1, W2, L, T, lr, 6, block=8)
    for ours, theirs, start in zip(got, expected, (W1, W2)):
        assert float(jnp.max(jnp.abs(theirs - start))) > 1e-3  # the steps moved the weights
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-13)


def test_batched_gd_pads_and_splits_like_plain_numpy():
    """7 runs over every local device with tiles of 3: padding runs must not leak into results.
    Reference: the update written out in NumPy, run by run."""
    rng = np.random.default_rng(5)
    W1, W2, L, T = (
        scale * rng.standard_normal(shape)
        for scale, shape in ((1, (7, 10, 6)), (1, (7, 6, 6)), (3, (7, 8, 6)), (1, (7, 10, 8)))
    )
    lr = np.linspace(1e-5, 4e-5, 7)
    got = batched.gd(*map(jnp.asarray, (W1, W2, L, T, lr)), 20, tile=3)
    for r in range(7):
        w1, w2 = W1[r], W2[r]
        for _ in range(20):
            G = 2 * (w1 @ w2 @ L[r].T - T[r]) @ L[r]
            w1, w2 = w1 - lr[r] * G @ w2.T, w2 - lr[r] * w1.T @ G
        assert np.max(np.abs(w1 - W1[r])) > 1e-3  # the steps moved the weights
        np.testing.assert_allclose(got[0][r], w1, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(got[1][r], w2, rtol=1e-12, atol=1e-13)
