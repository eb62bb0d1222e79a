"""Golden outputs: every variant's outputs of a comparison saved to a folder
(`mutatenn compare --save-outputs DIR`), and replayed as the baseline of a later one
(`--baseline saved:DIR[:VARIANT]`) instead of running it again.

A saved folder holds one ``NAME.npy`` of logits (images × classes, float32, before any
label-space alignment) and ``NAME.latencies.npy`` (seconds per image) per variant, and
``manifest.json``: the model (spec, and a hash of its file bytes, of a model folder's
files, or of the spec string for named models, with the pretrained mode), the image set
(spec, names, labels, and a hash of the preprocessed batch), the environment (TVM, LLVM,
CPU, MutateNN) and which file holds which variant. A replay is refused when the model or
the preprocessed images differ from the saved ones.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

MANIFEST = "manifest.json"
FORMAT = 1
PREFIX = "saved:"


class SavedOutputsError(InputError):
    """A saved-outputs folder cannot be used as asked (missing, another model or image set)."""


# ---------------------------------------------------------------- fingerprints
def model_fingerprint(source, pretrained: str) -> dict:
    """What identifies the model: its file's bytes, a model folder's files, or (bundled,
    torchvision:, keras: models) its spec string; always with the pretrained mode."""
    path = Path(source.path) if getattr(source, "path", "") else None
    digest = hashlib.sha256()
    if path is not None and path.is_file():
        hashed = "file bytes"
        _hash_file(digest, path)
    elif path is not None and path.is_dir():
        hashed = "folder files"
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(path)).encode() + b"\0")
            _hash_file(digest, file)
    else:
        hashed = "spec string"
        digest.update(source.spec.encode())
    digest.update(f"\0pretrained={pretrained}".encode())
    return {"spec": source.spec, "name": source.name, "framework": source.framework, "pretrained": pretrained,
            "preset": source.preset, "hashed": f"{hashed} and pretrained mode", "hash": digest.hexdigest()}


def _hash_file(digest, path: Path) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def image_fingerprint(source, images_spec: str, images) -> dict:
    """The image set as the model sees it: the batch preprocessed by the model's preset
    into its input layout, hashed (so another preset or size is another image set)."""
    from .images import preprocess

    batch = preprocess(images, source.preset, source.input.shape, source.input.layout)
    digest = hashlib.sha256(f"{batch.dtype}{batch.shape}".encode())
    digest.update(np.ascontiguousarray(batch).tobytes())
    return {"spec": images_spec, "count": len(images), "names": list(images.names), "labels": list(images.labels),
            "batch_shape": list(batch.shape), "layout": source.input.layout, "batch_hash": digest.hexdigest()}


def environment() -> dict:
    """Where the outputs were computed (a replay elsewhere may differ in the last bits)."""
    import platform

    import tvm

    from . import __version__
    from .build import host_cpu_name

    info = tvm.support.libinfo()
    llvm = info.get("LLVM_VERSION", "")
    if not llvm:  # 0.27's libinfo has only USE_LLVM; the codegen knows the major version
        try:
            llvm = str(tvm.target.codegen.llvm_version_major())
        except Exception:  # a TVM built without LLVM
            llvm = ""
    return {"tvm": tvm.__version__, "llvm": llvm, "cpu": host_cpu_name(), "mutatenn": __version__,
            "numpy": np.__version__, "python": platform.python_version(), "machine": platform.machine()}


# ---------------------------------------------------------------- saving
def prepare_folder(path: Path) -> Path:
    """The --save-outputs folder: new or empty (nothing is overwritten)."""
    from .outputs import prepare_out_dir

    return prepare_out_dir(Path(path))


def file_stem(variant: str, taken: set[str]) -> str:
    """A file name for a variant's outputs (``tvm:cpu:O3(via=tflite)`` -> ``tvm_cpu_O3_via_tflite``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", variant).strip("_.") or "variant"
    candidate, number = stem, 1
    while candidate in taken:
        number += 1
        candidate = f"{stem}-{number}"
    taken.add(candidate)
    return candidate


def save_outputs(folder: Path, source, pretrained: str, images_spec: str, images, results: dict,
                 baseline: str | None) -> Path:
    """Write every variant's outputs that ran (``results``: variant -> VariantResult) and
    the manifest; ``baseline``: the variant that was the baseline (None: a saved one)."""
    from .outputs import write_json

    folder = Path(folder)
    taken: set[str] = set()
    variants, errors = {}, {}
    for name, result in results.items():
        if result.error:
            errors[name] = result.error
            continue
        stem = file_stem(name, taken)
        np.save(folder / f"{stem}.npy", np.asarray(result.output.logits, dtype=np.float32))
        np.save(folder / f"{stem}.latencies.npy", np.asarray(result.output.latencies, dtype=np.float64))
        variants[name] = {"logits": f"{stem}.npy", "latencies": f"{stem}.latencies.npy",
                          "shape": list(result.output.logits.shape), "build_s": round(result.build_s, 3)}
    manifest = {
        "kind": "mutatenn-saved-outputs", "format": FORMAT,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model_fingerprint(source, pretrained), "images": image_fingerprint(source, images_spec, images),
        "environment": environment(), "baseline": baseline if baseline in variants else None,
        "variants": variants, "errors": errors,
    }
    write_json(folder / MANIFEST, manifest)
    return folder / MANIFEST


# ---------------------------------------------------------------- replaying
@dataclass
class SavedBaseline:
    """``--baseline saved:DIR[:VARIANT]``: one variant's saved outputs as the baseline."""

    folder: Path
    variant: str  # the saved variant (as it was written then)
    manifest: dict

    @property
    def text(self) -> str:
        """The baseline's name in tables: ``saved:VARIANT``."""
        return f"{PREFIX}{self.variant}"

    @property
    def path_text(self) -> str:
        return f"saved outputs of {self.variant} ({self.folder})"

    def check(self, source, pretrained: str, images_spec: str, images) -> list[str]:
        """Refuse outputs of another model or image set (one line naming what differs);
        the notes say where the environment differs (outputs may differ in the last bits)."""
        saved, now = self.manifest["model"], model_fingerprint(source, pretrained)
        if saved["hash"] != now["hash"]:
            raise SavedOutputsError(
                f"saved outputs in {str(self.folder)!r} are from another model: {saved['spec']} "
                f"(pretrained={saved['pretrained']}, {saved['hashed']} hash {saved['hash'][:12]}) there, {now['spec']} "
                f"(pretrained={now['pretrained']}, {now['hashed']} hash {now['hash'][:12]}) here")
        saved, now = self.manifest["images"], image_fingerprint(source, images_spec, images)
        if saved["batch_hash"] != now["batch_hash"]:
            what = ("image names" if saved["names"] != now["names"] else "preprocessed pixels")
            raise SavedOutputsError(
                f"saved outputs in {str(self.folder)!r} are from another image set ({what} differ): "
                f"{saved['spec']} ({saved['count']} images, batch hash {saved['batch_hash'][:12]}) there, "
                f"{now['spec']} ({now['count']} images, batch hash {now['batch_hash'][:12]}) here")
        then, here = self.manifest.get("environment", {}), environment()
        differ = [f"{k} {then.get(k)!r} -> {here[k]!r}" for k in ("tvm", "llvm", "cpu", "mutatenn")
                  if then.get(k) != here[k]]
        return [f"saved outputs were computed elsewhere ({', '.join(differ)}): expect last-bit differences"] if differ else []

    def result(self):
        """The saved outputs as a `VariantResult` named `text`."""
        from .execute import VariantResult
        from .runners import RunOutput

        entry = self.manifest["variants"][self.variant]
        try:
            logits = np.load(self.folder / entry["logits"])
            latencies = np.load(self.folder / entry["latencies"])
        except (OSError, ValueError) as err:
            raise SavedOutputsError(f"cannot read the saved outputs of {self.variant!r} in "
                                    f"{str(self.folder)!r}: {err}") from None
        return VariantResult(self.text, RunOutput(logits.astype(np.float32), latencies), entry.get("build_s", 0.0))


def is_saved(text: str) -> bool:
    return text.strip().startswith(PREFIX)


def parse_saved_baseline(text: str, what: str = "--baseline") -> SavedBaseline:
    """``saved:DIR`` (the saved run's baseline) or ``saved:DIR:VARIANT``; DIR is the longest
    prefix that is a folder holding a manifest (a folder name may itself hold ':').
    ``what`` names the setting in error lines (an option, or a config key)."""
    rest = text.strip()[len(PREFIX):]
    if not rest:
        raise SavedOutputsError(f"{what} saved:DIR[:VARIANT]: give the folder --save-outputs wrote")
    cuts = [len(rest)] + [i for i in range(len(rest) - 1, 0, -1) if rest[i] == ":"]
    for cut in cuts:
        folder = Path(rest[:cut]).expanduser()
        if (folder / MANIFEST).is_file():
            variant = rest[cut + 1:]
            break
    else:
        folder = Path(rest.split(":", 1)[0]).expanduser()
        why = "does not exist" if not folder.exists() else f"holds no {MANIFEST} (not written by --save-outputs)"
        raise SavedOutputsError(f"{what} {text!r}: saved-outputs folder {str(folder)!r} {why}")
    manifest = _read_manifest(folder)
    saved = list(manifest.get("variants", {}))
    if not variant:
        variant = manifest.get("baseline") or ""
        if not variant:
            raise SavedOutputsError(f"{what} {text!r}: {str(folder)!r} saved no baseline of its own; name one: "
                                    f"saved:{folder}:VARIANT ({', '.join(saved)})")
    if variant not in saved:
        raise SavedOutputsError(f"{what} {text!r}: {str(folder)!r} holds no outputs of variant {variant!r} "
                                f"(it holds: {', '.join(saved) or 'none'})")
    return SavedBaseline(folder, variant, manifest)


def _read_manifest(folder: Path) -> dict:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SavedOutputsError(f"cannot read {str(folder / MANIFEST)!r}: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "mutatenn-saved-outputs":
        raise SavedOutputsError(f"{str(folder / MANIFEST)!r} is not a MutateNN saved-outputs manifest")
    if manifest.get("format", 0) > FORMAT:
        raise SavedOutputsError(f"{str(folder)!r} was written by a newer MutateNN (format {manifest['format']})")
    return manifest
