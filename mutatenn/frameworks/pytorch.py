"""PyTorch sources (the bundled digits CNN, torchvision models, saved torch.export
programs, ``nn.Module`` objects) and their paths: torch.export and torch.onnx."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

from ..errors import ModelError
from ..program import InputSpec
from . import Form, Source, stage_message

TORCHVISION_MODELS = (
    "mobilenet_v2", "resnet18", "resnet50", "resnet101", "densenet121", "inception_v3",
    "squeezenet1_1", "shufflenet_v2_x1_0", "alexnet", "efficientnet_b0",
)
SEED = 0


def load_digits(spec: str, pretrained: str, trusted: bool = False) -> Source:
    from ..models import digits

    return source_from_module(digits.load_trained(), (1, 1, 8, 8), name="digits-cnn", spec="digits",
                              preset="raw", labels=list(digits.LABELS))


def source_from_module(model, input_shape: tuple[int, ...], name: str, spec: str, preset: str = "imagenet",
                       labels: list[str] | None = None) -> Source:
    """An ``nn.Module`` (put in eval mode) as a source; its class count comes from one call."""
    import torch

    model = model.eval()
    if labels is None:
        with torch.no_grad():
            out = model(torch.zeros(input_shape, dtype=torch.float32))
        out = out[0] if isinstance(out, (tuple, list)) else out
        labels = [str(i) for i in range(int(out.shape[-1]))]
    return Source(spec, name, "torch", model, InputSpec("input", tuple(input_shape), "float32", "NCHW"),
                  preset, labels)


def torchvision_weights_file(name: str) -> tuple[Path, object]:
    """Where torchvision's pretrained weights for ``name`` would sit in the local cache."""
    import torch
    from torchvision.models import get_model_weights

    weights = get_model_weights(name).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name, weights


def load_torchvision(spec: str, pretrained: str, trusted: bool = False) -> Source:
    """``torchvision:NAME``: weights from torch's local cache, else seeded (never downloaded)."""
    from . import untrained

    name = spec.split(":", 1)[1]
    if name not in TORCHVISION_MODELS:
        raise ModelError(f"unknown torchvision model {name!r} (known: {', '.join(TORCHVISION_MODELS)})")
    import torch
    import torchvision

    file, weights = torchvision_weights_file(name)
    kwargs = {"aux_logits": True, "init_weights": True} if name == "inception_v3" else {}
    torch.manual_seed(SEED)
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    if pretrained != "never" and file.is_file():
        model.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
        notes = [f"pretrained weights from {file}"]
    else:
        notes = [untrained(name, file, pretrained, SEED)]
    size = 299 if name == "inception_v3" else 224
    if not notes[0].startswith("pretrained weights from"):
        side = size if name == "inception_v3" else NOISE_SIDE  # its auxiliary head needs the full size
        notes += settle_batchnorm(model, (3, side, side))
    preset = "inception" if name == "inception_v3" else "imagenet"
    source = Source(spec, name, "torch", model.eval(), InputSpec("input", (1, 3, size, size), "float32", "NCHW"),
                    preset, list(weights.meta["categories"]), notes)
    return source


# Seeded N(0, 1) noise: images per batch, batches, side. Noise is the same everywhere in an
# image, so half-size images give the per-channel statistics at a quarter of the work.
def inference_mode(module):
    """``module`` in eval mode. A saved ``torch.export`` program's module refuses ``eval()``
    (NotImplementedError) and needs none: it runs as it was exported."""
    try:
        return module.eval()
    except NotImplementedError:
        return module


NOISE_BATCHES = (8, 2)
NOISE_SIDE = 112


def settle_batchnorm(model, shape: tuple[int, int, int]) -> list[str]:
    """Seeded weights with batch-norm statistics of N(0, 1) inputs, not the constructor's
    (mean 0, variance 1). With the constructor's, activations shrink layer after layer:
    seeded mobilenet_v2 gives logits near 1e-9 and the same class on every photo, so no
    mutant can flip a label and fp16 rounds every logit to zero. A few forward passes in
    training mode on seeded noise (the normalised image distribution) set each layer's
    running statistics to what it actually sees; weights are untouched. Models with no
    batch norm are left as they are."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return []
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the noise batches
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    with torch.no_grad():
        for _ in range(NOISE_BATCHES[1]):
            model(torch.randn((NOISE_BATCHES[0], *shape), generator=gen))
    model.eval()
    return [f"batch-norm statistics of the seeded weights set on {NOISE_BATCHES[0] * NOISE_BATCHES[1]} "
            f"seeded N(0, 1) images (seed {SEED})"]


def load_pt2(spec: str, pretrained: str, trusted: bool = False) -> Source:
    """A saved ``torch.export`` program (``.pt2``)."""
    import torch

    path = Path(spec)
    try:
        exported = torch.export.load(str(path))
    except Exception as err:
        raise ModelError(stage_message("load", "PyTorch .pt2", spec, err)) from None
    placeholders = [s for s in exported.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if len(placeholders) != 1:
        raise ModelError(f"model {spec!r} takes {len(placeholders)} inputs; MutateNN needs exactly one image input")
    node = next(n for n in exported.graph.nodes if n.op == "placeholder" and n.name == placeholders[0].arg.name)
    shape = tuple(int(d) for d in node.meta["val"].shape)
    if len(shape) != 4:
        raise ModelError(f"model {spec!r} input has shape {shape}; MutateNN needs a 4-d image batch (N, C, H, W)")
    out = exported.module()(torch.zeros(shape))
    out = out[0] if isinstance(out, (tuple, list)) else out
    source = Source(spec, path.stem, "torch", exported.module(), InputSpec("input", shape, "float32", "NCHW"),
                    "imagenet", [str(i) for i in range(int(out.shape[-1]))], path=str(path))
    source.exported = exported
    return source


def to_exported(source: Source) -> Form:
    """torch.export of the module (a saved program as it is)."""
    import torch

    exported = source.exported
    if exported is None:
        example = torch.zeros(source.input.shape, dtype=torch.float32)
        try:
            with torch.no_grad():
                exported = torch.export.export(source.native, (example,))
        except Exception as err:  # export failures name the torch-level problem
            raise ModelError(stage_message("convert", "PyTorch -> torch.export", source.spec, err)) from None
    return Form("torch.export", "exported", exported, source.input)


def to_onnx(source: Source) -> Form:
    """torch.onnx.export (dynamo) into an in-memory ONNX model."""
    import onnx
    import torch

    example = torch.zeros(source.input.shape, dtype=torch.float32)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(inference_mode(source.native), (example,), dynamo=True, verbose=False)
            program.save(buffer)
    except Exception as err:  # the exporter fails in many ways; the user needs one line
        raise ModelError(stage_message("convert", "PyTorch -> onnx via torch.onnx", source.spec, err)) from None
    model = onnx.load_from_string(buffer.getvalue())
    name = model.graph.input[0].name
    return Form("torch.onnx", "onnx", model, InputSpec(name, source.input.shape, "float32", "NCHW"))
