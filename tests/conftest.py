"""Shared fixtures: real models written to disk, a local TVM RPC server, a CLI runner."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")

ROOT = Path(__file__).resolve().parent.parent


def _pass_recorder():
    import tvm

    @tvm.ir.instrument.pass_instrument
    class PassRecorder:
        """A TVM pass instrument: names of the passes run, and the module right after each
        pass named in ``keep`` (what the product's own builds ran, seen from inside)."""

        def __init__(self, keep=()):
            self.names: list[str] = []
            self.keep = set(keep)
            self.after: dict = {}

        def run_before_pass(self, mod, info):
            self.names.append(info.name)

        def run_after_pass(self, mod, info):
            if info.name in self.keep:
                self.after[info.name] = mod

    return PassRecorder


PassRecorder = _pass_recorder()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None):
    """Run `mutatenn ARGS` in a fresh process, as a user would; returns CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "mutatenn.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=timeout, env=full_env)


@pytest.fixture(scope="session")
def digits_program():
    from mutatenn.loading import load_program

    return load_program("digits")


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory) -> Path:
    """The bundled digits CNN exported to ONNX with torch.onnx."""
    from mutatenn.models.digits import load_trained
    from mutatenn.runners import export_torch_to_onnx

    path = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    return export_torch_to_onnx(load_trained(), (1, 1, 8, 8), path)


@pytest.fixture(scope="session")
def rpc_server():
    """A real TVM RPC server on 127.0.0.1; yields its port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1",
                             "--port", str(port), "--port-end", str(port + 1)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("TVM RPC server did not start")
    yield port
    # The server forks popen workers of its own: end the whole process group, not only it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


# ---------------------------------------------------------------- a small real campaign

# tanh#0 and remove#0 flip labels (killed), tanh#1 does not (survived); pass_opt_level#2
# builds at O2, as the stack does (equivalent); tir_lt_to_le#0 (a PrimFunc edit) is killed.
# The run writes both exports (tests/test_exports.py reads them).
DIGITS_CAMPAIGN = """
[model]
spec = "digits"
[images]
spec = "digits:20"
[mutants.operators]
replace_activation_with_tanh = { positions = [0, 1] }
remove_activation = { positions = [0] }
pass_opt_level = { positions = [2] }
tir_lt_to_le = { positions = [0] }
[[stacks]]
name = "cpu-O2"
target = "cpu"
opt_level = 2
[run]
timeout = 120
exports = ["mutation-testing-report", "junit"]
"""
DIGITS_CAMPAIGN_VERDICTS = {"replace_activation_with_tanh#0": "killed", "replace_activation_with_tanh#1": "survived",
                            "remove_activation#0": "killed", "pass_opt_level#2": "equivalent",
                            "tir_lt_to_le#0": "killed"}


@pytest.fixture(scope="session")
def digits_campaign(tmp_path_factory) -> Path:
    """The run folder of `DIGITS_CAMPAIGN` (repro and localize read it; neither writes to it)."""
    import pandas as pd

    from mutatenn.cli import main

    folder = tmp_path_factory.mktemp("digits-campaign")
    (folder / "campaign.toml").write_text(DIGITS_CAMPAIGN)
    assert main(["run", str(folder / "campaign.toml"), "--out", str(folder / "run"), "--jobs", "2", "--quiet",
                 "--no-report"]) == 0
    verdicts = pd.read_csv(folder / "run" / "verdicts.csv").set_index("mutant_id")["verdict"].to_dict()
    assert verdicts == DIGITS_CAMPAIGN_VERDICTS
    return folder / "run"


# ---------------------------------------------------------------- browser checks (Debian's chromium)

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make browser, or apt-get install chromium)")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, driven by Playwright (one per test module)."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A page that records console errors, page errors, dialogs and non-local requests."""

    def __init__(self, browser, report: Path):
        self.errors, self.dialogs, self.remote = [], [], []
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("request", lambda r: r.url.split(":")[0] not in ("file", "data") and self.remote.append(r.url))
        self.page.goto(report.as_uri(), wait_until="load")

    def visible_rows(self, table="#mutant-table"):
        return self.page.locator(f"{table} tbody tr:visible")

    def check_clean(self):
        assert self.errors == [] and self.dialogs == [] and self.remote == []
