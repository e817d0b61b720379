"""Hypothesis profiles for the property tests.

``ci`` (the default) is derandomized: every run draws the same examples, so a failure in
CI reproduces locally with the same command. ``long`` draws many more examples with a
random seed, for a deliberate campaign: ``HYPOTHESIS_PROFILE=long pytest tests/fuzz``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=200, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long", max_examples=5_000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
