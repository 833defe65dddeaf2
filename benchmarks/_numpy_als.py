"""The simplest NumPy/SciPy program that does the lab's completion job: read the .npz, the
spectral estimate (top-r SVD of P_Ω(M)/p by ARPACK, balanced factors), ALS sweeps (rows, then
columns: each a batch of r × r normal equations from one pass over Ω), the recovery error
‖L Rᵀ − M‖_F/‖M‖_F by two thin QRs. ``python _numpy_als.py FILE.npz RANK SWEEPS``."""

import sys

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import svds


def side(indicator, weighted, other_index, other):
    """argmin over the rows of X of Σ_Ω (x_i · o_j − y)², one r × r system per row: the Grams
    Σ_j o_j o_jᵀ and right-hand sides Σ_j y o_j as sparse × dense products over Ω."""
    factor = other[other_index]
    r = other.shape[1]
    grams = indicator @ (factor[:, :, None] * factor[:, None, :]).reshape(-1, r * r)
    rhs = weighted @ factor
    return np.linalg.solve(grams.reshape(-1, r, r), rhs[:, :, None])[:, :, 0]


def main(path, r, sweeps):
    data = np.load(path)
    rows, cols, values = data["rows"].astype(int), data["cols"].astype(int), data["values"]
    n1, n2 = (int(x) for x in data["shape"])
    p = values.size / (n1 * n2)
    B = sparse.csr_matrix((values / p, (rows, cols)), shape=(n1, n2))
    U, s, Vt = svds(B, k=r, v0=np.ones(min(n1, n2)) / np.sqrt(min(n1, n2)))
    L, R = U * np.sqrt(s), Vt.T * np.sqrt(s)
    m = values.size
    by_row = sparse.csr_matrix((np.ones(m), (rows, np.arange(m))), shape=(n1, m))
    by_col = sparse.csr_matrix((np.ones(m), (cols, np.arange(m))), shape=(n2, m))
    y_row, y_col = by_row.multiply(values).tocsr(), by_col.multiply(values).tocsr()
    for _ in range(sweeps):
        L = side(by_row, y_row, cols, R)
        R = side(by_col, y_col, rows, L)
    TU, ts, TV = data["U"], data["s"], data["V"]  # the truth's factors
    a = np.linalg.qr(np.hstack([L, -TU * ts]), mode="r")  # L Rᵀ − M = [L, −U s][R, V]ᵀ
    b = np.linalg.qr(np.hstack([R, TV]), mode="r")
    error = np.linalg.norm(a @ b.T) / np.linalg.norm(ts)
    print(f"recovery {error:.3e}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
