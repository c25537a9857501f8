"""A worker imports only what serving needs: the tools of the CLI (Alembic, with Mako and
Pygments) and anything heavy stay out of `import wsgi`, which every new worker pays during a
deploy (issue 10, item 3; bench/import_time.py measures it)."""

from __future__ import annotations

import json
import subprocess
import sys

from .support import ROOT, server_env

NEVER_IN_A_WORKER = ("alembic", "mako", "pygments", "matplotlib", "numpy", "pandas", "email_validator")


def test_importing_the_app_loads_no_cli_only_or_heavy_module(tmp_path):
    probe = f"import json, sys, wsgi; print(json.dumps(sorted(m for m in {NEVER_IN_A_WORKER!r} if m in sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
