"""The documentation site builds with no broken link or missing page (`mkdocs build
--strict`), and the README stays a short front page that points into it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_documentation_site_builds_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("index.html", "campaigns/index.html", "stacks/index.html", "EXTENDING/index.html",
                 "search/search_index.json"):
        assert (tmp_path / "site" / page).is_file(), page


def test_the_readme_is_a_front_page_linking_into_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 150
    assert "make demo" in readme and "make test" in readme
    for link in ("docs/campaigns.md", "docs/comparisons.md", "docs/EXTENDING.md"):
        assert f"({link})" in readme and (ROOT / link).is_file(), link
