"""The engine fuzz: random Workflows, and their runs driven through `plan()` as the shell drives
them, every decision checked.

`generate` writes the cases, `drive` plays the shell and the world, `properties` checks each
decision. `fuzz(seed)` runs one case to its
end and raises a `FuzzFailure` (the seed, the case, the last rounds) when a property fails.
Used by tests/unit/test_engine_fuzz.py (a fixed seed, a small budget) and bench/engine_fuzz.py.
"""

from tests.engine_fuzz.drive import Coverage, Driver, FuzzFailure, fuzz, trace
from tests.engine_fuzz.generate import Case, make_case
from tests.engine_fuzz.properties import Violation

__all__ = [
    "Case",
    "Coverage",
    "Driver",
    "FuzzFailure",
    "Violation",
    "fuzz",
    "make_case",
    "trace",
]
