"""The December 2017 notebook: its experiment as data (``experiment``), its algorithms literally in
NumPy (``notebook``), ``reproduce`` and the findings table (``summary``).
"""
