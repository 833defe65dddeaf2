"""Results on disk, without JAX: the tidy table and its Parquet files (``results``), results
directories (claiming, atomic writes, the checksum manifest: ``directories``), a sweep's group
files (``groups``) and any directory as a pandas/polars/Arrow frame (``frames``).
"""
