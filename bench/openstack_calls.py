"""Python calls in talprov's timed part of bench/openstack_create.py, all threads.

    python bench/openstack_calls.py [--servers 30] [--repeat 3]

Wall time at 0 ms latency swings with the machine's load; the number of Python
function calls does not (the passes' polls vary it by about 1 %). Counted with a
profile hook in every thread (cProfile sees only the thread that enables it)
while the reconciler runs, as bench/openstack_create.py times it: all calls, the
calls inside the pass's user-data rendering (``_render_ahead``), and how often
the machine config was parsed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import openstack_create as bench  # noqa: E402
from talprov.reconcile.reconciler import Reconciler  # noqa: E402

RENDERING = "_render_ahead"
COUNTS: Counter[str] = Counter()
_inside = threading.local()


def _profile(frame: FrameType, event: str, arg: object) -> None:
    rendering = frame.f_code.co_name == RENDERING
    if event == "call":
        COUNTS["calls"] += 1
        depth: int = getattr(_inside, "depth", 0)
        COUNTS["calls rendering"] += depth > 0
        _inside.depth = depth + rendering
    elif event == "return" and rendering:
        _inside.depth -= 1


def _counted(run_until: Any) -> Any:
    def run(self: Reconciler, *args: Any, **kwargs: Any) -> Any:
        threading.setprofile(_profile)
        sys.setprofile(_profile)
        try:
            return run_until(self, *args, **kwargs)
        finally:
            sys.setprofile(None)
            threading.setprofile(None)
    return run


def _counting_parses(load_all: Any) -> Any:
    def load(stream: Any, Loader: Any) -> Any:
        # The last line is in the config as given and as named.
        COUNTS["config parses"] += bench.CONFIG.splitlines()[-1] in str(stream)
        return load_all(stream, Loader=Loader)
    return load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    setattr(Reconciler, "run_until", _counted(Reconciler.run_until))  # noqa: B010
    setattr(yaml, "load_all", _counting_parses(yaml.load_all))  # noqa: B010
    print(f"{args.servers} servers, Python calls in talprov's timed part")
    for attempt in range(args.repeat):
        COUNTS.clear()
        with tempfile.TemporaryDirectory() as tmp, bench.SlowCloud(0) as cloud:
            cloud.add_image(bench.IMAGE)
            bench.run_talprov(cloud, args.servers, Path(tmp))
        print(f"  run {attempt + 1}: {COUNTS['calls']} calls "
              f"({COUNTS['calls'] / args.servers:.0f} a server), "
              f"{COUNTS['calls rendering']} rendering user data, "
              f"{COUNTS['config parses']} parses of the machine config")
    return 0


if __name__ == "__main__":
    sys.exit(main())
