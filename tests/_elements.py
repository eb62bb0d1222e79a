"""The `mutation-testing-elements` web component from the npm registry, at the version
`reports.exports.ELEMENTS_VERSION`, unpacked into .cache/ (ignored by git).

`make elements` runs this file; the export test calls `elements_script()` and skips,
naming what is missing, when npm is absent or the registry cannot be reached."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reports.exports import ELEMENTS_VERSION  # noqa: E402

PACKAGE = "mutation-testing-elements"
FOLDER = ROOT / ".cache" / f"{PACKAGE}-{ELEMENTS_VERSION}"
SCRIPT = FOLDER / "package" / "dist" / "mutation-test-elements.js"


class ElementsMissing(RuntimeError):
    """The component cannot be had here; the message says what is missing."""


def elements_script() -> Path:
    """The component's browser bundle, fetched with `npm pack` on first use."""
    if SCRIPT.is_file():
        return SCRIPT
    npm = shutil.which("npm")
    if npm is None:
        raise ElementsMissing(f"npm is not installed, so {PACKAGE}@{ELEMENTS_VERSION} cannot be fetched "
                              "(make elements, or apt-get install npm)")
    FOLDER.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "pack", "--silent", f"{PACKAGE}@{ELEMENTS_VERSION}"], cwd=FOLDER,
                          capture_output=True, text=True, timeout=300)
    tarballs = sorted(FOLDER.glob(f"{PACKAGE}-*.tgz"))
    if done.returncode != 0 or not tarballs:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no tarball"]
        raise ElementsMissing(f"npm pack {PACKAGE}@{ELEMENTS_VERSION} failed: {tail[0]}")
    with tarfile.open(tarballs[0]) as tar:
        tar.extractall(FOLDER, filter="data")
    if not SCRIPT.is_file():
        raise ElementsMissing(f"{PACKAGE}@{ELEMENTS_VERSION} has no {SCRIPT.relative_to(FOLDER)}")
    return SCRIPT


if __name__ == "__main__":
    try:
        print(elements_script())
    except ElementsMissing as err:
        print(f"make elements: {err}", file=sys.stderr)
        raise SystemExit(1) from None
