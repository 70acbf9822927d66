"""Fuzzing and property tests of the loader, the rule parser, the engine and the CLI.

`python -m fuzz --cases N` (`make fuzz FUZZ_CASES=N`) runs N cases split across the properties
of `fuzz.cases.PROPERTIES`, in worker processes, each case under a time bound, and prints the
count per property and every distinct failure (with the smallest input that showed it, saved
under test_artifacts/fuzz/ for `python -m fuzz --replay FILE`). tests/test_fuzz.py runs a
fixed-seed slice of the same properties in `make test` (Hypothesis profile "ci").
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings

# The slice in `make test`: derandomised (the same cases every run), no example database.
settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
# The big run: seeded per chunk by the runner, generation only (a failure is recorded and the
# run goes on; the runner keeps the smallest input per failure and minimises it).
settings.register_profile(
    "fuzz", database=None, deadline=None, phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)  # fmt: skip
