"""A worker imports only what serving needs: the tools of the CLI (Alembic, with Mako and
Pygments) and anything heavy stay out of `import wsgi`, which every new worker pays during a
deploy (issue 10, item 3; bench/import_time.py measures it)."""

from __future__ import annotations

import json

from .support import run_in_app_process

NEVER_IN_A_WORKER = ("alembic", "mako", "pygments", "matplotlib", "numpy", "pandas", "email_validator")


def test_importing_the_app_loads_no_cli_only_or_heavy_module(tmp_path):
    probe = f"import json, sys, wsgi; print(json.dumps(sorted(m for m in {NEVER_IN_A_WORKER!r} if m in sys.modules)))"
    output = run_in_app_process(probe, tmp_path)
    assert json.loads(output.strip().splitlines()[-1]) == []
