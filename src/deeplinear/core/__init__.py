"""The bottom layer, importing nothing else of deeplinear but ``errors``: JAX configured for
float64 (``backend``), one-matrix-at-a-time LAPACK (``linalg``), double-double losses and the
irreducible loss (``accurate``), the deep linear net's products (``model``), memory and time
limits (``limits``) and progress lines (``progress``).
"""
