"""Progress bars that a process can silence after its libraries were loaded.

tqdm reads ``TQDM_DISABLE`` once, when it is first imported; a benchmark worker sets it later (its parent
reports each job as it ends, and the bars of several workers would interleave), so it is read here at
every bar.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm


def silenced() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes")


def progress_bar(iterable=None, *, desc: str | None = None, hidden: bool | None = None, **kwargs) -> tqdm:
    """A tqdm bar, hidden when ``hidden`` (default: when there is no ``desc``) or when the process is silenced."""
    hidden = desc is None if hidden is None else hidden
    return tqdm(iterable, desc=desc, disable=hidden or silenced(), **kwargs)
