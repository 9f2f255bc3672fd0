"""Run the chaos suite and print, per platform: rounds, kills, faults injected,
requests, duplicates, leaks, stuck, lost.

    python bench/chaos_report.py [--rounds 20] [--seed 1] [--only PLATFORM ...] [-k EXPR]
                                 [--from REPORT.json]

``--rounds`` defaults to 20 (the long mode; CI runs tests/chaos with 2). The
suite fails, and this prints the findings, when any of the last four columns is
not 0. ``--from`` prints a report written earlier (``TALPROV_CHAOS_REPORT``)
without running anything. Re-run with the same ``--seed`` to replay the kills
and the fault sequence. ``--only`` runs the named rows only (``aws``,
``openstack``, ``proxmox``, ``baremetal``, ``vmware``, ``pg-replicas``: two
``serve`` replicas on PostgreSQL, see tests/chaos/pg_replicas.py); ``-k`` picks
tests as pytest's ``-k`` does (e.g. ``-k "proxmox or baremetal"``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("platform", "rounds", "kills", "faults", "requests", "duplicates", "leaks",
           "stuck", "lost")


def suite() -> list[str]:
    """The suite's files: every test_chaos*.py, and the replicas' rounds. A row's
    test is named test_chaos_<row, "-" as "_">."""
    files = sorted(str(p.relative_to(ROOT))
                   for p in (ROOT / "tests" / "chaos").glob("test_chaos*.py"))
    return [*files, "tests/chaos/test_pg_replicas.py"]


def run_suite(rounds: int, seed: int, report: Path, only: list[str] | None = None,
              select: str | None = None) -> int:
    env = dict(os.environ, TALPROV_CHAOS_ROUNDS=str(rounds), TALPROV_CHAOS_SEED=str(seed),
               TALPROV_CHAOS_REPORT=str(report),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "--timeout", str(600 + 120 * rounds), *suite()]
    clauses = []
    if only:
        clauses.append(" or ".join(f"test_chaos_{name.replace('-', '_')}" for name in only))
    if select:
        clauses.append(select)
    if clauses:
        command += ["-k", " and ".join(f"({c})" for c in clauses)]
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["  ".join(f"{c:>10}" for c in COLUMNS)]
    lines += ["  ".join(f"{row.get(c, '-')!s:>10}" for c in COLUMNS) for row in rows]
    for row in rows:
        lines += [f"{row['platform']} (seed {row['seed']}): {f}" for f in row.get("findings", [])]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", nargs="+", metavar="PLATFORM",
                        help="run these rows only (aws, openstack, proxmox, baremetal, "
                             "vmware, pg-replicas)")
    parser.add_argument("-k", dest="select", help="pytest -k expression over the tests")
    parser.add_argument("--from", dest="source", type=Path)
    args = parser.parse_args()
    code = 0
    if args.source is not None:
        report = args.source
    else:
        report = Path(tempfile.mkdtemp(prefix="chaos-")) / "report.json"
        code = run_suite(args.rounds, args.seed, report, args.only, args.select)
    if not report.exists():
        print(f"no report written (pytest exit {code})", file=sys.stderr)
        return code or 1
    print(render(json.loads(report.read_text())))
    return code


if __name__ == "__main__":
    sys.exit(main())
