"""The engine fuzz: random Workflows, and their runs driven through `plan()` as the shell drives
them, every decision checked.

`generate` writes the cases, `drive` plays the shell and the world, `properties` checks each
decision, `known` lists the defects found and not fixed yet. `fuzz(seed)` runs one case to its
end and raises a `FuzzFailure` (the seed, the case, the last rounds) when a property fails.
Used by tests/unit/test_engine_fuzz.py (a fixed seed, a small budget) and bench/engine_fuzz.py.
"""

from tests.engine_fuzz.drive import Coverage, Driver, FuzzFailure, fuzz, trace
from tests.engine_fuzz.generate import Case, make_case
from tests.engine_fuzz.known import KNOWN, known_defect
from tests.engine_fuzz.properties import Violation

__all__ = [
    "KNOWN",
    "Case",
    "Coverage",
    "Driver",
    "FuzzFailure",
    "Violation",
    "fuzz",
    "known_defect",
    "make_case",
    "trace",
]
