"""How the property-based tests run: twice each, once derandomized and once with a random seed.

The derandomized run tries the same examples every time, so a failure repeats. The randomized run
draws new examples each session (fewer of them, to stay fast), so CI explores over time; its seed
is printed in the session header and in the test ID, and ``WHATSAPP_FUZZ_SEED=<seed>`` repeats it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, seed, settings

SEED_VARIABLE = "WHATSAPP_FUZZ_SEED"
SEED = int(os.environ.get(SEED_VARIABLE) or random.SystemRandom().randrange(2**32))
# The randomized run tries this share of the derandomized run's examples.
RANDOM_SHARE = 0.25


@dataclass(frozen=True)
class FuzzRun:
    """One way of running a property: derandomized, or from :data:`SEED`."""

    randomized: bool

    def run(self, check: Callable[..., Any], max_examples: int) -> None:
        """Run ``check`` (a function decorated with ``@given``) with this run's settings."""
        examples = max(10, int(max_examples * RANDOM_SHARE)) if self.randomized else max_examples
        chosen = settings(
            max_examples=examples,
            deadline=None,
            derandomize=not self.randomized,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        wrapped = chosen(check)
        if self.randomized:
            wrapped = seed(SEED)(wrapped)
        wrapped()


BOTH_WAYS = pytest.mark.parametrize(
    "fuzz", [FuzzRun(randomized=False), FuzzRun(randomized=True)], ids=["derandomized", f"seed-{SEED}"]
)


def report_header() -> str:
    return f"property tests: derandomized, then randomized with seed {SEED} (repeat with {SEED_VARIABLE}={SEED})"
