"""Writes small TensorFlow models for the framework-path tests into a folder.

Run as a script in its own process (``python tests/_keras_models.py DIR``): the test
process never imports TensorFlow, because torchvision imported after it segfaults.

- small.keras / small.h5 / small_saved/ / small.tflite: one seeded 8x8x1 CNN (conv, batch
  norm, pooling, dense) with 10 classes, in every TensorFlow format;
- background.tflite: the same network with an 11th output unit in front (a background
  class at index 0, as TF-slim models have 1001 classes against 1000);
- erf_saved/: a SavedModel of a CNN with an erf activation, which the TFLite converter refuses;
- broken.keras: bytes that are not a Keras file; nosignature/: a SavedModel without a
  serving signature.

``python tests/_keras_models.py --architectures DIR`` writes small seeded models of the
kinds a user writes (`ARCHITECTURES`), one ``.keras`` file each.

``python tests/_keras_models.py --weights HOME`` writes a MobileNetV2 weights file into a
Keras home folder instead.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def small_cnn(keras, classes: int, activation=None):
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.BatchNormalization()(x)
    if activation is not None:
        x = keras.layers.Lambda(activation)(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(classes)(x))


def architectures(keras) -> dict:
    """Small 8x8x1 networks of the layer kinds a user's own Keras model has: a Sequential
    CNN with Flatten (its RESHAPE once needed a run-time shape), global average pooling
    with batch norm and dropout, a residual add, and depthwise convolutions."""
    layers = keras.layers
    inp = keras.Input((8, 8, 1))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    y = layers.Conv2D(8, 3, padding="same")(x)
    x = layers.Flatten()(layers.Activation("relu")(layers.Add()([x, y])))
    return {
        "flatten": keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(8, 3, padding="same", activation="relu"),
                                     layers.MaxPooling2D(), layers.Conv2D(16, 3, padding="same", activation="relu"),
                                     layers.Flatten(), layers.Dense(10)]),
        "gap_bn_dropout": keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(8, 3, padding="same"),
                                            layers.BatchNormalization(), layers.ReLU(), layers.Dropout(0.3),
                                            layers.GlobalAveragePooling2D(), layers.Dense(10)]),
        "residual": keras.Model(inp, layers.Dense(10)(x)),
        "depthwise": keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(8, 1),
                                       layers.DepthwiseConv2D(3, padding="same", activation="relu"),
                                       layers.Conv2D(8, 1), layers.AveragePooling2D(2), layers.Flatten(),
                                       layers.Dense(10)]),
    }


def write_architectures(out: Path) -> None:
    import keras

    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    for name, model in architectures(keras).items():
        model.save(out / f"{name}.keras")


def with_background_class(keras, model):
    """The same network with one more output unit in front (its weights zero)."""
    import numpy as np

    wide = small_cnn(keras, 11)
    for src, dst in zip(model.layers[:-1], wide.layers[:-1]):
        dst.set_weights(src.get_weights())
    kernel, bias = model.layers[-1].get_weights()
    wide.layers[-1].set_weights([np.concatenate([np.zeros_like(kernel[:, :1]), kernel], axis=1),
                                 np.concatenate([np.full(1, -50.0, bias.dtype), bias])])
    return wide


def main(out: Path) -> None:
    import keras
    import numpy as np
    import tensorflow as tf

    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    model = small_cnn(keras, 10)
    # Non-trivial batch-norm statistics, so the folded weights matter.
    bn = model.layers[2]
    rng = np.random.default_rng(0)
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([gamma * rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                    rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
    with contextlib.redirect_stdout(io.StringIO()):
        model.save(out / "small.keras")
        model.save(out / "small.h5")
        model.export(str(out / "small_saved"))
        (out / "small.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        wide = with_background_class(keras, model)
        (out / "background.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(wide).convert())
        small_cnn(keras, 10, keras.ops.erf).export(str(out / "erf_saved"))
        tf.saved_model.save(tf.Module(), str(out / "nosignature"))
    (out / "broken.keras").write_bytes(b"not a keras file")


def write_keras_weights(home: Path, seed: int = 1) -> Path:
    """A MobileNetV2 weights file where Keras keeps downloaded ones ($KERAS_HOME/models),
    in the legacy HDF5 layout of the published files (seeded, not the real weights)."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(weights=None, classifier_activation=None)
    path = home / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


if __name__ == "__main__":
    if sys.argv[1] == "--weights":
        write_keras_weights(Path(sys.argv[2]))
    elif sys.argv[1] == "--architectures":
        write_architectures(Path(sys.argv[2]))
    else:
        main(Path(sys.argv[1]))
