"""TensorFlow sources (``keras:NAME`` from keras.applications, ``.keras``/``.h5`` files,
SavedModel folders, ``.tflite`` files) and their paths: the TFLite converter and tf2onnx.

TensorFlow models take NHWC input; that layout is kept on every path (TVM's TFLite import
stays NHWC, tf2onnx's graph takes NHWC then transposes), so each form states it and the
image batch is laid out to match. keras.applications models are built with
``classifier_activation=None``: every framework path then gives logits, as torchvision does.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from pathlib import Path

from ..errors import ModelError, first_line
from ..program import InputSpec, guess_layout
from . import Form, Source, stage_message
from .quiet import quiet_tensorflow

SEED = 0
# name -> (weights file in Keras' cache, input size, preprocessing preset): weights are
# looked for in $KERAS_HOME/models (~/.keras/models), never downloaded.
KERAS_MODELS = {
    "MobileNetV2": ("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5", 224, "tf"),
    "ResNet50": ("resnet50_weights_tf_dim_ordering_tf_kernels.h5", 224, "caffe"),
    "InceptionV3": ("inception_v3_weights_tf_dim_ordering_tf_kernels.h5", 299, "inception"),
    "DenseNet121": ("densenet121_weights_tf_dim_ordering_tf_kernels.h5", 224, "imagenet"),
    "EfficientNetB0": ("efficientnetb0.h5", 224, "pixels"),
}


@contextlib.contextmanager
def _tflite_info_dropped():
    """The TFLite runtime prints ``INFO: Created TensorFlow Lite XNNPACK delegate`` on the
    process's stderr (file descriptor 2, past Python); keep every other line it writes."""
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not line.startswith("INFO: ")]
            sys.stderr.write("".join(kept))


@contextlib.contextmanager
def _silenced():
    """Converters print progress to stdout ("Saved artifact at ..."); keep the CLI's output clean."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def keras_weights_file(name: str) -> Path:
    """Where Keras keeps pretrained weights for a keras.applications model."""
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    return home / "models" / KERAS_MODELS[name][0]


def imagenet_labels() -> list[str]:
    return (Path(__file__).parent.parent / "data" / "imagenet_classes.txt").read_text().splitlines()


def load_keras_application(spec: str, pretrained: str, trusted: bool = False) -> Source:
    """``keras:NAME``: built with seeded weights, then the cached pretrained ones when present."""
    from . import untrained

    name = spec.split(":", 1)[1]
    if name not in KERAS_MODELS:
        raise ModelError(f"unknown Keras application {name!r} (known: {', '.join(KERAS_MODELS)})")
    quiet_tensorflow()
    import keras

    file, size, preset = keras_weights_file(name), KERAS_MODELS[name][1], KERAS_MODELS[name][2]
    keras.utils.set_random_seed(SEED)
    model = getattr(keras.applications, name)(weights=None, classifier_activation=None)
    if pretrained != "never" and file.is_file():
        model.load_weights(str(file))
        notes = [f"pretrained weights from {file}"]
    else:
        notes = [untrained(name, file, pretrained, SEED), *settle_batchnorm(model, (size, size, 3))]
    return Source(spec, name, "keras", model, InputSpec("input", (1, size, size, 3), "float32", "NHWC"),
                  preset, imagenet_labels(), notes)


NOISE_IMAGES = 8  # seeded N(0, 1) images of the one batch that sets the statistics


def settle_batchnorm(model, shape: tuple[int, int, int]) -> list[str]:
    """Seeded weights with batch-norm statistics of N(0, 1) inputs, not the constructor's
    (mean 0, variance 1): with those, seeded MobileNetV2 gives logits near 1e-10 and one
    class on every photo, so no mutant could flip a label (`pytorch.settle_batchnorm` is the
    torchvision side). One forward pass in training mode with momentum 0 sets each layer's
    moving statistics to what it sees; weights are untouched; momentum is put back."""
    import keras
    import numpy as np

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return []
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    noise = np.random.default_rng(SEED).standard_normal((NOISE_IMAGES, *shape)).astype("float32")
    try:
        model(noise, training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
    return [f"batch-norm statistics of the seeded weights set on {NOISE_IMAGES} seeded N(0, 1) images (seed {SEED})"]


def load_keras_file(spec: str, pretrained: str, trusted: bool = False) -> Source:
    """A Keras 3 model saved as ``.keras`` or ``.h5``. Keras' safe mode (no Lambda layer
    bytecode, no object from outside Keras) stays on unless the user trusts the file."""
    quiet_tensorflow()
    import keras

    try:
        with _silenced():
            model = keras.models.load_model(spec, compile=False, safe_mode=not trusted)
    except Exception as err:
        if "safe_mode" in str(err):  # Keras' own refusal: said as MutateNN's other refusals are
            from ..errors import UntrustedModelError
            from ..models.safety import TRUST_HINT

            raise UntrustedModelError(f"model {spec!r} (Keras file) refused as untrusted: Keras' safe mode "
                                      f"refused it ({first_line(err, 160)}); pass {TRUST_HINT} if you trust this "
                                      "file: trusting it allows running its Python code") from None
        raise ModelError(stage_message("load", "Keras", spec, err)) from None
    return _keras_source(spec, model, "keras")


def load_saved_model(spec: str, pretrained: str, trusted: bool = False) -> Source:
    """A SavedModel folder: its serving signature (``serving_default`` or ``serve``)."""
    quiet_tensorflow()
    import tensorflow as tf

    try:
        with _silenced():
            loaded = tf.saved_model.load(spec)
    except Exception as err:
        raise ModelError(stage_message("load", "TensorFlow SavedModel", spec, err)) from None
    signature = next((loaded.signatures[k] for k in ("serving_default", "serve") if k in loaded.signatures), None)
    if signature is None:
        raise ModelError(stage_message("load", "TensorFlow SavedModel", spec,
                                       f"no serving signature (found: {', '.join(loaded.signatures) or 'none'})"))
    specs = list(signature.structured_input_signature[1].values())
    if len(specs) != 1 or len(specs[0].shape) != 4:
        raise ModelError(f"SavedModel {spec!r}: MutateNN needs one 4-d image input, the signature takes "
                         f"{[tuple(s.shape) for s in specs]}")
    shape = _fixed_shape(specs[0].shape)
    out = next(iter(signature.structured_outputs.values()))
    source = Source(spec, Path(spec).name, "savedmodel", _SavedModelCall(loaded, signature),
                    InputSpec(specs[0].name or "input", shape, "float32", "NHWC"), "imagenet",
                    [str(i) for i in range(int(out.shape[-1]))], path=spec)
    return source


class _SavedModelCall:
    """A SavedModel's serving function as a callable on one NHWC batch (keeps the object alive)."""

    def __init__(self, loaded, signature):
        self.loaded, self.signature = loaded, signature
        self.arg = next(iter(signature.structured_input_signature[1]))

    def __call__(self, x):
        import tensorflow as tf

        out = self.signature(**{self.arg: tf.constant(x)})
        return next(iter(out.values())).numpy()


def load_tflite(spec: str, pretrained: str, trusted: bool = False) -> Source:
    """A ``.tflite`` file: its one input and output read from the interpreter."""
    data = Path(spec).read_bytes()
    try:
        interpreter = make_interpreter(data)
    except Exception as err:
        raise ModelError(stage_message("load", "TFLite", spec, err)) from None
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(inputs[0]["shape"]) != 4:
        raise ModelError(f"TFLite model {spec!r}: MutateNN needs one 4-d image input, it takes "
                         f"{[tuple(i['shape']) for i in inputs]}")
    shape = tuple(int(d) for d in inputs[0]["shape"])
    layout = guess_layout(shape, "NHWC")
    return Source(spec, Path(spec).stem, "tflite", data, InputSpec(inputs[0]["name"], shape, "float32", layout),
                  "imagenet", [str(i) for i in range(int(outputs[0]["shape"][-1]))], path=spec)


def _keras_source(spec: str, model, framework: str) -> Source:
    inputs = model.inputs
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise ModelError(f"Keras model {spec!r}: MutateNN needs one 4-d image input, it takes "
                         f"{[tuple(i.shape) for i in inputs]}")
    shape = _fixed_shape(inputs[0].shape)
    classes = int(model.outputs[0].shape[-1])
    layout = guess_layout(shape, "NHWC")
    return Source(spec, Path(spec).stem, framework, model, InputSpec("input", shape, "float32", layout),
                  "imagenet", [str(i) for i in range(classes)], path=spec)


def _fixed_shape(shape) -> tuple[int, ...]:
    """A TF input shape with batch 1 and unknown spatial sizes 224."""
    dims = [None if d is None else int(d) for d in shape]
    if any(d is None for d in dims[1:]):
        dims[1:] = [d or (3 if i == 3 else 224) for i, d in enumerate(dims[1:], start=1)]
    return (1, *dims[1:])


def keras_call(source: Source):
    """``infer(x) -> array`` with the framework's own runtime (Keras eager or the SavedModel)."""
    if source.framework == "savedmodel":
        return source.native
    model = source.native
    return lambda x: model(x, training=False).numpy()


def _concrete_function(source: Source):
    """A tf.function with a fixed batch-1 signature for the converters."""
    import tensorflow as tf

    spec = tf.TensorSpec(source.input.shape, tf.float32, name="input")
    call = source.native
    if source.framework == "keras":
        return tf.function(lambda x: call(x, training=False), input_signature=[spec]), spec
    return tf.function(lambda x: call.signature(**{call.arg: x})[next(iter(call.signature.structured_outputs))],
                       input_signature=[spec]), spec


def to_tflite(source: Source) -> Form:
    """The TFLite converter (float32, no quantisation) on the model's batch-1 function with
    its variables frozen; a .tflite source as it is. Converting the Keras model itself keeps
    a dynamic batch, so a Flatten becomes a RESHAPE whose shape is computed at run time,
    which TVM's TFLite frontend cannot import; with the input shape fixed it is a constant."""
    if source.framework == "tflite":
        return Form("tflite", "tflite", source.native, source.input)
    quiet_tensorflow()
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    with _silenced():
        function, _ = _concrete_function(source)
        frozen = convert_variables_to_constants_v2(function.get_concrete_function())
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], tf.Module())
        try:
            data = converter.convert()
        except Exception as err:  # name the ops TFLite lacks: the MLIR dump's first line does not
            missing = re.search(r"TF Select ops: ([^\n]+)", str(err))
            if not missing:
                raise
            raise ModelError(stage_message("convert", f"{source.framework_name} -> tflite via tflite", source.spec,
                                           f"TFLite has no builtin op for {missing[1].strip()}")) from None
    interpreter = make_interpreter(data)
    detail = interpreter.get_input_details()[0]
    shape = tuple(int(d) for d in detail["shape"])
    return Form("tflite", "tflite", bytes(data), InputSpec(detail["name"], shape, "float32", source.input.layout))


def tflite_quantized(source: Source, mode: str, calibration=None) -> bytes:
    """The TFLite converter with quantisation: ``int8-static`` full-integer (every op int8,
    a representative data set of ``calibration`` images, float input and output kept so
    paths compare), ``int8-dynamic`` dynamic-range (int8 weights, float activations).
    Needs the TensorFlow model itself: a .tflite file is already converted."""
    if source.framework == "tflite":
        raise ModelError(f"tflite(quantize={mode}) needs a Keras or SavedModel model; {source.spec!r} is "
                         "already a .tflite file")
    quiet_tensorflow()
    import tensorflow as tf

    with _silenced():
        if source.framework == "keras":
            converter = tf.lite.TFLiteConverter.from_keras_model(source.native)
        else:
            converter = tf.lite.TFLiteConverter.from_saved_model(source.path)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "int8-static":
            rows = calibration.astype("float32")
            converter.representative_dataset = lambda: ([rows[i : i + 1]] for i in range(len(rows)))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return bytes(converter.convert())


def to_onnx(source: Source) -> Form:
    """tf2onnx at opset 17 with a fixed batch-1 input named ``input`` (NHWC as the source)."""
    quiet_tensorflow()
    import tf2onnx

    with _silenced():
        if source.framework == "tflite":
            with _temporary_file(source.native, ".tflite") as path:
                model, _ = tf2onnx.convert.from_tflite(path, opset=17)
        else:
            function, spec = _concrete_function(source)
            model, _ = tf2onnx.convert.from_function(function, input_signature=[spec], opset=17)
    name = model.graph.input[0].name
    return Form("tf2onnx", "onnx", model, InputSpec(name, source.input.shape, "float32", source.input.layout))


@contextlib.contextmanager
def _temporary_file(data: bytes, suffix: str):
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mutatenn-") as tmp:
        path = Path(tmp) / f"model{suffix}"
        path.write_bytes(data)
        yield str(path)


def make_interpreter(data: bytes, threads: int = 0):
    """A TFLite interpreter on the bytes: LiteRT's when installed, else TensorFlow's own
    (deprecated in TF 2.21 but identical outputs)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        quiet_tensorflow()
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings(), _tflite_info_dropped():
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_content=data, num_threads=threads or None)
        interpreter.allocate_tensors()
    return interpreter


def tflite_call(data: bytes, threads: int = 0):
    """``infer(x) -> array`` on the TFLite interpreter; int8/uint8 models are fed and read
    through their quantisation parameters, so they compare with float paths."""
    import numpy as np

    interpreter = make_interpreter(data, threads)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def infer(x):
        if np.issubdtype(inp["dtype"], np.integer):
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], x.reshape(inp["shape"]))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if np.issubdtype(out["dtype"], np.integer):
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y

    return infer
