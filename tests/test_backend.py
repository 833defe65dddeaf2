"""The package's JAX setup: float64, one CPU device per core unless the caller chose."""

import os
import subprocess
import sys

from deeplinear.core.backend import jax, jnp


def test_float64_and_one_cpu_device_per_core():
    assert jnp.zeros(1).dtype == jnp.float64
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        assert len(jax.devices("cpu")) == len(os.sched_getaffinity(0))


def test_a_device_count_chosen_before_import_is_kept():
    code = (
        "import jax; jax.config.update('jax_num_cpu_devices', 3); import deeplinear; "
        "print(len(jax.devices('cpu')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3"
