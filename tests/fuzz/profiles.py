"""Hypothesis profiles for the property tests in this directory.

``ci`` (the default) is derandomized: every run draws the same examples, so a failure in
CI reproduces locally with the same command. ``long`` draws many more examples with a
random seed, for a deliberate campaign: ``PUSHERD_FUZZ_PROFILE=long pytest tests/fuzz``.
The profile is applied to those tests only (``FUZZ_SETTINGS``), never loaded globally:
other hypothesis tests in the suite keep their own settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "pusherd-fuzz-ci", max_examples=200, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "pusherd-fuzz-long", max_examples=5_000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
FUZZ_SETTINGS = settings.get_profile(
    "pusherd-fuzz-" + os.environ.get("PUSHERD_FUZZ_PROFILE", "ci"))
