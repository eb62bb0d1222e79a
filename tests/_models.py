"""Tiny seeded CNNs imported to Relax, and a helper that builds and runs a module."""
from __future__ import annotations

import functools

import numpy as np


def _tiny_cnn():
    import torch

    class TinyCNN(torch.nn.Module):
        """conv2d + batch_norm + relu + max_pool + two linear layers + a residual add."""

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)
            self.pool = torch.nn.MaxPool2d(2)
            self.fc1 = torch.nn.Linear(64, 8)
            self.fc2 = torch.nn.Linear(8, 8)

        def forward(self, x):
            y = self.pool(torch.relu(self.bn(self.conv(x))))
            h = self.fc1(torch.flatten(y, 1))
            return self.fc2(h) + h

    torch.manual_seed(0)
    model = TinyCNN().eval()
    with torch.no_grad():
        # Running statistics and shift away from their defaults; the scale stays all ones,
        # so shuffling or rounding it changes nothing (an equivalent mutant).
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 1.5)
        model.bn.bias.uniform_(-0.2, 0.2)
    return model


@functools.lru_cache(maxsize=None)
def tiny_input() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype("float32")


@functools.lru_cache(maxsize=None)
def tiny_module():
    """The tiny CNN as a Relax module with its weights as constants (imported once)."""
    import torch
    import tvm
    import tvm.relax.frontend.torch  # noqa: F401  (registers the frontend)

    model = _tiny_cnn()
    with torch.no_grad():
        exported = torch.export.export(model, (torch.from_numpy(tiny_input()),))
    return tvm.relax.frontend.torch.from_exported_program(exported, keep_params_as_input=False)


@functools.lru_cache(maxsize=None)
def conv_pool_fc_module(softmax: bool = False):
    """conv2d + relu + max_pool + one linear layer (and a softmax head when asked) as a
    Relax module with constant weights: the smallest CNN whose TIR has padding
    conditions, reductions and loops of every kind the TIR operators look for."""
    import torch
    import tvm
    import tvm.relax.frontend.torch  # noqa: F401  (registers the frontend)

    class ConvPoolFC(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.pool = torch.nn.MaxPool2d(2)
            self.fc = torch.nn.Linear(4 * 4 * 4, 5)

        def forward(self, x):
            y = self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))
            return torch.softmax(y, dim=1) if softmax else y

    torch.manual_seed(0)
    model = ConvPoolFC().eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        exported = torch.export.export(model, (x,))
    return tvm.relax.frontend.torch.from_exported_program(exported, keep_params_as_input=False)


def build_and_run(mod, x: np.ndarray) -> np.ndarray:
    """Compile ``mod`` for the generic x86-64 CPU and run ``main`` on ``x``."""
    import tvm
    from tvm import relax

    target = tvm.target.Target({"kind": "llvm", "mcpu": "x86-64"})
    ex = tvm.compile(mod, target=target, relax_pipeline=relax.backend.cpu_generic.get_default_pipeline(target))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x))
    return (out[0] if not hasattr(out, "numpy") else out).numpy()
