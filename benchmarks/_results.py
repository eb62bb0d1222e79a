"""Where benchmark scripts put their figures: one text file under benchmarks/results/,
written whole under a temporary name and renamed into place (a run cut short leaves the
previous figures, never half of new ones), and printed. Every benchmark writes through here."""
from __future__ import annotations

from pathlib import Path

SEPARATOR = "=" * 100


def write_result(path: Path, lines: list[str], append: bool = False) -> int:
    """Write ``lines`` to ``path`` (``append``: after what it holds, below a separator)
    and print them; exit status 0."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines).rstrip("\n") + "\n"
    if append and path.exists():
        text = path.read_text().rstrip("\n") + f"\n\n{SEPARATOR}\n" + text
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    print("\n".join(lines))
    return 0
