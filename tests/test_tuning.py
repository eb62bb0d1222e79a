"""Tuned schedules (`mutatenn.tuning`, `mutatenn tune`): MetaSchedule tunes the bundled
digits CNN into a JSON database; a tuned build takes each PrimFunc's schedule from it,
computes what an unscheduled build computes, and gives a TIR mutant's changed PrimFunc the
default schedule instead. Real TVM, real tuning (a few trials), no mocks."""
from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import tvm
import tvm_ffi
from tvm import relax, tirx

import mutators
from mutatenn import cli, tuning
from mutatenn.build import BuildOptions, BuildStats, build_artifact, parse_target
from mutatenn.errors import ConfigError, InputError, ModelError
from mutatenn.execute import input_batch
from mutatenn.images import load_image_set
from mutatenn.schedules import SCHEDULED_ATTR

TRIALS = 8  # digits has 8 tasks: one candidate each


# ---------------------------------------------------------------- fixtures and helpers

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh MUTATENN_CACHE_DIR for this module's tuning."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MUTATENN_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def digits(digits_program):
    return digits_program


@pytest.fixture(scope="module")
def cpu():
    return parse_target("cpu")


@pytest.fixture(scope="module")
def tuned(cache, digits, cpu):
    """(report, log lines, seconds): digits tuned with `TRIALS` trials into the cache.
    Every record is kept, even where the default schedule measured faster (on digits'
    tiny kernels it always does), so that tuned builds have hits to check."""
    lines: list[str] = []
    start = time.monotonic()
    report = tuning.tune(digits.mod, cpu, TRIALS, tuning.database_dir("digits", cpu), log=lines.append,
                         strategy="replay-trace", model_spec="digits", keep_faster_default=False)
    return report, lines, time.monotonic() - start


@pytest.fixture(scope="module")
def batch(digits):
    return input_batch(digits, load_image_set("digits").head(16))


def build(mod, target, schedule: str, db: Path | None = None, stats: BuildStats | None = None):
    options = BuildOptions(schedule=schedule, tuning_db=str(db or ""))
    return build_artifact(mod, target, options, stats=stats)


def run(executable, batch: np.ndarray) -> np.ndarray:
    vm = relax.VirtualMachine(executable, tvm.cpu())
    return np.concatenate([vm["main"](tvm.runtime.tensor(row[None])).numpy() for row in batch])


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def prim_funcs(mod) -> dict:
    return {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tirx.PrimFunc)}


def changed_prim_funcs(original, mutant, target) -> set[str]:
    """Names of the fused PrimFuncs of ``mutant`` that differ from the original's."""
    before = prim_funcs(tuning.fuse(original, target.tvm_target()))
    after = prim_funcs(tuning.fuse(mutant, target.tvm_target()))
    return {name for name, func in after.items()
            if name not in before or not tvm_ffi.structural_equal(before[name], func)}


# ---------------------------------------------------------------- tuning

def test_tuning_writes_a_database_with_records(tuned, cpu):
    report, lines, seconds = tuned
    db = tuning.database_dir("digits", cpu)
    assert report.db_dir == db and tuning.has_database(db)
    assert report.tasks == 8 and report.trials == TRIALS
    assert report.cost_model in ("random", "xgb") and report.strategy == "replay-trace"
    records = (db / tuning.RECORD_FILE).read_text().splitlines()
    assert len(records) == TRIALS
    assert report.best_us and all(us > 0 for us in report.best_us.values())
    info = json.loads((db / tuning.INFO_FILE).read_text())
    assert info["model"] == "digits" and info["target"] == "cpu" and info["tvm"] == tvm.__version__
    assert info["trials"] == TRIALS and info["cost_model"] == report.cost_model and info["date"]
    assert set(report.default_us) == set(report.best_us) and all(us > 0 for us in report.default_us.values())
    assert info["prefer_default"] == {}  # keep_faster_default=False
    assert len(lines) >= 2 and "8 tasks" in lines[0]  # a header, then one line per measured batch
    assert not [p for p in db.parent.iterdir() if p.name.startswith(".")], "a temporary folder was left behind"
    print(f"digits: {report.summary()}; {seconds:.1f} s with setup")


def test_tuned_build_computes_what_an_unscheduled_build_does(tuned, digits, cpu, batch):
    stats = BuildStats("tuned")
    tuned_out = run(build(digits.mod, cpu, "tuned", tuning.require_database("digits", cpu), stats), batch)
    plain_out = run(build(digits.mod, cpu, "none"), batch)
    assert rel_l2(tuned_out, plain_out) <= 1e-5
    assert (tuned_out.argmax(1) == plain_out.argmax(1)).all()
    report = tuned[0]
    assert set(stats.tuned_hits) == set(report.best_us)  # every tuned task hit, nothing else
    assert set(stats.tuned_misses) == set(report.untuned)
    assert set(stats.kernels.scheduled) <= set(stats.tuned_misses)  # the default schedule only got the misses


def test_tuned_build_agrees_on_a_second_model(cache, cpu, tmp_path):
    """A convnet with batch-norm, residual add and pooling (other kernels than digits'),
    tuned with one candidate per kernel and every record applied."""
    from test_schedules import inputs_for, small_convnet

    program = small_convnet()
    db = tmp_path / "convnet-db"
    report = tuning.tune(program.mod, cpu, 16, db, log=lambda _line: None, strategy="replay-trace",
                         model_spec="small-convnet", keep_faster_default=False)
    assert len(report.best_us) >= 3  # tasks with a measured record
    stats = BuildStats("tuned")
    xs = np.concatenate(inputs_for(program.input.shape, n=4))
    tuned_out = run(build(program.mod, cpu, "tuned", db, stats), xs)
    plain_out = run(build(program.mod, cpu, "none"), xs)
    assert set(stats.tuned_hits) == set(report.best_us) and set(stats.tuned_misses) == set(report.untuned)
    assert rel_l2(tuned_out, plain_out) <= 1e-5
    assert (tuned_out.argmax(1) == plain_out.argmax(1)).all()


def test_hits_get_the_tuned_schedule_and_the_attribute(tuned, digits, cpu):
    fused = tuning.fuse(digits.mod, cpu.tvm_target())
    stats = tuning.TuneStats()
    out = tuning.apply_database_pass(tuning.require_database("digits", cpu), cpu.spec, stats)(fused)
    before, after = prim_funcs(fused), prim_funcs(out)
    assert stats.hits and set(stats.hits) | set(stats.misses) == set(before)
    for name in stats.hits:
        assert bool(after[name].attrs[SCHEDULED_ATTR])
        assert "global_symbol" not in after[name].attrs  # the workload's "main" must not leak into the build
        assert not tvm_ffi.structural_equal(after[name], before[name].with_attr(SCHEDULED_ATTR, True))
    for name in stats.misses:
        assert after[name].same_as(before[name])


def test_tir_mutant_misses_on_its_changed_function_and_hits_elsewhere(tuned, digits, cpu, batch):
    candidates = mutators.enumerate_mutants(digits.mod, operators=["tir_store_add1"])
    mutant = next(m for m in candidates if m.site.startswith("add3 /") and m.mod is not None)
    changed = changed_prim_funcs(digits.mod, mutant.mod, cpu)
    assert changed == {"fused_matmul1_add3"}
    stats = BuildStats("tuned")
    mutant_out = run(build(mutant.mod, cpu, "tuned", tuning.require_database("digits", cpu), stats), batch)
    hit_before = set(tuned[0].best_us)
    assert set(stats.tuned_misses) >= changed and not changed & set(stats.tuned_hits)
    assert set(stats.tuned_hits) == hit_before - changed
    assert set(stats.kernels.scheduled) == changed  # the miss got the default schedule, the hits kept theirs
    # The mutant still computes what it computes unscheduled (logits + 1), not the original.
    plain = run(build(mutant.mod, cpu, "none"), batch)
    assert rel_l2(mutant_out, plain) <= 1e-5
    original = run(build(digits.mod, cpu, "none"), batch)
    assert np.allclose(mutant_out, original + 1, atol=1e-4)


def test_missing_database_is_a_config_error_naming_the_command(tmp_path, cache, digits, cpu):
    with pytest.raises(ConfigError) as err:
        tuning.apply_database_pass(tmp_path / "nothing-here", cpu.spec)
    message = str(err.value)
    assert "\n" not in message and "no tuning records" in message and "mutatenn tune" in message
    with pytest.raises(ConfigError, match="mutatenn tune --model torchvision:alexnet --target cpu --trials N"):
        tuning.require_database("torchvision:alexnet", cpu)
    with pytest.raises(ConfigError, match="no tuning records"):
        build(digits.mod, cpu, "tuned", None)  # schedule=tuned with no database given


def test_a_failed_tuning_leaves_the_existing_database_alone(tuned, cpu):
    db = tuning.database_dir("digits", cpu)
    before = {p.name: p.read_bytes() for p in db.glob("*.json")}
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4), "float32"))
    with bb.function("main", [x]):
        bb.emit_func_output(x)
    with pytest.raises(ModelError, match="no TensorIR functions"):
        tuning.tune(bb.get(), cpu, 4, db, log=lambda _: None)
    with pytest.raises(InputError, match="at least 1"):
        tuning.tune(bb.get(), cpu, 0, db, log=lambda _: None)
    assert {p.name: p.read_bytes() for p in db.glob("*.json")} == before
    assert not [p for p in db.parent.iterdir() if p.name.startswith(".")]


def test_records_slower_than_the_default_schedule_are_not_applied(tuned, digits, cpu, tmp_path):
    """What `keep_faster_default` writes: tuning.json lists the workloads whose best
    record lost to the default schedule, and a tuned build leaves those to it."""
    report = tuned[0]
    loser = sorted(report.best_us)[0]
    db = tmp_path / "db"
    db.mkdir()
    source = tuning.require_database("digits", cpu)
    for name in (tuning.WORKLOAD_FILE, tuning.RECORD_FILE):
        (db / name).write_bytes((source / name).read_bytes())
    fused = tuning.fuse(digits.mod, cpu.tvm_target())
    normalize = tvm_ffi.get_global_func("tvm.s_tir.meta_schedule.normalize_mod")
    workload_hash = f"{tvm_ffi.structural_hash(normalize(fused[loser])) & 0xFFFFFFFFFFFFFFFF:016x}"
    info = json.loads((source / tuning.INFO_FILE).read_text())
    (db / tuning.INFO_FILE).write_text(json.dumps({**info, "prefer_default": {workload_hash: loser}}))
    direct = tuning.TuneStats()
    tuning.apply_database_pass(db, cpu.spec, direct)(fused)
    assert direct.kept_default == [loser] and loser in direct.misses
    stats = BuildStats("tuned")
    out = run(build(digits.mod, cpu, "tuned", db, stats), input_batch(digits, load_image_set("digits").head(2)))
    assert loser in stats.tuned_misses and loser not in stats.tuned_hits
    assert set(stats.tuned_hits) == set(report.best_us) - {loser}
    assert np.isfinite(out).all()


# ---------------------------------------------------------------- where databases live

def test_database_dir_keys_model_target_and_tvm_version(tmp_path, monkeypatch, cpu):
    monkeypatch.setenv("MUTATENN_CACHE_DIR", str(tmp_path / "c"))
    assert tuning.cache_root() == tmp_path / "c"
    digits_db = tuning.database_dir("digits", cpu)
    assert digits_db.is_relative_to(tmp_path / "c" / "tuning") and digits_db.name.endswith(f"-tvm{tvm.__version__}")
    assert digits_db.name.startswith("cpu-")
    assert tuning.database_dir("bundled:digits", cpu) == digits_db
    assert tuning.database_dir("digits", parse_target("cpu-generic")) != digits_db
    assert tuning.database_dir("torchvision:resnet18", cpu).parent != digits_db.parent
    model = tmp_path / "model.onnx"
    model.write_bytes(b"version 1")
    first = tuning.database_dir(str(model), cpu)
    assert first == tuning.database_dir(str(model), cpu)
    model.write_bytes(b"version 2")  # an edited file must not reuse the old records
    assert tuning.database_dir(str(model), cpu) != first
    # An RPC target builds for a named CPU target and shares its records.
    assert tuning.database_dir("digits", parse_target("rpc://127.0.0.1:9000/cpu-avx2")) == \
        tuning.database_dir("digits", parse_target("cpu-avx2"))
    monkeypatch.delenv("MUTATENN_CACHE_DIR")
    assert tuning.cache_root() == Path.home() / ".cache" / "mutatenn"
    with pytest.raises(ModelError, match="cannot be read"):
        tuning.database_dir(str(tmp_path / "missing.pt2"), cpu)


# ---------------------------------------------------------------- the command line

def tune_cli(*args: str) -> tuple[int, str, str]:
    """``mutatenn tune ARGS`` through `mutatenn.cli.main`, in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["tune", *args])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("args, message", [
    (["--target", "cuda"], "CPU (LLVM) targets only"),
    (["--target", "rpc://127.0.0.1:9000/cpu-avx2"], "not over RPC"),
    (["--target", "gpu"], "unknown target"),
    (["--trials", "0"], "--trials must be at least 1"),
])
def test_cli_refuses_bad_input_with_one_line(args, message, cache):
    argv = ["--model", "digits", "--trials", "4", *args]
    code, out, err = tune_cli(*argv)
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("mutatenn: error:")


def test_cli_refuses_to_replace_records_without_force(tuned):
    code, _, err = tune_cli("--model", "digits", "--target", "cpu", "--trials", "4")
    assert code == 2 and "--force" in err and err.count("\n") == 1


def test_cli_force_replaces_the_records(tuned, cpu):
    db = tuning.database_dir("digits", cpu)
    before = json.loads((db / tuning.INFO_FILE).read_text())
    code, out, err = tune_cli("--model", "digits", "--target", "cpu", "--trials", "2", "--seed", "1", "--force")
    assert code == 0, err
    assert "8 tasks" in out and str(db) in out and "schedule=tuned" in out
    after = json.loads((db / tuning.INFO_FILE).read_text())
    assert after["seed"] == 1 and before["seed"] == 0 and tuning.has_database(db)
    assert len((db / tuning.RECORD_FILE).read_text().splitlines()) == 2  # replaced, not appended to
    assert not [p for p in db.parent.iterdir() if p.name.startswith(".")]
