"""hypothesis when the test extras are installed; otherwise stand-ins that turn each property test into a skip.

Why: every test module must import without the test extras. launch_testing's pytest plugin (Humble and Jazzy)
imports every collected module itself to look for a launch test, outside pytest's error handling, so one
ImportError (hypothesis missing, e.g. `colcon test` with the robot's own Python) aborts the whole session,
the launch test included. Import the hypothesis names from here instead of from hypothesis.
"""

from __future__ import annotations

import pytest

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    HAVE_HYPOTHESIS = True
except ImportError:
    HAVE_HYPOTHESIS = False

    class _Anything:
        """Stands in for strategies and health checks: any attribute or call gives itself."""

        def __getattr__(self, name: str) -> _Anything:
            return self

        def __call__(self, *args, **kwargs) -> _Anything:
            return self

    st = HealthCheck = _Anything()

    def given(*args, **kwargs):
        return pytest.mark.skip(reason="needs hypothesis: pip install -e '.[test]'")

    def settings(*args, **kwargs):
        return lambda test: test


__all__ = ["HAVE_HYPOTHESIS", "HealthCheck", "given", "settings", "st"]
