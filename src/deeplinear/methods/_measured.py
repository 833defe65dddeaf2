"""The methods' linear algebra on measured objectives (``measurement.Completion``/``Sensing``).

A measured objective has no input factor L: the loss is Σ_k w_k (⟨A_k, W⟩ − y_k)² over m
measurements, so every solve goes through the measurements themselves.

- **Row-wise least squares** (completion): with the other factors fixed, row i of W1 enters
  only the measurements in row i, so argmin over W1 is n1 independent d × d normal equations
  G_i x = b_i, G_i = Σ_{k: i_k = i} w_k f_k f_kᵀ, b_i = Σ w_k y_k f_k with f_k = R[:, j_k]
  (R = W2 ⋯ WL); the columns of W_L likewise with f_k = (W1 ⋯ W_{L−1})[i_k]. The Grams are
  batched products over Ω laid out by line (``measurement.Lines``), O(m d²), never an
  m × d × d array (a scatter-add of those was 4× slower); the n small systems are solved by a
  Cholesky factorization written out in array arithmetic (no LAPACK call per row, none batched:
  see ``_linalg``). A relative ridge ρ = ``RIDGE`` · tr(G_i)/d keeps rows with fewer than d
  observations solvable (their solution tends to the minimum-norm one as ρ → 0; a row with no
  observation gets 0), and one step of iterative refinement, x ← x + (G + ρ)⁻¹(b − G x),
  removes the ridge's bias on the others to O((ρ κ(G_i))²).
- **Layer least squares in vec form** (a completion's inner layers, every layer of sensing):
  ⟨A_k, P W Q⟩ = z_kᵀ vec(W) with z_k = vec(Pᵀ A_k Qᵀ) (completion: P[i_k] ⊗ Q[:, j_k]); the
  (ab) × (ab) normal equations Σ w_k z_k z_kᵀ, accumulated in chunks, are solved with the same
  ridge. Layers with a·b > ``MAX_DENSE_LAYER`` are refused (``dense_layer_reason``).
- **Gauss-Newton matrix-free**: (JᵀJ + λI) δ = −Jᵀr for the residual r_k = √w_k (⟨A_k, W⟩ − y_k)
  by preconditioned conjugate gradients, J applied through ``jax.linearize``/``jax.vjp`` (never
  formed). The preconditioner is block diagonal: for a completion the *exact* blocks of
  JᵀJ + λI for each row of W1 and each column of W_L (the Grams above plus λ), for sensing
  their expectation s·(I ⊗ R Rᵀ) + λ (s = ``measurement.sampling_scale``, the ScaledGD
  preconditioner); inner layers get s (PᵀP ⊗ QQᵀ) + λ, inverted approximately as
  (PᵀP + μ)⁻¹ V (QQᵀ + μ)⁻¹ / s with μ = √(λ/s). CG is written out (``pcg``) rather than taken
  from lineax: lineax's stopping test divides the residual by the right-hand side elementwise,
  and Jᵀr has exact zeros here (rows without observations, zero columns of a wider spectral
  init), so it would never stop; this one stops at ‖res‖₂ ≤ rtol ‖Jᵀr‖₂.
"""

from __future__ import annotations

from deeplinear.core import linalg
from deeplinear.core.backend import jax, jnp
from deeplinear.core.model import partial_products
from deeplinear.methods._gauge import remove_gauge
from deeplinear.objectives import measurement
from deeplinear.objectives.measurement import Completion

RIDGE = 1e-12  # relative to the mean eigenvalue tr(G)/d of each normal matrix
CHUNK_VALUES = 1 << 22  # the most float64 values one chunk of outer products holds (32 MiB)
MAX_DENSE_LAYER = 4096  # a·b: the largest layer solved in vec form ((a·b)² normal matrix)


def is_measured(objective) -> bool:
    return measurement.is_measured(objective)


def is_completion(objective) -> bool:
    return isinstance(objective, Completion)


def sampling_scale(objective, weights):
    """s = E‖𝒜(E)‖²/‖E‖² (the sampling rate p for completion), traced."""
    return measurement.sampling_scale(objective, (weights[0].shape[0], weights[-1].shape[1]))


def dense_layer_reason(objective, shapes) -> str | None:
    """Why ALS cannot solve some layer of ``shapes`` in vec form on ``objective`` (or None)."""
    if shapes is None:
        return None
    if len(shapes) < 2:
        return "ALS on a measured problem needs at least two layers"
    dense = range(len(shapes)) if not is_completion(objective) else range(1, len(shapes) - 1)
    for i in dense:
        a, b = shapes[i]
        if a * b > MAX_DENSE_LAYER:
            return (
                f"ALS solves layer {i + 1} ({a} × {b}) as a dense least-squares problem in "
                f"{a * b} unknowns, more than {MAX_DENSE_LAYER}: use gn-cg or scaled-gd"
            )
    return None


# -- chunked sums over the measurements ---------------------------------------------------------


def _chunk_size(m: int, width: int) -> int:
    """A divisor of m near CHUNK_VALUES / width (so reshaping into chunks copies nothing)."""
    target = max(1, min(m, CHUNK_VALUES // max(width, 1)))
    best = 1
    for c in range(target, 0, -1):
        if m % c == 0:
            best = c
            break
    return best if best * 8 >= target else target


def chunked_sum(fn, arrays, width: int):
    """Σ over chunks of the measurements of ``fn(*chunk)`` (each array's leading axis is m).

    Chunks of about CHUNK_VALUES / ``width`` measurements go through ``lax.scan``; a remainder
    that no divisor of m absorbs is summed apart.
    """
    m = arrays[0].shape[0]
    size = _chunk_size(m, width)
    whole = (m // size) * size
    total = None
    if whole:
        blocks = [x[:whole].reshape(m // size, size, *x.shape[1:]) for x in arrays]
        first = jax.eval_shape(fn, *(b[0] for b in blocks))
        zero = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), first)

        def body(carry, chunk):
            return jax.tree_util.tree_map(jnp.add, carry, fn(*chunk)), None

        total = jax.lax.scan(body, zero, blocks)[0]
    if whole < m:
        rest = fn(*(x[whole:] for x in arrays))
        total = rest if total is None else jax.tree_util.tree_map(jnp.add, total, rest)
    return total


# -- many small symmetric positive definite systems ----------------------------------------------


def solve_many(G, b):
    """x with G x = b for a stack of positive semidefinite G (n, d, d), b (n, d): ridged
    Cholesky and one refinement step (module docstring)."""
    L = cholesky(ridged(G))
    x = cho_solve(L, b)
    return x + cho_solve(L, b - jnp.einsum("nij,nj->ni", G, x))


def solve_one(N, b):
    """x with N x = b for one positive semidefinite N: ridged LU and one refinement step."""
    shifted = ridged(N[None])[0]
    x = linalg.solve(shifted, b)
    return x + linalg.solve(shifted, b - N @ x)


def ridged(G, ridge: float = RIDGE):
    """G + (ridge · tr(G)/d) I for a stack of d × d matrices (n, d, d)."""
    d = G.shape[-1]
    shift = ridge * jnp.trace(G, axis1=-2, axis2=-1) / d
    return G + shift[..., None, None] * jnp.eye(d, dtype=G.dtype)


def cholesky(G):
    """Lower Cholesky factors of a stack (n, d, d) of positive semidefinite matrices, in array
    arithmetic; a non-positive pivot is replaced by the smallest normal number (its row of the
    solution then comes out 0 where the right-hand side is 0, as for an unobserved row)."""
    d = G.shape[-1]
    tiny = jnp.finfo(G.dtype).tiny
    index = jnp.arange(d)

    def column(j, L):
        s = G[:, :, j] - jnp.einsum("nik,nk->ni", L, L[:, j, :])
        pivot = jnp.sqrt(jnp.maximum(s[:, j], tiny))
        col = jnp.where(index[None, :] > j, s / pivot[:, None], 0.0)
        col = jnp.where(index[None, :] == j, pivot[:, None], col)
        return L.at[:, :, j].set(col)

    return jax.lax.fori_loop(0, d, column, jnp.zeros_like(G))


def cho_solve(L, b):
    """x with L Lᵀ x = b for stacks L (n, d, d), b (n, d)."""
    d = b.shape[-1]

    def forward(j, y):
        return y.at[:, j].set((b[:, j] - jnp.sum(L[:, j, :] * y, axis=1)) / L[:, j, j])

    def backward(t, x):
        j = d - 1 - t
        return x.at[:, j].set((y[:, j] - jnp.sum(L[:, :, j] * x, axis=1)) / L[:, j, j])

    y = jax.lax.fori_loop(0, d, forward, jnp.zeros_like(b))
    return jax.lax.fori_loop(0, d, backward, jnp.zeros_like(b))


# -- completion: row-wise Grams and least squares ----------------------------------------------


def line_grams(lines, features, count: int, with_rhs: bool = True):
    """The Grams G_s (and right-hand sides b_s) of every row (``lines`` = ``by_row``) or column
    of a completion: ``measurement.line_sums``, O(m d²) as batched products."""
    if lines is None:
        raise ValueError(
            "this completion has no Lines: build it with measurement.completion(rows, cols, "
            "values, shape) or measurement.laid_out(objective, shape)"
        )
    return measurement.line_sums(lines, features, count, with_rhs)


def gram_values(shapes, count: int) -> float:
    """Float64 values the Grams of a completion's outer layers hold at once: the larger side's
    gathered features (S K d), its slots' Grams (S d²) and the n d² result."""
    (n1, d0), (dL, n2) = shapes[0], shapes[-1]
    sizes = []
    for n, d in ((n1, d0), (n2, dL)):
        S, K = measurement.line_shape(n, count)
        sizes.append(S * K * d + S * d * (d + 1) + n * d * (d + 1))
    return max(sizes)


def _penalized(G, objective, counts: str):
    """G_i + λ n_i I for the objective's ``penalty`` (ALS-WR's normal equations), else G."""
    penalty = getattr(objective, "penalty", None)
    if penalty is None:
        return G
    n = getattr(penalty, counts)
    return G + (penalty.lam * n)[:, None, None] * jnp.eye(G.shape[-1], dtype=G.dtype)


def rows_least_squares(objective, right, n1: int):
    """argmin over W1 of the completion loss with W2 ⋯ WL = ``right`` (d × n2) fixed:
    (n1 × d), row by row (module docstring); with a penalty, (G_i + λ n_i I) w_i = b_i."""
    G, b = line_grams(objective.by_row, right.T, n1)
    return solve_many(_penalized(G, objective, "row_counts"), b)


def columns_least_squares(objective, left, n2: int):
    """argmin over W_L of the completion loss with W1 ⋯ W_{L−1} = ``left`` (n1 × d) fixed:
    (d × n2), column by column."""
    G, b = line_grams(objective.by_col, left, n2)
    return solve_many(_penalized(G, objective, "col_counts"), b).T


def layer_design(objective, left, right, shape):
    """A function of a chunk of measurements giving z_k = vec(Pᵀ A_k Qᵀ) (row-major, a·b), for
    P = ``left`` (n1 × a or None), Q = ``right`` (b × n2 or None)."""
    n1, n2 = shape

    if is_completion(objective):

        def design(rows, cols):
            p = jnp.eye(n1, dtype=objective.values.dtype)[rows] if left is None else left[rows]
            q = jnp.eye(n2, dtype=objective.values.dtype)[cols] if right is None else right.T[cols]
            return (p[:, :, None] * q[:, None, :]).reshape(rows.shape[0], -1)

        return design

    def design(operators):
        A = operators.reshape(-1, n1, n2)
        if left is not None:
            A = jnp.einsum("ia,kij->kaj", left, A)
        if right is not None:
            A = jnp.einsum("kaj,bj->kab", A, right)
        return A.reshape(A.shape[0], -1)

    return design


def layer_least_squares(objective, left, right, layer_shape, shape):
    """argmin over W_i (a × b) of the measured loss with P = ``left``, Q = ``right`` fixed, in vec
    form: the ridged normal equations Σ w_k z_k z_kᵀ vec(W) = Σ w_k y_k z_k."""
    a, b = layer_shape
    design = layer_design(objective, left, right, shape)
    completion = is_completion(objective)

    def chunk(*xs):
        *inputs, w, y = xs
        z = design(*inputs)
        return z.T @ (w[:, None] * z), z.T @ (w * y)

    inputs = (objective.rows, objective.cols) if completion else (objective.operators,)
    width = a * b + (0 if completion else shape[0] * shape[1])
    N, rhs = chunked_sum(chunk, (*inputs, objective.weights, objective.values), width)
    return solve_one(N, rhs).reshape(a, b)


def als_sweep(weights, objective, learning_rate):
    """One ALS sweep on a measured objective: each layer's exact least squares in turn, moved
    ``learning_rate`` of the way (1 = the solution)."""
    weights = list(weights)
    depth = len(weights)
    shape = (weights[0].shape[0], weights[-1].shape[1])
    completion = is_completion(objective)
    for i in range(depth):
        lefts, rights = partial_products(weights)
        if completion and i == 0:
            best = rows_least_squares(objective, rights[0], shape[0])
        elif completion and i == depth - 1:
            best = columns_least_squares(objective, lefts[i], shape[1])
        else:
            best = layer_least_squares(objective, lefts[i], rights[i], weights[i].shape, shape)
        weights[i] = weights[i] + learning_rate * (best - weights[i])
    return tuple(weights)


# -- Gauss-Newton, matrix-free -----------------------------------------------------------------


def _tree_dot(a, b):
    pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    return sum(jnp.vdot(x, y) for x, y in pairs)


def _axpy(alpha, x, y):
    return jax.tree_util.tree_map(lambda u, v: alpha * u + v, x, y)


def pcg(operator, preconditioner, b, rtol, max_steps: int):
    """Preconditioned CG for a symmetric positive definite ``operator`` on pytrees, from 0, until
    ‖b − A x‖₂ ≤ rtol ‖b‖₂: (x, converged, steps). A non-positive curvature pᵀAp stops it."""
    zero = jax.tree_util.tree_map(jnp.zeros_like, b)
    z = preconditioner(b)
    rz = _tree_dot(b, z)
    goal = rtol**2 * _tree_dot(b, b)
    state = (zero, b, z, rz, _tree_dot(b, b), jnp.asarray(0), jnp.asarray(True))

    def going(s):
        *_, rr, step, healthy = s
        return (rr > goal) & (step < max_steps) & healthy

    def body(s):
        x, r, p, rz, _, step, _ = s
        Ap = operator(p)
        curvature = _tree_dot(p, Ap)
        healthy = (curvature > 0) & jnp.isfinite(curvature)
        alpha = jnp.where(healthy, rz / jnp.where(healthy, curvature, 1.0), 0.0)
        x = _axpy(alpha, p, x)
        r = _axpy(-alpha, Ap, r)
        z = preconditioner(r)
        rz_new = _tree_dot(r, z)
        beta = rz_new / jnp.where(rz == 0, 1.0, rz)
        p = _axpy(beta, p, z)
        return x, r, p, rz_new, _tree_dot(r, r), step + 1, healthy

    x, _, _, _, rr, steps, healthy = jax.lax.while_loop(going, body, state)
    return x, (rr <= goal) & healthy, steps


def _kron_inverse(left_gram, right_gram, scale, lam):
    """v ↦ (PᵀP + μ)⁻¹ v (QQᵀ + μ)⁻¹ / s, μ = √(λ/s), for Grams PᵀP and QQᵀ (None = I)."""
    mu = jnp.sqrt(lam / scale)

    def factor(gram):
        if gram is None:
            return None
        e, V = linalg.eigh(gram)
        return V, 1.0 / (jnp.maximum(e, 0.0) + mu)

    lf, rf = factor(left_gram), factor(right_gram)

    def apply(v):
        if lf is None:
            v = v / (1.0 + mu)
        else:
            V, inv = lf
            v = V @ (inv[:, None] * (V.T @ v))
        if rf is None:
            v = v / (1.0 + mu)
        else:
            V, inv = rf
            v = ((v @ V) * inv[None, :]) @ V.T
        return v / scale

    return apply


def block_preconditioner(weights, objective, lam):
    """An approximate inverse of JᵀJ + λI, block diagonal over the layers (module docstring)."""
    depth = len(weights)
    n1, n2 = weights[0].shape[0], weights[-1].shape[1]
    lefts, rights = partial_products(weights)
    scale = sampling_scale(objective, weights)
    completion = is_completion(objective)
    applies = []
    for i in range(depth):
        p, q = lefts[i], rights[i]
        if completion and depth > 1 and i == 0:
            G = line_grams(objective.by_row, q.T, n1, with_rhs=False)
            L = cholesky(G + lam * jnp.eye(G.shape[-1], dtype=G.dtype))
            applies.append(lambda v, L=L: cho_solve(L, v))
        elif completion and depth > 1 and i == depth - 1:
            G = line_grams(objective.by_col, p, n2, with_rhs=False)
            L = cholesky(G + lam * jnp.eye(G.shape[-1], dtype=G.dtype))
            applies.append(lambda v, L=L: cho_solve(L, v.T).T)
        elif p is None or q is None:  # sensing's outer layers: s (I ⊗ QQᵀ) + λ, exactly inverted
            gram = scale * (q @ q.T if p is None else p.T @ p)
            e, V = linalg.eigh(gram)
            inv = 1.0 / (jnp.maximum(e, 0.0) + lam)
            if p is None:
                applies.append(lambda v, V=V, inv=inv: ((v @ V) * inv[None, :]) @ V.T)
            else:
                applies.append(lambda v, V=V, inv=inv: V @ (inv[:, None] * (V.T @ v)))
        else:
            applies.append(_kron_inverse(p.T @ p, q @ q.T, scale, lam))

    def apply(v):
        return tuple(f(x) for f, x in zip(applies, v))

    return apply


def cg_solve(weights, objective, lam, rtol: float, max_steps: int, precondition: bool = True):
    """(JᵀJ + λI) δ = −Jᵀr on a measured objective by preconditioned CG, matrix-free:
    (δ with its gauge component removed, converged, CG steps)."""

    weights = tuple(weights)
    r, push = jax.linearize(objective.residual, weights)
    pull = jax.linear_transpose(push, weights)
    rhs = jax.tree_util.tree_map(jnp.negative, pull(r)[0])

    def normal(v):
        return _axpy(lam, v, pull(push(v))[0])

    identity = lambda v: v
    preconditioner = block_preconditioner(weights, objective, lam) if precondition else identity
    delta, ok, steps = pcg(normal, preconditioner, rhs, rtol, max_steps)
    return remove_gauge(weights, delta), ok, steps


def initial_damping(weights, objective, tau: float):
    """τ · s · max diag of the fully observed Gauss-Newton matrix (its expectation under the
    sampling), for a measured objective."""
    lefts, rights = partial_products(weights)
    biggest = jnp.asarray(0.0)
    for p, q in zip(lefts, rights):
        left = 1.0 if p is None else jnp.max(jnp.sum(p * p, axis=0))
        right = 1.0 if q is None else jnp.max(jnp.sum(q * q, axis=1))
        biggest = jnp.maximum(biggest, left * right)
    return tau * sampling_scale(objective, weights) * biggest


def flops_setup(shapes, count: int, completion: bool) -> tuple[float, float]:
    """(once per solve, per CG step) of the block preconditioner beyond the two products with
    J: Grams and Cholesky factors (completion) or eigendecompositions (sensing)."""
    (n1, d0), (dL, n2) = shapes[0], shapes[-1]
    if completion:
        setup = 2 * count * (d0 * d0 + dL * dL) + (n1 * d0**3 + n2 * dL**3) / 3
        per_cg = 4 * (n1 * d0 * d0 + n2 * dL * dL)
    else:
        setup = 2 * (n2 * d0 * d0 + n1 * dL * dL) + 9 * (d0**3 + dL**3)
        per_cg = 4 * (n1 * d0 * d0 + n2 * dL * dL)
    inner = sum(9 * (a**3 + b**3) for a, b in shapes[1:-1])
    per_cg += sum(4 * a * b * (a + b) for a, b in shapes[1:-1])
    return setup + inner, per_cg
