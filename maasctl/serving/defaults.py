"""`maasctl serve`'s defaults and choices, declared once for the server and the CLI.

Stdlib only: the CLI imports this on every start-up (help text, completion), before anything heavy.
"""

from __future__ import annotations

DEFAULT_MAX_BODY = 64 * 1024 * 1024  # bytes; larger request bodies get 413
BACKENDS = ("maasctl", "tfserving")
ENGINES = ("maasctl", "ray")  # serve --engine: this process, or a Ray Serve application (serving/ray_engine.py)
