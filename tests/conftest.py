"""Shared fixtures: real models written to disk, a local TVM RPC server, a CLI runner."""
from __future__ import annotations

import contextlib
import copy
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
def digits_pt2(tmp_path_factory) -> Path:
    """The bundled digits CNN saved with torch.export.save (a .pt2 file)."""
    import torch

    from mutatenn.models.digits import load_trained

    path = tmp_path_factory.mktemp("pt2") / "digits.pt2"
    torch.export.save(torch.export.export(load_trained(), (torch.zeros(1, 1, 8, 8),)), str(path))
    return path


@pytest.fixture(scope="session")
def tiny_mod():
    """The tiny CNN of tests/_models.py as a Relax module (mutator tests check none changes it)."""
    from tests._models import tiny_module

    return tiny_module()


@pytest.fixture(scope="session")
def tiny_output(tiny_mod):
    """`tiny_mod` built and run on its fixed input."""
    from tests._models import build_and_run, tiny_input

    return build_and_run(tiny_mod, tiny_input())


# A safety net only: a service is waited for until it is ready or has died, however loaded
# the machine is (a tracker took 15 s to listen on a busy 2-core machine, 60 s was too little).
SERVICE_CAP_S = 600


def start_service(args: list[str], ready, what: str, log_dir: Path) -> subprocess.Popen:
    """``python -m ARGS`` in a session of its own (it may fork workers, ended with it),
    returned once ``ready()`` is true; if the process dies first, the test fails showing
    its output. ``ready`` may raise OSError or InputError while the service starts."""
    from mutatenn.errors import InputError

    log = log_dir / f"{args[0].rsplit('.', 1)[-1]}-{os.getpid()}-{time.time_ns()}.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", *args], stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    started = time.monotonic()
    while True:
        with contextlib.suppress(OSError, InputError):
            if ready():
                return proc
        if proc.poll() is not None:
            pytest.fail(f"{what}: the process exited with {proc.returncode} before it was ready:\n"
                        f"{log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() - started > SERVICE_CAP_S:
            stop_service(proc)
            pytest.fail(f"{what}: still not ready after {SERVICE_CAP_S} s:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.3)


def stop_service(proc: subprocess.Popen) -> None:
    """End a service and every process of its session; wait until they are gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


@pytest.fixture(scope="session")
def rpc_server(tmp_path_factory):
    """A real TVM RPC server on 127.0.0.1; yields its port."""
    port = free_port()
    proc = start_service(["tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port), "--port-end",
                          str(port + 1)], lambda: port_open(port), "TVM RPC server",
                         tmp_path_factory.mktemp("rpc-log"))
    yield port
    stop_service(proc)


# ---------------------------------------------------------------- campaign configs

def campaign_table(*, model: str | Path | dict = "digits", images: str = "digits:8", operators=None, select=None,
                   levels=None, stacks=({"name": "cpu", "target": "cpu"},), criterion: str | None = None,
                   run: dict | None = None, **sections) -> dict:
    """A campaign config as the dict `mutatenn.config.parse_config` reads: [model], [images],
    [mutants] (only the keys given), [[stacks]] (dicts of stack keys), [kill] and [run] (only
    when given), then any other section by name. The tests build their campaign configs here,
    so a change to the config grammar is made in one place, not in each test's TOML text."""
    table = {"model": {"spec": str(model)} if not isinstance(model, dict) else model, "images": {"spec": images}}
    mutants = {"levels": levels, "select": select, "operators": operators}
    if any(v is not None for v in mutants.values()):
        table["mutants"] = {k: v for k, v in mutants.items() if v is not None}
    table["stacks"] = list(stacks)
    if criterion is not None:
        table["kill"] = {"criterion": criterion}
    if run:
        table["run"] = run
    return copy.deepcopy({**table, **sections})  # editing the result leaves the caller's values alone


def write_toml(path: Path, table: dict) -> Path:
    """``table`` written as TOML at ``path`` (tomli_w puts the inline [[stacks]] array first;
    TOML does not order sections); returns ``path``."""
    import tomli_w

    path.write_text(tomli_w.dumps(table))
    return path


def campaign_config(path: Path, **keys) -> Path:
    """The campaign config of `campaign_table(**keys)` written as TOML at ``path``."""
    return write_toml(path, campaign_table(**keys))


# ---------------------------------------------------------------- a small real campaign

# tanh#0 and remove#0 flip labels (killed), tanh#1 does not (survived); pass_opt_level#2
# builds at O2, as the stack does (equivalent); tir_lt_to_le#0 (a PrimFunc edit) is killed.
# The run writes both exports (tests/test_exports.py reads them).
DIGITS_CAMPAIGN = {"images": "digits:20",
                   "operators": {"replace_activation_with_tanh": {"positions": [0, 1]},
                                 "remove_activation": {"positions": [0]}, "pass_opt_level": {"positions": [2]},
                                 "tir_lt_to_le": {"positions": [0]}},
                   "stacks": [{"name": "cpu-O2", "target": "cpu", "opt_level": 2}],
                   "run": {"timeout": 120, "exports": ["mutation-testing-report", "junit"]}}
DIGITS_CAMPAIGN_VERDICTS = {"replace_activation_with_tanh#0": "killed", "replace_activation_with_tanh#1": "survived",
                            "remove_activation#0": "killed", "pass_opt_level#2": "equivalent",
                            "tir_lt_to_le#0": "killed"}


@pytest.fixture(scope="session")
def digits_campaign(tmp_path_factory) -> Path:
    """The run folder of `DIGITS_CAMPAIGN` (repro and localize read it; neither writes to it)."""
    import pandas as pd

    from mutatenn.cli import main

    folder = tmp_path_factory.mktemp("digits-campaign")
    campaign_config(folder / "campaign.toml", **DIGITS_CAMPAIGN)
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


# ---------------------------------------------------------------- the fast tier
# `make test-fast` runs `pytest -m "not slow"`: a tier for before every commit that still
# touches every package (mutatenn, mutators, operators, reports, runfolder). Whole modules
# whose tests run campaigns, start services or fresh processes, or tune are slow here;
# single slow tests elsewhere carry their own `@pytest.mark.slow`.
SLOW_MODULES = frozenset({
    "test_campaign", "test_isolation", "test_memory_safety", "test_frameworks", "test_localize",
    "test_localize_passes", "test_repeat_verdicts", "test_golden", "test_fast_campaigns", "test_kill_criteria",
    "test_kill_matrix", "test_rpc_tracker", "test_schedules", "test_tuning", "test_repro", "test_reuse",
    "test_exports", "test_strengthen", "test_triage", "test_compiler_equivalence", "test_operator_params",
    "test_extensions", "test_api", "test_compression", "test_cli_compare",
})
# Tests of fast modules that need the shared campaign (a minute to run) or a full compare.
SLOW_FIXTURES = frozenset({"digits_campaign", "campaign_report"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        if module in SLOW_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
