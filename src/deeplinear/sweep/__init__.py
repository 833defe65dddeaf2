"""Sweeps: sweep files, groups, grid extension, resume, Ray (``core``), the fair choice of a
learning rate (``tuning``) and the worker process under a watchdog (``watchdog``).
"""
