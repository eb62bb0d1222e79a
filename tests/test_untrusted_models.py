"""Model files from untrusted sources: each format's crafted file is refused in one line
with exit 2 before any framework loader sees it, a canary proves its payload never ran,
and ``--trust-model`` lets benign (and trusted) files load.

Every crafted file is built here from a real export (never shipped as a blob). TensorFlow
models are built and loaded in subprocesses: TensorFlow must not meet torchvision in the
pytest process (`tests/test_frameworks.py`).
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, campaign_config, campaign_table

from mutatenn.cli import main

REFUSED = "refused as untrusted"


class _Canary:
    """Unpickled, it creates the file at ``path`` (what a payload in a model file would do)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _refused_line(capsys, code: int) -> str:
    """The command's stderr must be exactly one refusal line, and the exit status 2."""
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and REFUSED in err[0] and "--trust-model" in err[0], err
    return err[0]


# ---------------------------------------------------------------- .pt2
@pytest.fixture(scope="module")
def pt2_files(digits_pt2, tmp_path_factory):
    """The digits CNN saved with torch.export.save (conftest), and crafted copies of it."""
    import torch

    folder = tmp_path_factory.mktemp("pt2-crafted")
    good = digits_pt2
    canary = folder / "canary"
    with zipfile.ZipFile(good) as z:
        config = json.loads(z.read(next(n for n in z.namelist() if n.endswith("model_weights_config.json"))))
    weights = {"file": next(iter(config["config"].values()))["path_name"]}

    def weight_config(data: bytes) -> bytes:
        config = json.loads(data)
        config["config"][next(iter(config["config"]))]["use_pickle"] = True
        return json.dumps(config).encode()

    files = {"good": good}
    files["pickled_weight"] = _edit_zip(good, folder / "pickled_weight.pt2", {
        "/data/weights/model_weights_config.json": weight_config,
        "/data/weights/": lambda data, name: pickle.dumps(_Canary(canary)) if name.endswith("/" + weights["file"])
        else data,
    })
    files["pickled_sample_inputs"] = _edit_zip(good, folder / "sample_inputs.pt2", {
        "/data/sample_inputs/model.pt": lambda data: pickle.dumps(_Canary(canary))})
    files["guard_code"] = _edit_zip(good, folder / "guard.pt2", {
        "/models/model.json": lambda data: json.dumps(
            {**json.loads(data), "guards_code": [f"open('{canary}', 'w') is None"]}).encode()})
    # Trusted and benign: a weight pickled by torch.save (a plain tensor), refused unless trusted.
    files["plain_pickled_weight"] = _edit_zip(good, folder / "plain_pickled.pt2", {
        "/data/weights/model_weights_config.json": weight_config,
        "/data/weights/": lambda data, name: _torch_saved(torch, good, weights["file"])
        if name.endswith("/" + weights["file"]) else data,
    })
    return files, canary


def _torch_saved(torch, archive: Path, weight_file: str) -> bytes:
    """The raw weight ``weight_file`` of ``archive`` as torch.save bytes of the same tensor."""
    import io

    with zipfile.ZipFile(archive) as z:
        name = next(n for n in z.namelist() if n.endswith("/data/weights/" + weight_file))
        config = json.loads(z.read(next(n for n in z.namelist() if n.endswith("model_weights_config.json"))))
        meta = next(m for m in config["config"].values() if m["path_name"] == weight_file)["tensor_meta"]
        raw = torch.frombuffer(bytearray(z.read(name)), dtype=torch.float32)
    buffer = io.BytesIO()
    torch.save(torch.nn.Parameter(raw.reshape([s["as_int"] for s in meta["sizes"]]).clone()), buffer)
    return buffer.getvalue()


def _edit_zip(source: Path, target: Path, edits: dict) -> Path:
    """A copy of a zip archive with entries rewritten: ``{name suffix or folder: f(data[, name])}``
    (a key ending in "/" edits every entry of that folder)."""
    import inspect

    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as out:
        for info in src.infolist():
            data = src.read(info.filename)
            for key, edit in edits.items():
                hit = (key.endswith("/") and key in info.filename and not info.filename.endswith(".json")) or (
                    not key.endswith("/") and info.filename.endswith(key))
                if hit:
                    data = edit(data, info.filename) if len(inspect.signature(edit).parameters) == 2 else edit(data)
            out.writestr(info, data)
    return target


def _command(name: str, model: Path, out: Path) -> list[str]:
    """Each command that loads a model, on ``model``, writing (if it writes) to ``out``."""
    if name == "run":
        config = campaign_config(out.parent / f"{out.name}.toml", model=model, images="digits:4", levels=["graph"],
                                 select={"sample": 1, "seed": 1})
        return ["run", str(config), "--out", str(out), "--quiet"]
    return {
        "compare": ["compare", "--model", str(model), "--images", "digits:4", "--variants", "tvm:cpu",
                    "--baseline", "torch", "--out", str(out)],
        "mutants": ["mutants", "--model", str(model)],
        "tune": ["tune", "--model", str(model), "--trials", "1"],
        "localize": ["localize", "--model", str(model), "--a", "tvm:cpu:O0", "--b", "tvm:cpu", "--images",
                     "digits:2", "--out", str(out)],
    }[name]


@pytest.mark.parametrize("command", ["compare", "run", "mutants", "tune", "localize"])
def test_a_pt2_with_a_pickled_weight_is_refused_by_every_command(command, pt2_files, tmp_path, capsys,
                                                                   monkeypatch):
    files, canary = pt2_files
    monkeypatch.setenv("MUTATENN_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    line = _refused_line(capsys, main(_command(command, files["pickled_weight"], out)))
    assert "pickled_weight.pt2" in line and "PyTorch .pt2" in line and "use_pickle" in line and "conv1" in line
    assert not canary.exists()  # the pickle never ran
    assert not out.exists()  # nothing written to the output folder
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("crafted, entry", [("pickled_sample_inputs", "sample_inputs/model.pt"),
                                            ("guard_code", "guard expression"),
                                            ("plain_pickled_weight", "use_pickle")])
def test_every_pickle_and_exec_path_of_a_pt2_is_refused(crafted, entry, pt2_files, capsys):
    """torch.export.load falls back to weights_only=False for sample inputs, and exec()s
    guard expressions in .module(): both are refused as a pickled weight is."""
    files, canary = pt2_files
    line = _refused_line(capsys, main(["mutants", "--model", str(files[crafted])]))
    assert entry in line
    assert not canary.exists()


def test_trusting_a_pt2_loads_it_and_lets_its_payload_run(pt2_files, capsys):
    """The benign export loads with and without the flag; a trusted pickled tensor loads;
    the crafted pickle, trusted, runs (so the canary above can tell)."""
    files, canary = pt2_files
    for args in (["--model", str(files["good"])], ["--model", str(files["good"]), "--trust-model"],
                 ["--model", str(files["plain_pickled_weight"]), "--trust-model"]):
        assert main(["mutants", *args, "--json"]) == 0
        assert json.loads(capsys.readouterr().out), args
    main(["mutants", "--model", str(files["pickled_weight"]), "--trust-model"])
    assert canary.exists()
    canary.unlink()


def test_a_campaign_config_trusts_its_model_and_run_json_says_so(pt2_files, tmp_path, capsys):
    from mutatenn.config import parse_config, with_model_trusted

    files, _ = pt2_files
    raw = campaign_table(model={"spec": str(files["plain_pickled_weight"]), "trusted": True}, images="digits:4")
    assert parse_config(raw).trusted
    with pytest.raises(Exception, match="model.trusted"):
        parse_config({**raw, "model": {"spec": "digits", "trusted": "yes"}})
    trusted = with_model_trusted(parse_config({**raw, "model": "digits"}))
    assert trusted.trusted and trusted.raw["model"] == {"spec": "digits", "trusted": True}
    assert trusted.fingerprint() == parse_config({**raw, "model": "digits"}).fingerprint()
    # compare records the trust in run.json
    out = tmp_path / "cmp"
    assert main(["compare", "--model", str(files["plain_pickled_weight"]), "--trust-model", "--images", "digits:4",
                 "--variants", "tvm:cpu", "--baseline", "tvm:cpu:O0", "--out", str(out), "--no-report"]) == 0
    assert json.loads((out / "run.json").read_text())["model_trusted"] is True


# ---------------------------------------------------------------- ONNX
def _onnx_model(folder: Path, name: str, location: str | None = None, domain: str = ""):
    """A tiny ONNX classifier of 8x8 digits (Flatten, MatMul); its weight stored as external
    data at ``location`` when given; its MatMul in ``domain``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32), "w")
    nodes = [helper.make_node("Flatten", ["input"], ["flat"]),
             helper.make_node("MatMul" if not domain else "Exec", ["flat", "w"], ["logits"], domain=domain)]
    graph = helper.make_graph(nodes, "digits", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                              [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], [weight])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    path = folder / f"{name}.onnx"
    if location is None:
        onnx.save(model, str(path))
        return path
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
              size_threshold=0)
    if location != "w.bin":  # point the weight elsewhere
        model = onnx.load(str(path), load_external_data=False)
        for entry in model.graph.initializer[0].external_data:
            if entry.key == "location":
                entry.value = location
        onnx.save(model, str(path))
    return path


class _FifoCanary:
    """A named pipe whose opening for reading is recorded: a writer blocks until a reader
    opens it, so ``opened`` says whether anything read the file."""

    def __init__(self, path: Path):
        self.path = path
        os.mkfifo(path)
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def _write(self):
        with open(self.path, "wb"):
            self.opened.set()

    def close(self) -> bool:
        """Whether a reader had opened it; releases the writer either way."""
        was = self.opened.is_set()
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self.thread.join(5)
        os.close(fd)
        return was


@pytest.mark.parametrize("where", ["parent", "absolute"])
def test_onnx_external_data_outside_the_folder_is_refused_and_never_read(where, tmp_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    fifo = _FifoCanary(tmp_path / "secret")
    location = "../secret" if where == "parent" else str(tmp_path / "secret")
    path = _onnx_model(folder, "outside", location)
    out = tmp_path / "out"
    try:
        line = _refused_line(capsys, main(_command("compare", path, out)))
    finally:
        read = fifo.close()
    assert not read  # the file outside the model's folder was never opened
    assert repr(location) in line and "ONNX" in line and "outside.onnx" in line
    assert not out.exists()


def test_trusted_onnx_external_data_outside_the_folder_meets_onnx_own_guard(tmp_path, capsys):
    """Trusted, the file passes MutateNN's check and reaches onnx.load, whose own guard
    (ONNX 1.16 and later) refuses the location: a load error, and the file is still unread."""
    folder = tmp_path / "model"
    folder.mkdir()
    fifo = _FifoCanary(tmp_path / "secret")
    path = _onnx_model(folder, "outside", "../secret")
    try:
        code = main(["mutants", "--model", str(path), "--trust-model"])
    finally:
        read = fifo.close()
    err = capsys.readouterr().err
    assert code == 2 and REFUSED not in err and "load (ONNX) failed" in err
    assert not read


def test_onnx_custom_domain_is_refused_before_the_checker(tmp_path, capsys):
    path = _onnx_model(tmp_path, "custom", domain="com.example.evil")
    line = _refused_line(capsys, main(_command("compare", path, tmp_path / "out")))
    assert "'Exec'" in line and "'com.example.evil'" in line
    assert not (tmp_path / "out").exists()
    # Trusted, it reaches the checker (which knows no such domain): a load error, not a refusal.
    assert main(["mutants", "--model", str(path), "--trust-model"]) == 2
    assert REFUSED not in capsys.readouterr().err


def test_benign_onnx_with_external_data_in_its_folder_loads(tmp_path, capsys):
    path = _onnx_model(tmp_path, "benign", "w.bin")
    for trust in ([], ["--trust-model"]):
        assert main(["mutants", "--model", str(path), "--json", *trust]) == 0
        assert json.loads(capsys.readouterr().out)


# ---------------------------------------------------------------- TensorFlow formats
TF_BUILDER = textwrap.dedent('''
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf, keras
    folder, canary = sys.argv[1], sys.argv[2]

    class Model(tf.Module):
        def __init__(self, payload):
            self.w = tf.Variable(tf.ones((3, 10)))
            self.payload = payload

        @tf.function(input_signature=[tf.TensorSpec((1, 8, 8, 3), tf.float32)])
        def serve(self, x):
            if self.payload == "write":
                tf.io.write_file(canary, "ran")
            y = tf.reshape(tf.reduce_mean(x, axis=[1, 2]), (1, 3))
            if self.payload == "python":
                y = tf.py_function(lambda t: t, [y], tf.float32)
                y = tf.reshape(y, (1, 3))
            return {"logits": y @ self.w}

    for payload in ("write", "python", "none"):
        m = Model(payload)
        tf.saved_model.save(m, f"{folder}/sm_{payload}", signatures={"serving_default": m.serve})
    for payload, ops in (("write", [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]),
                         ("none", [tf.lite.OpsSet.TFLITE_BUILTINS])):
        m = Model(payload)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([m.serve.get_concrete_function()], m)
        converter.target_spec.supported_ops = ops
        open(f"{folder}/{payload}.tflite", "wb").write(converter.convert())
    inp = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Lambda(lambda t: t * 2)(inp))
    keras.Model(inp, keras.layers.Dense(10)(pooled)).save(f"{folder}/lambda.keras")
''')

TF_CLI = textwrap.dedent('''
    import contextlib, io, json, sys
    from mutatenn.cli import main
    results = []
    for args in json.loads(sys.argv[1]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(args)
        results.append([code, err.getvalue().strip().splitlines()])
    print(json.dumps(results))
''')


@pytest.fixture(scope="module")
def tf_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tf")
    canary = folder / "canary"
    subprocess.run([sys.executable, "-c", TF_BUILDER, str(folder), str(canary)], check=True, capture_output=True,
                   timeout=600)
    return folder, canary


def _cli_in_subprocess(calls: list[list[str]]) -> list[tuple[int, list[str]]]:
    """Several `mutatenn` commands in one fresh process (TensorFlow stays out of pytest's)."""
    done = subprocess.run([sys.executable, "-c", TF_CLI, json.dumps(calls)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return [tuple(r) for r in json.loads(done.stdout.strip().splitlines()[-1])]


@pytest.mark.slow
def test_tensorflow_formats_are_refused_and_benign_ones_load(tf_files, tmp_path):
    folder, canary = tf_files
    out = tmp_path / "out"
    refused = {
        "sm_write": (["compare", "--model", str(folder / "sm_write"), "--images", "digits:2", "--variants",
                      "tvm:cpu", "--baseline", "keras", "--out", str(out)], "'WriteFile'"),
        "sm_python": (["mutants", "--model", str(folder / "sm_python")], "'EagerPyFunc'"),
        "tflite": (["compare", "--model", str(folder / "write.tflite"), "--images", "digits:2", "--variants",
                    "tvm:cpu", "--baseline", "tflite", "--out", str(out)], "'FlexWriteFile'"),
        "keras": (["mutants", "--model", str(folder / "lambda.keras")], "Lambda"),
    }
    loads = [["mutants", "--model", str(folder / "sm_none"), "--json"],
             ["mutants", "--model", str(folder / "sm_none"), "--json", "--trust-model"],
             ["mutants", "--model", str(folder / "none.tflite"), "--json"],
             ["mutants", "--model", str(folder / "none.tflite"), "--json", "--trust-model"],
             ["mutants", "--model", str(folder / "lambda.keras"), "--json", "--trust-model"],
             ["mutants", "--model", str(folder / "write.tflite"), "--trust-model"]]
    results = _cli_in_subprocess([args for args, _ in refused.values()] + loads)
    for (name, (_, entry)), (code, err) in zip(refused.items(), results):
        assert code == 2 and len(err) == 1 and REFUSED in err[0] and entry in err[0], (name, err)
        assert "--trust-model" in err[0]
    assert not canary.exists() and not out.exists()
    for args, (code, err) in zip(loads[:-1], results[len(refused):]):
        assert code == 0, (args, err)
    # Trusted, the Flex op reaches the interpreter, which has no Flex delegate here: its own error.
    code, err = results[-1]
    assert code == 2 and not any(REFUSED in line for line in err)


@pytest.mark.slow
def test_a_saved_model_check_keeps_tensorflow_out_of_a_campaign_coordinator(tf_files, tmp_path):
    """`run` refuses the SavedModel before its run folder exists; the check that needs
    TensorFlow's protobuf classes ran in a worker, not in the coordinator."""
    folder, canary = tf_files
    config = campaign_config(tmp_path / "c.toml", model=folder / "sm_write", images="digits:2", levels=["graph"],
                             select={"sample": 1, "seed": 1})
    probe = textwrap.dedent(f'''
        import sys
        from mutatenn.cli import main
        code = main(["run", "{config}", "--out", "{tmp_path / 'run'}", "--quiet"])
        print(code, "tensorflow" in sys.modules)
    ''')
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.stdout.split()[-2:] == ["2", "False"], done.stderr[-2000:]
    assert REFUSED in done.stderr and "'WriteFile'" in done.stderr
    assert not (tmp_path / "run").exists() and not canary.exists()


# ---------------------------------------------------------------- the format table
def test_the_format_table_is_what_loading_tuning_and_the_help_read(tmp_path, digits_onnx, capsys):
    """Every format's loader and check resolve; the --model help and the unknown-model
    error list every form; tuning keys a model file by its bytes through the table."""
    from importlib import import_module

    from mutatenn.errors import ModelError
    from mutatenn.models.formats import FORMATS, model_format, model_forms
    from mutatenn.tuning import model_key

    for fmt in FORMATS:
        for ref in filter(None, (fmt.loader, fmt.check)):
            module, _, name = ref.partition(":")
            assert callable(getattr(import_module(module), name)), ref
        assert fmt.is_file == bool(fmt.check)  # every file a user may be sent is checked
    forms = model_forms()
    assert all(s in forms for f in FORMATS for s in f.suffixes) and "SavedModel folder" in forms
    for command in ("compare", "mutants", "tune", "localize"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert forms in text and "--trust-model" in text, command
    with pytest.raises(ModelError, match="a .pt2, .onnx"):
        model_format("model.xyz")
    assert model_format(str(digits_onnx)).name == "ONNX"
    copy = tmp_path / "other-name.onnx"
    copy.write_bytes(digits_onnx.read_bytes())
    assert model_key(str(copy)).split("-")[-1] == model_key(str(digits_onnx)).split("-")[-1]
