"""The compiled loop: ``runner.run`` (a batch of runs in one program, chunks, timing, divergence),
what it shares with its fast path (``programs``: records, compiled programs, the chunked drive),
and the fast path itself for constant-step GD at depth 2 (``fast_gd``).
"""
