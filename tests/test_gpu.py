"""CUDA on a real GPU: digits compared with the CPU build, and a tiny campaign with a CUDA
stack beside a CPU one. Every GPU test skips, with its reason, where TVM sees no GPU."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tvm
from conftest import campaign_table

from mutatenn.campaign.engine import run_campaign
from mutatenn.compare import compare
from mutatenn.config import parse_config
from mutatenn.errors import ConfigError
from mutatenn.preflight import preflight


def _campaign_config():
    """Two stacks, one on the GPU and one on the host CPU; one pass mutant keeps it short
    (preflighted: a machine without a GPU refuses the cuda stack)."""
    return preflight(parse_config(campaign_table(
        images="digits:20", select={"sample": 1, "seed": 1}, operators={"pass_opt_level": "all"},
        stacks=[{"name": "gpu", "target": "cuda", "opt_level": 2}, {"name": "host", "target": "cpu", "opt_level": 2}],
        criterion="top1_agreement < 1.0", run={"timeout": 300})))


def _rel_l2(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


@pytest.fixture
def gpu():
    if not tvm.cuda(0).exist:
        pytest.skip("no CUDA GPU on this machine (tvm.cuda(0).exist is false)")


def test_the_gpu_campaign_config_is_valid_anywhere():
    """Checked without a GPU too, so the GPU campaign below cannot rot unseen: every key
    is accepted, and only the cuda stack is refused, for want of a GPU."""
    if not tvm.cuda(0).exist:
        with pytest.raises(ConfigError, match=r"'stacks\[0\]\.target'.*no CUDA GPU"):
            _campaign_config()
        return
    config = _campaign_config()
    assert [(s.name, s.target_name) for s in config.stacks] == [("gpu", "cuda"), ("host", "cpu")]


@pytest.mark.gpu
def test_digits_on_cuda_agrees_with_the_cpu(tmp_path, gpu):
    result = compare("digits", "digits:32", "tvm:cuda", "tvm:cpu", tmp_path / "cmp", render=False)
    assert result.errors == {}
    row = result.table.set_index("variant").loc["tvm:cuda"]
    assert row["top1_agreement"] == 1.0 and row["rel_l2"] < 1e-4


@pytest.mark.gpu
def test_a_campaign_with_a_cuda_and_a_cpu_stack(tmp_path, gpu):
    out = tmp_path / "run"
    run_campaign(_campaign_config(), out, jobs=1, quiet=True, render=False)
    originals = json.loads((out / "run.json").read_text())["originals"]
    logits = {stack: np.load(out / "outputs" / f"{key}.npz")["logits"] for stack, key in originals.items()}
    assert (logits["gpu"].argmax(1) == logits["host"].argmax(1)).all()
    assert _rel_l2(logits["host"], logits["gpu"]) < 1e-4
