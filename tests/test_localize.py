"""`mutatenn localize`: the first layer where two variants of one program diverge, found
by bisection over exposed Relax bindings; mutants of several operators and levels are
localised to the layer they change; `--reduce` gives a subgraph that diverges alone."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import Page, needs_chromium

from mutatenn.cli import main
from mutatenn.localize import localize
from mutatenn.localize.report import format_localization, write_results
from mutatenn.localize.session import Pairing, Side, open_variants

IMAGES = "digits:100"
# (operator, site) of digits mutants, one per level: each changes one layer of main.
MUTANTS = [
    ("replace_activation_with_sigmoid", 1),  # graph: the second relu (lv12) becomes a sigmoid
    ("fuzz_weight_gaussian", 6),  # weight: the second conv's weight
    ("tir_store_add1", 5),  # tir: a store of the batch_norm kernel
]
# Verdicts in conftest.DIGITS_CAMPAIGN (the `digits_campaign` run folder, on stack cpu-O2).
KILLED, SURVIVED = "replace_activation_with_tanh#0", "replace_activation_with_tanh#1"


@pytest.fixture(scope="module")
def digits_paths():
    """The digits CNN along torch.export (A) and torch.onnx (B): two programs of one model."""
    return open_variants("digits", "tvm:cpu", "tvm:cpu(via=torch.onnx)", IMAGES)


def _mutant_pairing(pairing, operator: str, site: int):
    """The torch.export program (A) against one of its mutants (B), on one stack."""
    import mutators

    program = pairing.a.program
    mutant = mutators.make_mutant(program.mod, operator, site, with_diff=False)
    assert mutant.mod is not None, mutant.reason
    b = Side("b", mutant.id, pairing.a.variant, program, mutant.mod)
    return Pairing("digits", IMAGES, pairing.image_names, pairing.a, b, True), mutant


def _changed_layers(original, mutant) -> list[str]:
    """Names of the bindings whose value differs between the two mains (TIR mutants: the
    bindings that call a PrimFunc the mutant changed), in binding order."""
    import tvm_ffi

    from mutators.base import lower

    if any(gv.name_hint != "main" for gv in mutant.functions):  # a lowered (TIR) mutant
        original = lower(original)
        changed = {gv.name_hint for gv, f in mutant.functions.items() if gv.name_hint != "main"
                   and not tvm_ffi.structural_equal(f, original[gv.name_hint])}
        calls = [(b.var.name, b.value) for blk in mutant["main"].body.blocks for b in blk.bindings]
        return [name for name, v in calls if any(f"{c}" in str(getattr(v, "args", [""])[0]) for c in changed)]
    before = {b.var.name: b.value for blk in original["main"].body.blocks for b in blk.bindings}
    return [b.var.name for blk in mutant["main"].body.blocks for b in blk.bindings
            if b.var.name not in before or not tvm_ffi.structural_equal(before[b.var.name], b.value)]


def _readers(mod, names) -> set[str]:
    from tvm.relax.analysis import free_vars

    return {b.var.name for blk in mod["main"].body.blocks for b in blk.bindings
            if any(v.name in names for v in free_vars(b.value))}


@pytest.mark.parametrize("operator,site", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_a_mutant_is_localised_to_the_layer_it_changes(digits_paths, operator, site):
    pairing, mutant = _mutant_pairing(digits_paths, operator, site)
    changed = _changed_layers(pairing.a.mod, mutant.mod)
    assert changed, "the mutant changes no binding"
    # The changed binding itself or, when it is no layer of its own (batch_norm's tuple, a
    # constant), a binding that reads it directly.
    expected = set(changed) | _readers(mutant.mod, changed)
    loc = localize(pairing, tolerance=1e-4, per_round=4, full_curve=False)
    assert loc.diverges
    first = loc.search.first
    assert first.pair.b.name in expected, (first.pair.b.name, changed)
    # Every pair before it agrees, and it diverges beyond the tolerance.
    before = [pt for pos, pt in loc.search.points.items() if pos < first.pair.position]
    assert before and all(not pt.diverges for pt in before)
    assert first.rel_l2 > 1e-4
    # Bisection with 4 tensors a round: the rounds are counted, two builds each, plus one per side for the outputs.
    assert loc.builds == 2 * loc.search.rounds + 2
    assert loc.search.checkpoint_rounds >= 1


def test_two_import_paths_that_agree_report_no_divergence(digits_paths, tmp_path):
    out = tmp_path / "same"
    out.mkdir()
    loc = localize(digits_paths)
    write_results(loc, out)
    assert "no divergence above tolerance" in format_localization(loc)
    summary = json.loads((out / "divergence.json").read_text())
    assert summary["diverges"] is False and summary["output_rel_l2"] < 1e-4
    assert summary["alignment"] == "op order, kind and shape"
    curve = pd.read_csv(out / "divergence.csv")
    # torch.onnx folds batch_norm into the convolutions: those pairs differ by construction,
    # are marked approximate and never serve as bisection checkpoints.
    approximate = curve[~curve["exact"]]
    assert set(approximate["kind_a"]) <= {"conv2d", "add"} and len(approximate) == 4
    assert not (approximate["checkpoint"]).any()
    assert curve[curve["exact"]]["rel_l2"].max() < 1e-4
    html = (out / "localize.html").read_text()
    assert "divergence-chart" in html and html.count('class="layer-point"') == len(curve)


def test_stacks_at_two_opt_levels_pair_layers_by_binding(digits_paths):
    a = digits_paths.a
    from mutatenn.runners import parse_variant

    variant = parse_variant("tvm:cpu:O0(schedule=none)")
    b = Side("b", variant.text, variant, a.program, a.mod)
    loc = localize(Pairing("digits", IMAGES, digits_paths.image_names, a, b, True))
    assert not loc.diverges  # the same program at O0 and O2 computes the same to float rounding
    assert all(p.a.name == p.b.name for p in loc.pairs)
    assert len(loc.search.points) == len(loc.pairs)  # the full curve


def test_reduce_on_a_killed_mutant_gives_a_subgraph_that_diverges_alone(digits_campaign, tmp_path, capsys):
    import tvm
    from tvm import relax

    out = tmp_path / "loc"
    assert main(["localize", str(digits_campaign), "--mutant", KILLED, "--reduce", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "divergence.json").read_text())
    # The binding the mutant rewrote, as the run's mutants.json names it: "relu #1 of 3 (lvN: ...) -> tanh".
    site = next(m["site"] for m in json.loads((digits_campaign / "mutants.json").read_text()) if m["id"] == KILLED)
    changed = site.split("(", 1)[1].split(":", 1)[0]
    assert summary["first_divergence"]["layer_b"] == changed
    assert f"first divergence at {changed}" in printed and summary["campaign"]["mutant"] == KILLED
    reduced = out / "reduced"
    info = summary["reduced"]
    assert info["bindings"][0] == changed
    inputs = [np.load(reduced / f"input_{name}.npy") for name in info["inputs"]]
    expected = np.load(reduced / "expected.npy")
    target = tvm.target.Target({"kind": "llvm", "mcpu": "x86-64"})

    def run(name):
        ex = tvm.compile(tvm.ir.load_json((reduced / name).read_text()), target=target)
        vm = relax.VirtualMachine(ex, tvm.cpu())
        return np.concatenate([vm["main"](*[tvm.runtime.tensor(x[i:i + 1]) for x in inputs]).numpy()
                               for i in range(len(inputs[0]))])

    alone = run("subgraph.json")
    reference = run("reference.json")
    scale = np.linalg.norm(expected)
    assert np.linalg.norm(alone - expected) / scale > 1e-2  # the mutant's subgraph still diverges alone
    assert np.linalg.norm(reference - expected) / scale < 1e-5  # the original's subgraph gives A's values


def test_a_survived_mutant_is_compared_on_every_image(digits_campaign, tmp_path, capsys):
    """Survived by the campaign's criterion (no top-1 label changed) yet not equal: the
    localisation still names the binding the mutant rewrote, the one where its outputs
    first differ."""
    out = tmp_path / "survived"
    assert main(["localize", str(digits_campaign), "--mutant", SURVIVED, "--no-curve", "--out", str(out)]) == 0
    summary = json.loads((out / "divergence.json").read_text())
    site = next(m["site"] for m in json.loads((digits_campaign / "mutants.json").read_text()) if m["id"] == SURVIVED)
    changed = site.split("(", 1)[1].split(":", 1)[0]
    assert summary["first_divergence"]["layer_b"] == changed
    assert summary["campaign"]["mutant"] == SURVIVED and summary["images_disagreeing"] == 0
    assert capsys.readouterr().out.count(f"first divergence at {changed}") == 1


def _flatten_onnx(path):
    """Another model: a 3x8x8 image flattened into 192 outputs."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Flatten", ["image"], ["out"])], "other",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 192])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("args,phrase", [
    (["RUN", "--mutant", "nope#0"], "mutant 'nope#0' is not in run"),
    (["RUN"], "RUN_DIR needs --mutant ID"),
    (["--model", "digits", "--a", "tvm:cpu", "--b", "tvm:cpu:O0", "--images", "digits:5", "--image", "cat.png"],
     "image 'cat.png' is not in image set 'digits:5'"),
    (["--model", "digits", "--a", "keras", "--b", "tvm:cpu", "--images", "digits:5"],
     "localize reads layers of tvm, torch, onnxruntime variants, not keras"),
    (["--model", "digits", "--a", "tvm:cpu", "--b", "tvm:cpu(model=OTHER)", "--images", "digits:5"],
     "are not of one model: A takes 1x8x8 images and gives 10 outputs, B takes 3x8x8 and gives 192"),
    (["--model", "digits", "--a", "tvm:cpu", "--images", "digits:5"], "localize needs --b"),
    (["--model", "digits", "--a", "tvm:cpu", "--b", "tvm:cpu:O0", "--images", "digits:5", "--repair"],
     "--repair analyses a conversion"),
])
def test_bad_input_is_one_line_and_exit_2(digits_campaign, tmp_path, capsys, args, phrase):
    other = _flatten_onnx(tmp_path / "other.onnx")
    args = [str(digits_campaign) if a == "RUN" else a.replace("OTHER", str(other)) for a in args]
    code = main(["localize", *args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("mutatenn: error:") and phrase in err[0], err


# ---------------------------------------------------------------- conversion faults
def _faulty_onnx(model, tmp_path, fault: str):
    """The torch.onnx export of digits with one planted fault in its second convolution:
    its weights rounded to three values (precision), or its padding moved to the top
    left (an attribute: same output shape, shifted windows)."""
    import copy

    import onnx
    from onnx import numpy_helper

    model = copy.deepcopy(model)
    conv = [n for n in model.graph.node if n.op_type == "Conv"][1]
    if fault == "precision":
        init = next(i for i in model.graph.initializer if i.name == conv.input[1])
        w = numpy_helper.to_array(init)
        top = np.abs(w).max()
        init.CopyFrom(numpy_helper.from_array((np.round(w / top) * top).astype(np.float32), init.name))
    else:
        pads = next(a for a in conv.attribute if a.name == "pads")
        del pads.ints[:]
        pads.ints.extend([2, 2, 0, 0])
    path = tmp_path / f"{fault}.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def precision_run(digits_paths, tmp_path_factory):
    """The whole command on a model= file: one conv's weights rounded to three values."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("precision")
    path = _faulty_onnx(digits_paths.b.program.form.payload, tmp, "precision")
    out = tmp / "loc"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["localize", "--model", "digits", "--a", "tvm:cpu(via=torch.onnx)", "--b",
                     f"tvm:cpu(model={path})", "--images", IMAGES, "--repair", "--per-round", "4", "--out", str(out)])
    assert code == 0
    return out, printed.getvalue()


def test_cli_localises_and_repairs_a_precision_fault_in_a_converted_file(digits_paths, precision_run):
    out, printed = precision_run
    summary = json.loads((out / "divergence.json").read_text())
    second_conv = [layer.name for layer in digits_paths.b.graph.layers if layer.kind == "conv2d"][1]
    assert summary["first_divergence"]["layer_b"] == second_conv
    differences = summary["conversion"]["differences"]
    assert [(d["category"], d["layer_b"]) for d in differences] == [("parameter", second_conv)]
    assert "3 distinct values" in differences[0]["detail"]
    repair = summary["conversion"]["repair"]
    assert repair["agreement_before"] < 1.0 and repair["agreement_after"] == 1.0
    assert "restore A's weight" in printed and "after 1.0000" in printed
    assert "Conversion faults" in (out / "localize.html").read_text()


@needs_chromium
def test_the_localize_page_in_chromium(browser, precision_run):
    """localize.html in a real browser: one chart point per aligned layer, the first
    divergence ringed on the conv the fault is in, the fault listed, nothing broken."""
    out, _ = precision_run
    table = pd.read_csv(out / "divergence.csv")
    summary = json.loads((out / "divergence.json").read_text())
    p = Page(browser, out / "localize.html")
    page = p.page
    assert page.locator(".divergence-chart .layer-point").count() == len(table)
    first = summary["first_divergence"]["layer_a"]
    ringed = page.locator(f'.layer-point[data-layer="{first}"] circle')
    assert ringed.count() == 2  # the ring and the point
    assert page.locator("#layers tbody tr").count() == len(table)
    assert page.locator("#layers tbody tr.disagree").count() == 1
    rows = page.locator("#conversion tbody tr")
    assert rows.count() == 1 and "parameter" in rows.first.inner_text()
    assert "after: 1.0000" in page.locator("#conversion").inner_text()
    p.check_clean()


def test_a_planted_attribute_fault_is_localised_and_repaired(digits_paths, tmp_path):
    """The second convolution's padding moved to the top left: same shape, shifted windows."""
    from mutatenn.loading import load_source, program_from_source
    from mutatenn.localize.conversion import analyse_and_repair
    from mutatenn.runners import parse_variant

    clean = digits_paths.b  # torch.onnx: the converted program the faulty file came from
    path = _faulty_onnx(clean.program.form.payload, tmp_path, "attribute")
    variant = parse_variant(f"tvm:cpu(model={path})")
    faulty = program_from_source(load_source(str(path), preset="raw"), relax=True)
    a = Side("a", clean.text, clean.variant, clean.program, clean.program.mod)
    b = Side("b", variant.text, variant, faulty, faulty.mod)
    loc = localize(Pairing("digits", IMAGES, digits_paths.image_names, a, b, False), full_curve=False)
    second_conv = [layer.name for layer in b.graph.layers if layer.kind == "conv2d"][1]
    assert loc.diverges and loc.disagreeing > 0
    assert loc.search.first.pair.b.name == second_conv
    report = analyse_and_repair(loc)
    assert [(d.category, d.layer_b) for d in report.differences] == [("hyperparameter", second_conv)]
    assert "padding" in report.differences[0].detail and "(1, 1, 1, 1)" in report.differences[0].repair
    assert report.repair.agreement_before < 1.0
    assert report.repair.agreement_after == 1.0 and report.repair.rel_l2_after < 1e-5


def test_pytorch_against_onnx_runtime_on_a_faulty_file_is_localised_and_repaired(digits_paths, tmp_path):
    """Native taps: PyTorch's graph run op by op (A) and ONNX Runtime with node outputs added
    as graph outputs (B); the repair rewrites B's ONNX attribute."""
    from mutatenn.loading import load_source, program_from_source
    from mutatenn.localize.conversion import analyse_and_repair
    from mutatenn.runners import parse_variant

    path = _faulty_onnx(digits_paths.b.program.form.payload, tmp_path, "attribute")
    torch_variant, ort_variant = parse_variant("torch"), parse_variant(f"onnxruntime(model={path})")
    a = Side("a", "torch", torch_variant, program_from_source(digits_paths.a.program.source, relax=False))
    b = Side("b", ort_variant.text, ort_variant,
             program_from_source(load_source(str(path), preset="raw"), "onnx", relax=False))
    loc = localize(Pairing("digits", IMAGES, digits_paths.image_names, a, b, False), full_curve=False)
    convs_a = [layer.name for layer in a.graph.layers if layer.kind == "conv2d"]
    convs_b = [layer.name for layer in b.graph.layers if layer.kind == "conv2d"]
    assert (loc.search.first.pair.a.name, loc.search.first.pair.b.name) == (convs_a[1], convs_b[1])
    report = analyse_and_repair(loc)
    assert [(d.category, d.layer_b) for d in report.differences if d.category == "hyperparameter"] == \
        [("hyperparameter", convs_b[1])]
    assert report.repair.agreement_before < 1.0 and report.repair.agreement_after == 1.0
    # --reduce on ONNX Runtime: an ONNX subgraph that, run alone on A's activations, still diverges.
    import onnxruntime as ort

    from mutatenn.localize.reduce import reduce_divergence

    reduced = reduce_divergence(loc, tmp_path / "reduced")
    assert reduced.bindings[0] == convs_b[1] and "subgraph.onnx" in reduced.files
    session = ort.InferenceSession(str(tmp_path / "reduced" / "subgraph.onnx"), providers=["CPUExecutionProvider"])
    inputs = {name: np.load(tmp_path / "reduced" / f"input_{name}.npy") for name in reduced.inputs}
    alone = np.concatenate([session.run(None, {k: v[i:i + 1] for k, v in inputs.items()})[0]
                            for i in range(len(loc.rows))])
    expected = np.load(tmp_path / "reduced" / "expected.npy")
    assert np.linalg.norm(alone - expected) / np.linalg.norm(expected) > 1e-2


def test_a_preprocessing_fault_is_found_and_repaired(digits_paths):
    """B fed with another preset (ImageNet mean/std instead of /255): the first layer
    diverges, the analysis names the input, and feeding B A's images restores agreement."""
    import dataclasses

    from mutatenn.localize.conversion import analyse_and_repair

    a = digits_paths.b
    program = dataclasses.replace(a.program, preset="imagenet")
    b = Side("b", "tvm:cpu(via=torch.onnx) with imagenet preprocessing", a.variant, program, a.mod)
    loc = localize(Pairing("digits", IMAGES, digits_paths.image_names, a, b, False), full_curve=False)
    assert loc.diverges and loc.search.first.pair.position == 0  # the first layer already differs
    report = analyse_and_repair(loc)
    assert [d.category for d in report.differences] == ["preprocessing"]
    assert "A preset raw, B preset imagenet" in report.differences[0].detail
    assert report.repair.agreement_before < 1.0 and report.repair.agreement_after == 1.0


def test_a_background_class_on_one_side_is_dropped_as_compare_does(digits_paths, tmp_path, capsys):
    """A release with one class more (column 0: background, as TF-slim models have) is of
    the same model: its column 0 is dropped, and with the same weights nothing diverges."""
    import copy

    import onnx
    from onnx import numpy_helper

    model = copy.deepcopy(digits_paths.b.program.form.payload)
    gemm = [n for n in model.graph.node if n.op_type == "Gemm"][-1]
    for name, extra in ((gemm.input[1], np.full((1, 64), 0.01, np.float32)), (gemm.input[2], np.zeros(1, np.float32))):
        init = next(i for i in model.graph.initializer if i.name == name)
        init.CopyFrom(numpy_helper.from_array(np.concatenate([extra.reshape(-1, *numpy_helper.to_array(init).shape[1:]),
                                                              numpy_helper.to_array(init)]), name))
    model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value = 11
    path = tmp_path / "background.onnx"
    onnx.save(model, str(path))
    args = ["localize", "--model", "digits", "--a", "tvm:cpu(via=torch.onnx)", "--b", f"tvm:cpu(model={path})",
            "--images", "digits:20", "--no-curve"]
    assert main([*args, "--out", str(tmp_path / "same")]) == 0
    printed = capsys.readouterr().out
    assert "no divergence above tolerance" in printed, printed
    notes = json.loads((tmp_path / "same" / "divergence.json").read_text())["notes"]
    assert any("one class more: its column 0 (a background class) is dropped" in n for n in notes), notes
