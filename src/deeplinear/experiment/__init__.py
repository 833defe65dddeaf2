"""One experiment from a run file: parsed and checked (``config``), its cost estimated
(``budget``), built and executed into a results directory (``execution``), and ``deeplinear.run``
for Python users (``python_api``).
"""
