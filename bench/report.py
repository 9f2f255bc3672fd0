"""What the create benches share: one run's result, the interleaved repeats, the table.

Each configuration (an added latency) runs every tool ``--repeat`` times,
interleaved so that drift hits every tool alike, and prints min and median wall
seconds, API calls per machine, each tool's time over the lower bound and over
talprov's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Result:
    """One tool's run: wall seconds, API calls by kind, machines that ended up running."""

    name: str
    seconds: float
    calls: Counter[str]
    running: int

    def per_machine(self, machines: int) -> float:
        return sum(self.calls.values()) / machines


def options(description: str, tools: Sequence[str], argv: list[str] | None,
            machines: int = 20, latencies: str = "0,50") -> argparse.Namespace:
    """The command line every create bench takes; ``tools`` parsed from ``--only``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--machines", type=int, default=machines)
    parser.add_argument("--latencies", default=latencies, help="ms, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(tools), help="tools, comma-separated")
    args = parser.parse_args(argv)
    args.tools = [t for t in args.only.split(",") if t]
    if "bound" not in args.tools or "talprov" not in args.tools:
        parser.error("--only must keep bound and talprov (the ratios need them)")
    return args


def compare(args: argparse.Namespace, configure: Callable[[float], None],
            run: Callable[[str, float, Path], Result]) -> int:
    """For each latency: ``configure(ms)``, then ``run(tool, ms, folder)`` repeatedly;
    prints the table. 1 when a tool left machines not running."""
    with tempfile.TemporaryDirectory(prefix="talprov-bench-") as tmp:
        for latency_ms in (float(x) for x in args.latencies.split(",")):
            configure(latency_ms)
            runs: dict[str, list[Result]] = {name: [] for name in args.tools}
            for attempt in range(args.repeat):
                for name in args.tools:
                    folder = Path(tmp) / f"{name}-{latency_ms:g}-{attempt}"
                    folder.mkdir()
                    result = run(name, latency_ms, folder)
                    if result.running != args.machines:
                        print(f"ERROR: {name}: {result.running} of {args.machines} run",
                              file=sys.stderr)
                        return 1
                    runs[name].append(result)
            show(args.machines, latency_ms, runs)
    return 0


def show(machines: int, latency_ms: float, runs: dict[str, list[Result]],
         width: int = 10) -> None:
    """The table of one latency: min and median seconds, calls per machine, the
    ratios to the bound and to talprov, and the calls by kind (``width``: of the
    tool-name column)."""
    print(f"\n{machines} machines, {latency_ms:g} ms added per API request "
          f"(real clock, min/median of {len(runs['bound'])})")
    print(f"  {'':{width}}{'min s':>8}{'median s':>10}{'calls/machine':>15}{'/ bound':>9}"
          f"{'/ talprov':>11}  calls")
    bound = min(r.seconds for r in runs["bound"])
    ours = min(r.seconds for r in runs["talprov"])
    for name, results in runs.items():
        fastest = min(r.seconds for r in results)
        median = statistics.median(r.seconds for r in results)
        ops = ", ".join(f"{k} {v}" for k, v in sorted(results[0].calls.items()) if v)
        print(f"  {name:{width}}{fastest:8.2f}{median:10.2f}"
              f"{results[0].per_machine(machines):15.2f}"
              f"{fastest / bound:8.2f}x{fastest / ours:10.2f}x  {ops}")
