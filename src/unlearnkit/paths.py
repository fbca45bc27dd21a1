"""Where unlearnkit keeps what it can rebuild: converted models, generated benchmarks, demo runs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$UNLEARNKIT_CACHE``, else ``~/.cache/unlearnkit``."""
    return Path(os.environ.get("UNLEARNKIT_CACHE") or Path.home() / ".cache" / "unlearnkit").expanduser()
