"""Atomic writes: a reader never sees a half-written result."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process's umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def respect_umask(path: str | Path) -> None:
    """Give ``path`` (and, for a directory, everything below it) the modes a plain ``open``/``mkdir``
    would: ``mkstemp``/``mkdtemp`` create owner-only files, so a service account could not read them."""
    path = Path(path)
    mask = umask()
    for p in [path, *(path.rglob("*") if path.is_dir() else ())]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def output_failure(exc: BaseException, path: str | Path, what: str = "output") -> Exception:
    """An ``OutputError`` that names ``path``, the cause (no space, read-only, no permission) and the fix."""
    import errno

    from unlearnkit.errors import OutputError

    code = getattr(exc, "errno", None)
    text = str(exc)
    if code == errno.ENOSPC or "No space" in text or "unexpected pos" in text or "file write failed" in text:
        why, fix = "the disk is full", "free space there, or choose another location"
    elif code == errno.EROFS:
        why, fix = "the file system is read-only", "choose a writable location"
    elif code in (errno.EACCES, errno.EPERM):
        why, fix = "permission denied", "choose a location you may write to, or fix its permissions"
    elif code == errno.EISDIR or (Path(path).is_dir() and what == "output file"):
        why, fix = "it is a directory", "give a file name"
    else:
        why, fix = f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}", "check that location"
    return OutputError(f"could not write the {what} {path}: {why}; {fix}")


def check_writable(path: str | Path, what: str = "output file", is_dir: bool = False) -> Path:
    """Fail now, not after an hour of work, when ``path`` cannot be written (creating its parents)."""
    path = Path(path)
    if not is_dir and path.is_dir():
        from unlearnkit.errors import OutputError

        raise OutputError(f"could not write the {what} {path}: it is a directory; give a file name")
    folder = path if is_dir else path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".unlearnkit-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise output_failure(exc, path, what) from exc
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        respect_umask(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise output_failure(exc, path, "output file") from exc
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    return write_text_atomic(path, json.dumps(payload, indent=2, default=_default, allow_nan=True) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_result(path: str | Path, what: str = "result") -> dict[str, Any]:
    """An unlearnkit evaluation result (JSON with ``summary`` and ``per_example``), or a clear error."""
    from unlearnkit.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"no {what} file at {path}: give the JSON that 'unlearnkit eval --out' wrote")
    try:
        data = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not a JSON {what} ({exc}): give the JSON that 'unlearnkit eval --out' wrote") from exc
    if not isinstance(data, dict) or not {"summary", "per_example"} <= set(data):
        keys = sorted(data)[:5] if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{path} is not an unlearnkit evaluation {what} (it has {keys}; a result has 'summary' and "
                        "'per_example'): give the JSON that 'unlearnkit eval --out' wrote")
    return data


def _default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
