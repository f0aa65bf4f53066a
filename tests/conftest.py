"""Test configuration: pin JAX to the CPU with 4 virtual devices, float32 by default."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
