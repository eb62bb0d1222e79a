"""Safety checks on model files, run before any framework loader touches the file.

Users test models they did not train. A model file must not run code, write files or
read outside its folder when MutateNN loads or runs it, unless the user says they trust
it (``--trust-model``, ``[model] trusted = true``). Each format's check is named in
`mutatenn.models.formats.FORMATS` and returns a `Finding` (what was found, what trusting
the file would allow) or None; `check_model` turns a finding into one line and exit 2.
Checks read the file with the format's own parser only (zip + JSON, the ONNX protobuf
without external data, the TFLite flatbuffer, TensorFlow's SavedModel protobuf), never
with the framework loader that would run the payload.
"""
from __future__ import annotations

import ast
import io
import json
import os
import zipfile
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from ..errors import ModelError, UntrustedModelError
from .formats import ModelFormat, model_format

TRUST_HINT = "--trust-model (or [model] trusted = true in a campaign config)"


@dataclass(frozen=True)
class Finding:
    """Why a model file is refused: the offending entry, and what trusting the file allows."""

    entry: str
    allows: str


def check_model(spec: str, trusted: bool = False) -> None:
    """Refuse ``spec`` in one line (`UntrustedModelError`, exit 2) when its format's check
    finds something that would run code or reach outside the model's folder. Trusted files
    and formats without a check (bundled and named models) pass."""
    fmt = model_format(spec)
    if trusted or not fmt.check or not Path(spec).exists():
        return
    finding = run_check(fmt, Path(spec))
    if finding is not None:
        raise UntrustedModelError(refusal(spec, fmt, finding))


def run_check(fmt: ModelFormat, path: Path) -> Finding | None:
    module, _, func = fmt.check.partition(":")
    return getattr(import_module(module), func)(path)


def refusal(spec: str, fmt: ModelFormat, finding: Finding) -> str:
    """The one refusal line: file, format, offending entry, how to trust it and what that allows."""
    return (f"model {spec!r} ({fmt.name}) refused as untrusted: {finding.entry}; pass {TRUST_HINT} "
            f"if you trust this file: trusting it allows {finding.allows}")


def _unreadable(fmt: str, path: Path, err: BaseException | str) -> ModelError:
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ModelError(f"load ({fmt}) failed for {str(path)!r}: {detail}")


# ---------------------------------------------------------------- PyTorch .pt2
PICKLE_ALLOWS = "unpickling it, which runs Python code at load time"
# Graph node targets that only compute: ATen and prims ops, higher-order control flow,
# and the symbolic-size arithmetic torch.export writes. Anything else (``torch.save``,
# ``torch.ops.image.write_file``, an extension op) is refused by name.
PT2_TARGET_PREFIXES = ("torch.ops.aten.", "torch.ops.prims.", "torch.ops.higher_order.", "_operator.", "math.",
                       "torch.sym_", "torch._sym_")
# Names a guard expression (Python that torch.export exec()s in ``.module()``) may use.
GUARD_NAMES = {"L", "math", "inf", "torch", "IsNonOverlappingAndDenseIndicator",
               "cast_symbool_to_symint_guardless"}
GUARD_METHODS = {"size", "stride", "storage_offset", "dim", "numel"}


def check_pt2(path: Path) -> Finding | None:
    """A ``torch.export.save`` archive: every weight and constant stored as raw tensor
    data (no ``use_pickle``, custom or opaque objects, no AOTInductor code), every other
    pickle (sample inputs) loadable with ``weights_only=True``, graph targets computing
    only, guard expressions plain size arithmetic."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise _unreadable("PyTorch .pt2", path, f"not a torch.export archive ({err})") from None
    with archive:
        entries = _archive_entries(archive)
        for inner, name in entries.items():
            found = _check_pt2_entry(archive, inner, name)
            if found is not None:
                return found
    return None


def _archive_entries(archive: zipfile.ZipFile) -> dict[str, str]:
    """Entry name inside the archive's root folder (``data/weights/...``) -> name in the zip."""
    names = [n for n in archive.namelist() if not n.endswith("/")]
    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) == 1 and all("/" in n for n in names):
        return {n.split("/", 1)[1]: n for n in names}
    return {n: n for n in names}


def _check_pt2_entry(archive: zipfile.ZipFile, inner: str, name: str) -> Finding | None:
    base = inner.rsplit("/", 1)[-1]
    if inner.startswith("data/aotinductor/"):
        return Finding(f"entry {inner!r} is AOTInductor-compiled code", "loading its compiled native code")
    if base.startswith(("custom_obj", "opaque_obj")):
        return Finding(f"entry {inner!r} is a pickled object", PICKLE_ALLOWS)
    if inner.startswith(("data/weights/", "data/constants/")) and base.endswith("config.json"):
        return _check_payload_config(json.loads(archive.read(name)), "weight" if "weights" in inner else "constant")
    if inner.startswith("models/") and inner.endswith(".json"):
        return _check_program(json.loads(archive.read(name)), inner)
    if base.endswith(".pt"):  # sample inputs, legacy state dicts: torch falls back to weights_only=False
        return _check_weights_only(archive.read(name), inner)
    return None


def _check_payload_config(config: dict, kind: str) -> Finding | None:
    for fqn, meta in (config.get("config") or {}).items():
        if meta.get("use_pickle"):
            return Finding(f"{kind} {fqn!r} is stored as a pickle (use_pickle)", PICKLE_ALLOWS)
        path_name = str(meta.get("path_name", ""))
        if kind == "constant" and not path_name.startswith("tensor_"):
            return Finding(f"constant {fqn!r} is a pickled object ({path_name})", PICKLE_ALLOWS)
    return None


def _check_weights_only(data: bytes, inner: str) -> Finding | None:
    import torch

    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception as err:  # the restricted unpickler refuses anything but tensors and containers
        detail = str(err).strip().splitlines()
        return Finding(f"entry {inner!r} is a pickle that is not plain tensors ({detail[0][:120] if detail else err})",
                       PICKLE_ALLOWS)
    return None


def _check_program(program: dict, inner: str) -> Finding | None:
    for target in _node_targets(program):
        if not target.startswith(PT2_TARGET_PREFIXES):
            return Finding(f"graph node calls {target!r} ({inner})", "calling it when the model runs")
    for guard in program.get("guards_code") or []:
        problem = _unsafe_guard(str(guard))
        if problem:
            return Finding(f"guard expression {str(guard)[:80]!r} {problem} ({inner})",
                           "running it as Python code at load time")
    return None


def _node_targets(tree) -> list[str]:
    """Every node target in a serialized program, nested graphs (control flow) included."""
    found, stack = [], [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("target"), str) and "inputs" in item:
                found.append(item["target"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _unsafe_guard(text: str) -> str:
    """Why a guard is not plain size arithmetic ("" when it is): torch.export exec()s it."""
    if any(c in text for c in "\"\\\n;"):
        return "has quotes, backslashes or line breaks"
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return "is not one expression"
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in GUARD_NAMES:
            return f"uses {node.id!r}"
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            return f"reads {node.attr!r}"
        if isinstance(node, ast.Call):
            func = node.func
            plain = isinstance(func, ast.Name) and func.id not in ("torch", "L")
            method = isinstance(func, ast.Attribute) and (
                func.attr in GUARD_METHODS or (isinstance(func.value, ast.Name) and func.value.id == "math"))
            if not (plain or method):
                return f"calls {ast.unparse(func)!r}"
    return ""


# ---------------------------------------------------------------- ONNX
# Domains whose operators the ONNX checker, TVM's frontend or ONNX Runtime's own kernels
# know; a node of another domain needs a custom-op library loaded into the runtime.
ONNX_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


def check_onnx(path: Path) -> Finding | None:
    """External data only inside the model's folder; nodes of known domains only (or of
    the model's own functions). Read with ``load_external_data=False``: nothing outside
    the file is opened."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:
        raise _unreadable("ONNX", path, f"not a valid ONNX model: {err}") from None
    folder = path.resolve().parent
    for tensor in _onnx_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if Path(location).is_absolute() or not (folder / location).resolve().is_relative_to(folder):
            return Finding(f"tensor {tensor.name!r} reads external data from {location!r}, outside the model's folder",
                           "reading that file")
    local = {f.domain for f in model.functions}
    for node, where in _onnx_nodes(model):
        if node.domain not in ONNX_DOMAINS and node.domain not in local:
            return Finding(f"node {node.name or node.op_type!r} ({where}) is custom op {node.op_type!r} of domain "
                           f"{node.domain!r}", "passing it to the ONNX checker and runtimes, which need a custom-op "
                           "library for it (MutateNN loads none)")
    return None


def _onnx_graphs(model):
    """The main graph, the model's functions and every subgraph (If/Loop/Scan bodies)."""
    import onnx

    stack = [(model.graph, "main graph")] + [(f, f"function {f.name!r}") for f in model.functions]
    while stack:
        graph, where = stack.pop()
        yield graph, where
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    stack.append((attr.g, where))
                stack.extend((g, where) for g in attr.graphs)


def _onnx_nodes(model):
    for graph, where in _onnx_graphs(model):
        for node in graph.node:
            yield node, where


def _onnx_tensors(model):
    import onnx

    for graph, _ in _onnx_graphs(model):
        yield from getattr(graph, "initializer", [])
        for sparse in getattr(graph, "sparse_initializer", []):
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield attr.t
                yield from attr.tensors


# ---------------------------------------------------------------- TFLite
def check_tflite(path: Path) -> Finding | None:
    """No custom operator (a ``Flex*`` one runs a TensorFlow op, file and network ops
    included, through the Flex delegate), read from the flatbuffer before any interpreter
    is built."""
    import tflite

    data = path.read_bytes()
    try:
        if data[4:8] != b"TFL3":
            raise ValueError("no TFL3 file identifier")
        model = tflite.Model.GetRootAsModel(data, 0)
        codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
        custom = [c.CustomCode() for c in codes
                  if max(c.BuiltinCode(), c.DeprecatedBuiltinCode()) == tflite.BuiltinOperator.CUSTOM]
    except Exception as err:
        raise _unreadable("TFLite", path, f"not a TFLite flatbuffer: {err}") from None
    if custom:
        name = (custom[0] or b"").decode("utf-8", "replace")
        what = f"TensorFlow op {name[4:]!r} through the Flex delegate" if name.startswith("Flex") else "its kernel"
        return Finding(f"custom op {name!r} (runs {what})",
                       "building an interpreter with its custom ops, which run whatever kernel is "
                       "registered under their names")
    return None


# ---------------------------------------------------------------- Keras
def check_keras(path: Path) -> Finding | None:
    """No ``Lambda`` layer (Python bytecode) and no object from outside Keras in the model
    config; Keras' safe mode, which the loader keeps on, refuses the same a second time."""
    try:
        config = _keras_config(path)
    except Exception as err:
        raise _unreadable("Keras", path, f"no readable model config: {err}") from None
    for item in _dicts(config):
        if item.get("class_name") in ("Lambda", "__lambda__"):
            name = (item.get("config") or {}).get("name", "") if isinstance(item.get("config"), dict) else ""
            return Finding(f"layer {name or 'Lambda'!r} is a Lambda layer (Python bytecode)",
                           "deserializing it, which runs its Python code")
        module = item.get("module")
        if isinstance(module, str) and module.split(".", 1)[0] not in ("keras", "builtins"):
            return Finding(f"object {item.get('class_name')!r} comes from module {module!r}, not Keras",
                           "importing that module, which runs its code")
    return None


def _keras_config(path: Path):
    """The model config of a ``.keras`` zip (config.json) or an ``.h5`` file (model_config)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    import h5py

    with h5py.File(path, "r") as handle:
        text = handle.attrs.get("model_config")
    if text is None:
        return {}
    return json.loads(text.decode() if isinstance(text, bytes) else text)


def _dicts(tree):
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


# ---------------------------------------------------------------- TensorFlow SavedModel
# Ops that touch the file system, the network or run Python: refused wherever they sit
# (the graph or any function of its library). Checkpoint ops are allowed only in the
# saver's own functions (variables are restored through them).
TF_UNSAFE_OPS = frozenset({
    # Python
    "PyFunc", "PyFuncStateless", "EagerPyFunc",
    # files
    "WriteFile", "ReadFile", "MatchingFiles", "ImmutableConst", "InitializeTableFromTextFile",
    "InitializeTableFromTextFileV2", "DecodeProtoV2", "EncodeProto", "GenerateVocabRemapping",
    "LoadAndRemapMatrix", "WholeFileReader", "WholeFileReaderV2", "TextLineReader", "TextLineReaderV2",
    "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "TFRecordReader", "TFRecordReaderV2",
    "LMDBReader", "IdentityReader", "IdentityReaderV2", "TextLineDataset", "TFRecordDataset", "TFRecordDatasetV2",
    "FixedLengthRecordDataset", "FixedLengthRecordDatasetV2", "ExperimentalCSVDataset", "CSVDatasetV2",
    "ExperimentalLMDBDataset", "LMDBDataset", "ExperimentalSqlDataset", "SqlDataset", "SnapshotDataset",
    "SnapshotDatasetV2", "SaveDataset", "SaveDatasetV2", "LoadDataset", "DatasetToTFRecord",
    "ExperimentalDatasetToTFRecord", "CreateSummaryFileWriter", "CreateSummaryDbWriter", "WriteSummary",
    "WriteScalarSummary", "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary",
    "WriteGraphSummary", "WriteRawProtoSummary", "ImportEvent", "DebugIdentity", "DebugIdentityV2",
    "DebugIdentityV3", "DebugNanCount", "DebugNumericSummary", "DebugNumericSummaryV2",
    # checkpoints (allowed in the saver's functions only)
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints",
    # network and other processes
    "Send", "Recv", "_Send", "_Recv", "_HostSend", "_HostRecv", "CollectiveReduce", "CollectiveReduceV2",
    "CollectiveGather", "CollectiveGatherV2", "CollectiveBcastSend", "CollectiveBcastRecv",
    "CollectiveBcastSendV2", "CollectiveBcastRecvV2", "RemoteCall", "DataServiceDataset",
    "DataServiceDatasetV2", "DataServiceDatasetV3", "DataServiceDatasetV4", "RegisterDataset", "RegisterDatasetV2",
})
TF_SAVER_OPS = frozenset({"Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice",
                          "MergeV2Checkpoints"})


def check_saved_model(path: Path) -> Finding | None:
    """No op of `TF_UNSAFE_OPS` in saved_model.pb's graphs or function libraries, parsed with
    TensorFlow's own protobuf classes (this imports TensorFlow: `formats` marks the check
    ``check_family="tensorflow"``, so a coordinator runs it in a worker)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ logging off, before its import
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as err:
        raise _unreadable("TensorFlow SavedModel", path, f"saved_model.pb is not a SavedModel: {err}") from None
    for meta in saved.meta_graphs:
        graph = meta.graph_def
        saver = _saver_functions(meta)
        scope = _saver_scope(meta)
        for node in graph.node:
            if node.op in TF_UNSAFE_OPS and not (node.op in TF_SAVER_OPS and scope and node.name.startswith(scope)):
                return _op_finding(node.op, node.name, "the graph")
        for function in graph.library.function:
            name = function.signature.name
            for node in function.node_def:
                if node.op in TF_UNSAFE_OPS and not (node.op in TF_SAVER_OPS and name in saver):
                    return _op_finding(node.op, node.name, f"function {name!r}")
    return None


def _op_finding(op: str, node: str, where: str) -> Finding:
    return Finding(f"op {op!r} (node {node!r} in {where}) touches files or the network or runs Python",
                   "running it when the model is loaded or run")


def _saver_scope(meta) -> str:
    """A TF1 saver's name scope (``save/``): its graph nodes save and restore variables."""
    restore = meta.saver_def.restore_op_name
    return restore.rsplit("/", 1)[0] + "/" if "/" in restore else ""


def _saver_functions(meta) -> set[str]:
    """The functions a TF2 saver's nodes call (``__inference__traced_save/restore``), with
    the functions they call in turn."""
    saver = meta.saver_def
    roots = {saver.restore_op_name, saver.save_tensor_name.split(":")[0]} - {""}
    library = {f.signature.name: f for f in meta.graph_def.library.function}
    found: set[str] = set()
    pending = [_called(n) for n in meta.graph_def.node if n.name in roots]
    pending = [name for names in pending for name in names]
    while pending:
        name = pending.pop()
        if name in found or name not in library:
            continue
        found.add(name)
        pending.extend(name for node in library[name].node_def for name in _called(node))
    return found


def _called(node) -> list[str]:
    return [value.func.name for value in node.attr.values() if value.func.name]

