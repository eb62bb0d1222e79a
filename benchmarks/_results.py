"""Where benchmark scripts put their figures: one text file under benchmarks/results/."""
from __future__ import annotations

from pathlib import Path


def write_result(path: Path, lines: list[str]) -> int:
    """Write ``lines`` to ``path`` (creating benchmarks/results/) and print them; exit status 0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0
