"""`mutatenn export RUN_DIR --format FORMAT --out FILE`: a campaign in a format other tools read."""
from __future__ import annotations

from pathlib import Path


def cmd_export(args) -> int:
    from ..campaign.rundir import write_export

    path = write_export(Path(args.run_dir), args.format, Path(args.out))
    print(f"{args.format}: {path.resolve()}")
    return 0
