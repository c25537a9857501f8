"""gunicorn settings for the flask-sse peer: Weigh-in's gunicorn.conf.py values, without its hooks.

The hooks start and stop Weigh-in's broker, which the peer does not have; every plain setting
(worker class, connections, timeouts, keep-alive, request limits, logging) is the same.
"""

import runpy
from pathlib import Path

_settings = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
globals().update(
    {name: value for name, value in _settings.items() if not name.startswith("_") and not callable(value)}
)
