"""Image sets (folders and bundled sets) and deterministic preprocessing presets."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ImageSetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
BUNDLED_SETS = {
    "digits": "held-out split of scikit-learn's 8x8 digits (labelled, 450 images)",
    "photos": "real photographs that ship with scikit-image and scikit-learn (unlabelled)",
}
SKIMAGE_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png",
    "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
    "motorcycle_left.png", "retina.jpg", "rocket.jpg",
)
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
PRESETS = {
    "imagenet": "resize shorter side to 256/224 of the input, centre crop, /255, ImageNet mean/std",
    "inception": "resize shorter side to 342/299 of the input, centre crop, scale to [-1, 1]",
    "caffe": "resize and centre crop as imagenet, RGB to BGR, subtract the Caffe BGR means (0..255)",
    "raw": "resize to the input size, /255",
    "tf": "resize and centre crop as imagenet, scale to [-1, 1] (Keras MobileNet)",
    "pixels": "resize and centre crop as imagenet, 0..255 as they are (Keras EfficientNet rescales inside)",
}

# What a preset assumes of the model's input: ImageNet-style presets normalise three colour
# channels and crop the centre of a resized photo, which fits only inputs of some size.
PRESET_CHANNELS = {"imagenet": 3, "inception": 3, "caffe": 3, "tf": 3, "pixels": 3}
CROP_MIN_SIDE = 32
FALLBACK_PRESET = "raw"  # fits every input: a plain resize to the input's size


def input_hwc(shape: tuple[int, ...], layout: str) -> tuple[int, int, int]:
    """(height, width, channels) of a 4-d input shape in ``layout``."""
    return (shape[1], shape[2], shape[3]) if layout == "NHWC" else (shape[2], shape[3], shape[1])


def preset_misfit(preset: str, shape: tuple[int, ...], layout: str) -> str:
    """Why ``preset`` does not fit an input (empty when it does)."""
    height, width, channels = input_hwc(shape, layout)
    wanted = PRESET_CHANNELS.get(preset)
    if wanted is None:
        return ""
    if channels != wanted or min(height, width) < CROP_MIN_SIDE:
        return (f"{preset} is for {wanted}-channel photos of at least {CROP_MIN_SIDE}x{CROP_MIN_SIDE}; "
                f"the model takes {height}x{width}x{channels}")
    return ""


def fitting_presets(shape: tuple[int, ...], layout: str) -> list[str]:
    return [name for name in PRESETS if not preset_misfit(name, shape, layout)]


def preprocessing_line(preset: str, shape: tuple[int, ...], layout: str) -> str:
    """``raw (resize to the input size, /255) to 8x8x1``: what every command says first,
    so the preset that shapes every result is never silent."""
    height, width, channels = input_hwc(shape, layout)
    return f"{preset} ({PRESETS.get(preset, '?')}) to {height}x{width}x{channels}"


@dataclass
class ImageSet:
    """Images in a fixed order; ``labels`` holds ground-truth class names or None."""

    name: str
    names: list[str]
    images: list[np.ndarray]  # uint8, (H, W) or (H, W, 3)
    labels: list[str | None]
    skipped: list[str] = field(default_factory=list)  # files of the folder that are not images

    def __len__(self) -> int:
        return len(self.names)

    @property
    def has_labels(self) -> bool:
        return all(label is not None for label in self.labels) and len(self.labels) > 0

    def head(self, count: int) -> "ImageSet":
        return ImageSet(f"{self.name}:{count}", self.names[:count], self.images[:count], self.labels[:count],
                        self.skipped)

    def skipped_line(self) -> str:
        """One warning line counting the folder's files that are not images (empty: none)."""
        if not self.skipped:
            return ""
        shown = ", ".join(self.skipped[:3]) + (", ..." if len(self.skipped) > 3 else "")
        return (f"{len(self.skipped)} file{'s' if len(self.skipped) > 1 else ''} in {self.name!r} "
                f"not jpg or png, skipped: {shown}")


def load_image_set(spec: str) -> ImageSet:
    """A bundled set name (optionally ``NAME:COUNT``) or a folder of images."""
    base, _, count = spec.partition(":")
    if base in BUNDLED_SETS and not Path(spec).exists():
        images = _bundled(base)
        if count:
            if not count.isdigit() or int(count) < 1:
                raise ImageSetError(f"image set {spec!r}: the count after ':' must be a positive integer")
            images = images.head(int(count))
        return images
    return load_folder(Path(spec))


def load_folder(path: Path) -> ImageSet:
    """jpg/png files of a folder, sorted; files in class sub-folders get that class as label."""
    if not path.exists():
        known = ", ".join(BUNDLED_SETS)
        raise ImageSetError(f"image set {str(path)!r} is neither a folder nor a bundled set ({known})")
    if not path.is_dir():
        raise ImageSetError(f"image set {str(path)!r} is not a folder")
    entries: list[tuple[str, Path, str | None]] = []
    for item in sorted(path.iterdir()):
        if item.name.startswith("."):
            continue
        if item.is_dir():
            for sub in sorted(item.iterdir()):
                if sub.name.startswith("."):
                    continue
                entries.append((f"{item.name}/{sub.name}", sub, item.name))
        else:
            entries.append((item.name, item, None))
    skipped = [name for name, file, _ in entries if file.suffix.lower() not in IMAGE_SUFFIXES or not file.is_file()]
    entries = [entry for entry in entries if entry[0] not in skipped]  # a README, a labels file: not images
    if not entries:
        raise ImageSetError(f"image folder {str(path)!r} holds no jpg or png images")
    names, images, labels = [], [], []
    for name, file, label in entries:
        images.append(read_image(file))  # a jpg or png that cannot be read stops the run, naming it
        names.append(name)
        labels.append(label)
    if any(label is None for label in labels) and any(label is not None for label in labels):
        labels = [None] * len(labels)  # mixed layout: ground truth would be partial
    return ImageSet(str(path), names, images, labels, skipped)


def read_image(file: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as img:
            img.load()
            return _as_uint8(img)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageSetError(f"cannot read image {str(file)!r}: {err}") from None


def _as_uint8(img) -> np.ndarray:
    if img.mode in ("L", "I;16", "I", "F"):
        arr = np.asarray(img.convert("L"))
    else:
        arr = np.asarray(img.convert("RGB"))
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _bundled(name: str) -> ImageSet:
    if name == "digits":
        from .models.digits import digits_split

        split = digits_split()
        names = [f"digit_{i:04d}" for i in range(len(split["test_y"]))]
        return ImageSet("digits", names, list(split["test_x"]), [str(int(y)) for y in split["test_y"]])
    import skimage
    import sklearn

    sk_dir = Path(skimage.__file__).parent / "data"
    sl_dir = Path(sklearn.__file__).parent / "datasets" / "images"
    files = [sk_dir / f for f in SKIMAGE_PHOTOS] + [sl_dir / f for f in SKLEARN_PHOTOS]
    files = [f for f in files if f.exists()]
    return ImageSet("photos", [f.stem for f in files], [read_image(f) for f in files], [None] * len(files))


def _pil(img: np.ndarray):
    from PIL import Image

    return Image.fromarray(img)


def _match_channels(img: np.ndarray, channels: int) -> np.ndarray:
    if channels == 3 and img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if channels == 1 and img.ndim == 3:
        return np.asarray(_pil(img).convert("L"))
    return img


def _resize_shorter_and_crop(img: np.ndarray, height: int, width: int, scale: float) -> np.ndarray:
    from PIL import Image

    pil = _pil(img)
    short = max(1, int(round(min(height, width) * scale)))
    w, h = pil.size
    if w <= h:
        new_w, new_h = short, max(1, int(round(h * short / w)))
    else:
        new_w, new_h = max(1, int(round(w * short / h))), short
    pil = pil.resize((new_w, new_h), Image.BILINEAR)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    if left < 0 or top < 0:
        pil = pil.resize((max(width, new_w), max(height, new_h)), Image.BILINEAR)
        left, top = (pil.size[0] - width) // 2, (pil.size[1] - height) // 2
    return np.asarray(pil.crop((left, top, left + width, top + height)))


def preprocess(images: ImageSet, preset: str, shape: tuple[int, ...], layout: str = "NCHW") -> np.ndarray:
    """All images of a set as one float32 batch of ``shape[1:]`` items, by ``preset``."""
    if preset not in PRESETS:
        raise ImageSetError(f"unknown preprocessing preset {preset!r} (known: {', '.join(PRESETS)})")
    if layout == "NCHW":
        channels, height, width = shape[1], shape[2], shape[3]
    else:
        height, width, channels = shape[1], shape[2], shape[3]
    out = np.empty((len(images), channels, height, width), dtype=np.float32)
    for i, img in enumerate(images.images):
        img = _match_channels(img, channels)
        if preset == "raw":
            from PIL import Image

            arr = np.asarray(_pil(img).resize((width, height), Image.BILINEAR), dtype=np.float32) / 255.0
        else:
            scale = 342 / 299 if preset == "inception" else 256 / 224
            arr = _resize_shorter_and_crop(img, height, width, scale).astype(np.float32)
            arr = _normalise(arr, preset)
        arr = arr.reshape(height, width, channels) if arr.ndim == 2 else arr
        out[i] = arr.transpose(2, 0, 1)
    return out if layout == "NCHW" else out.transpose(0, 2, 3, 1).copy()


def _normalise(arr: np.ndarray, preset: str) -> np.ndarray:
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if preset == "imagenet":
        mean = np.array([0.485, 0.456, 0.406], np.float32)[:channels]
        std = np.array([0.229, 0.224, 0.225], np.float32)[:channels]
        return (arr / 255.0 - mean) / std
    if preset in ("inception", "tf"):
        return arr / 127.5 - 1.0
    if preset == "pixels":
        return arr
    # caffe: BGR order, per-channel means on the 0..255 scale
    if channels == 3:
        arr = arr[:, :, ::-1]
    mean = np.array([103.939, 116.779, 123.68], np.float32)[:channels]
    return arr - mean


def thumbnail_uri(img: np.ndarray, size: int = 64) -> str:
    """A small PNG of the image as a data URI, for reports."""
    from PIL import Image

    pil = _pil(img)
    pil.thumbnail((size, size), Image.BILINEAR if max(pil.size) > size else Image.NEAREST)
    if max(pil.size) < 32:  # tiny images (8x8 digits) are scaled up so a person can see them
        factor = 32 // max(pil.size)
        pil = pil.resize((pil.size[0] * factor, pil.size[1] * factor), Image.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
