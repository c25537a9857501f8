"""How long a new worker takes to import the app (`import wsgi`: gevent's patching, the app
factory and every module it imports), the part of a deploy where a new worker serves nobody.

    .venv/bin/python -m bench.import_time [--runs 9]

Each run is a fresh interpreter. It prints the median and spread of the wall time and of the CPU
time (user + system: less disturbed by other work on a shared machine), the number of modules
loaded, and whether any heavy module that only the CLI or one route needs was imported.
docs/BENCHMARKS.md, "Import time", has the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Never needed by a web worker: the migration tool chain, plotting, data frames.
HEAVY = ("alembic", "mako", "pygments", "matplotlib", "numpy", "pandas")
PROBE = """
import json, sys, time
started, cpu = time.perf_counter(), time.process_time()
import wsgi
wall, cpu = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps({"wall": wall, "cpu": cpu, "modules": len(sys.modules),
                  "heavy": sorted(m for m in HEAVY if m in sys.modules)}))
""".replace("HEAVY", repr(HEAVY))


def run_once(env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="weighin-import-")
    env = {
        **os.environ,
        "SECRET_KEY": "bench-secret-key-0123456789abcdef",
        "DATABASE_URL": f"sqlite:///{folder}/bench.db",
        "BROKER_URL": "memory://",
        "INSTANCE_PATH": folder,
    }
    runs = [run_once(env) for _ in range(args.runs)]
    wall = sorted(r["wall"] for r in runs)
    cpu = sorted(r["cpu"] for r in runs)
    print(
        f"import wsgi, {args.runs} runs: wall median {statistics.median(wall):.2f} s "
        f"(min {wall[0]:.2f}, max {wall[-1]:.2f}); CPU median {statistics.median(cpu):.2f} s "
        f"(min {cpu[0]:.2f}, max {cpu[-1]:.2f}); {runs[0]['modules']} modules; "
        f"heavy: {', '.join(runs[0]['heavy']) or 'none'}; load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
