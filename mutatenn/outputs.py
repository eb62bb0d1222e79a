"""Writing run-folder files atomically (temporary name, then rename)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import OutputFolderError


def prepare_out_dir(path: Path, allow_existing: bool = False) -> Path:
    """Create the output folder; refuse one that already holds results (nothing is overwritten)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputFolderError(f"output path {str(path)!r} exists and is not a folder")
    if path.exists() and any(path.iterdir()) and not allow_existing:
        raise OutputFolderError(f"output folder {str(path)!r} already holds files; choose a new --out (nothing was overwritten)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".mutatenn-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise OutputFolderError(f"cannot write to output folder {str(path)!r}: {err.strerror or err}") from None
    return path


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=_jsonable) + "\n")


def write_csv(path: Path, frame) -> None:
    write_text_atomic(path, frame.to_csv(index=False))


def _jsonable(value):
    import numpy as np

    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
