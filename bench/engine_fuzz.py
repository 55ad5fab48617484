"""Benchmark: the engine fuzz with a large budget (no servers: the engine alone).

Runs N random cases from a seed (tests/engine_fuzz: random Workflows, their runs driven through
plan() as the shell drives them, every decision checked) and prints runs/s and plans/s, the
final phases and reasons reached, the step kinds written and started, the steering done, and
every failure with its seed. Exits 1 when a run broke a property.

    python bench/engine_fuzz.py --runs 20000 --seed 1
    python bench/engine_fuzz.py --runs 1 --seed 1234 --trace    # one case, round by round
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "operator")]

from tests.engine_fuzz import Coverage, FuzzFailure, fuzz, make_case, trace  # noqa: E402


def figures(counter: Counter[str]) -> str:
    total = sum(counter.values()) or 1
    return ", ".join(f"{key} {n} ({100 * n / total:.1f}%)" for key, n in counter.most_common())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1, help="the first case's seed (the others follow)")
    parser.add_argument("--trace", action="store_true", help="print every round of each case")
    parser.add_argument("--show", type=int, default=3, help="failures printed in full")
    args = parser.parse_args()

    coverage, failures = Coverage(), list[FuzzFailure]()
    began = time.perf_counter()
    for seed in range(args.seed, args.seed + args.runs):
        if args.trace:
            print(f"seed {seed}: {make_case(seed).describe()}")
            print("\n".join("  " + line for line in trace(seed)))
        try:
            coverage.add(fuzz(seed))
        except FuzzFailure as failure:
            failures.append(failure)
    elapsed = time.perf_counter() - began

    last = args.seed + args.runs - 1
    print(f"runs                 {args.runs} (seeds {args.seed}..{last}) in {elapsed:.1f} s")
    print(f"throughput           {args.runs / elapsed:.0f} runs/s, {coverage.plans / elapsed:.0f} plans/s")
    print(f"plans                {coverage.plans} ({coverage.plans / max(args.runs, 1):.1f} a run)")
    print(f"final phases         {figures(coverage.phases)}")
    print(f"reasons              {figures(coverage.reasons)}")
    print(f"step kinds written   {figures(coverage.kinds)}")
    print(f"attempts started     {figures(coverage.started)}")
    print(f"steering             {figures(coverage.steering)}")
    print(f"failures             {len(failures)}")
    for shown in failures[: args.show]:
        print(f"\n{shown}")
    for other in failures[args.show :]:
        print(f"  seed {other.seed}: {other.kind}: {other.message}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
