"""Hypothesis profiles for the fuzz tests: a quick one for ``make test`` and a long one that
``benchmarks/reliability.py`` selects with ``--hypothesis-profile=reliability-long``."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "reliability",
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "reliability-long",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("reliability")
