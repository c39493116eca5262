"""pytest configuration for the alscale tests: hypothesis settings profiles.

HYPOTHESIS_PROFILE=ci (the default) keeps the whole suite to a few minutes on two cores and
draws the same examples on every run (derandomized: CI never fails by chance on a case no one
can reproduce); HYPOTHESIS_PROFILE=dev runs many more examples, freshly drawn each time. Shared strategies and helpers are in
tests/hypotheses.py (hypothesis strategies: not to be confused with the AL strategies of alscale.strategies), the numpy references in tests/reference.py.
"""

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

settings.register_profile("ci", max_examples=150, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
