"""The simplest NumPy/SciPy program that does the lab's completion job: read the .npz, the
spectral estimate (top-r SVD of P_Ω(M)/p by ARPACK, balanced factors), ALS sweeps (rows, then
columns: each a batch of r × r normal equations over Ω laid out by row), the recovery error
‖L Rᵀ − M‖_F/‖M‖_F by two thin QRs. ``python _numpy_als.py FILE.npz RANK SWEEPS``."""

import sys

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import svds


def padded(index, other_index, values, n, n_other):
    """Ω laid out by row of X: for each row i its K slots (K = the largest count), holding the
    other side's index (``n_other``: a zero row, padding) and the value."""
    counts = np.bincount(index, minlength=n)
    order = np.argsort(index, kind="stable")
    slot = np.arange(index.size) - np.repeat(np.cumsum(counts) - counts, counts)
    other = np.full((n, counts.max()), n_other)
    y = np.zeros((n, counts.max()))
    other[index[order], slot] = other_index[order]
    y[index[order], slot] = values[order]
    return other, y


def side(layout, other):
    """argmin over the rows of X of Σ_Ω (x_i · o_j − y)²: per row the r × r normal equations
    FᵢᵀFᵢ x = Fᵢᵀyᵢ of its observed entries (a batched matmul over the padded layout)."""
    other_index, y = layout
    F = np.vstack([other, np.zeros((1, other.shape[1]))])[other_index]  # n × K × r
    grams = np.matmul(F.transpose(0, 2, 1), F)
    rhs = np.matmul(F.transpose(0, 2, 1), y[:, :, None])
    return np.linalg.solve(grams, rhs)[:, :, 0]


def main(path, r, sweeps):
    data = np.load(path)
    rows, cols, values = data["rows"].astype(int), data["cols"].astype(int), data["values"]
    n1, n2 = (int(x) for x in data["shape"])
    p = values.size / (n1 * n2)
    B = sparse.csr_matrix((values / p, (rows, cols)), shape=(n1, n2))
    U, s, Vt = svds(B, k=r, v0=np.ones(min(n1, n2)) / np.sqrt(min(n1, n2)))
    L, R = U * np.sqrt(s), Vt.T * np.sqrt(s)
    by_row = padded(rows, cols, values, n1, n2)
    by_col = padded(cols, rows, values, n2, n1)
    for _ in range(sweeps):
        L = side(by_row, R)
        R = side(by_col, L)
    TU, ts, TV = data["U"], data["s"], data["V"]  # the truth's factors
    a = np.linalg.qr(np.hstack([L, -TU * ts]), mode="r")  # L Rᵀ − M = [L, −U s][R, V]ᵀ
    b = np.linalg.qr(np.hstack([R, TV]), mode="r")
    error = np.linalg.norm(a @ b.T) / np.linalg.norm(ts)
    print(f"recovery {error:.3e}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
