"""Suite-wide settings: the hypothesis profiles of the short (CI) and the long form.

``HYPOTHESIS_PROFILE=fuzz`` runs the fuzzing properties with 20x more cases (the long form);
the default ``ci`` profile keeps the suite within the CI budget. The long soak is
``SOAK_SECONDS=900`` (see ``tests/e2e/test_soak.py``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "fuzz",
    deadline=None,
    max_examples=4000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
