"""Shared fixtures: the notebook's reference curves (seed 0) and the reproduction of seed 0."""

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def reference():
    """``notebook_seed0.npz``: the notebook run under TF 2.21 compat.v1 (see data/README)."""
    return dict(np.load(DATA / "notebook_seed0.npz"))


@pytest.fixture(scope="session")
def seed0():
    """``reproduce(0)`` in memory (modern LM setting)."""
    from deeplinear.notebook2017.reproduce import reproduce

    return reproduce(0, write=False)
