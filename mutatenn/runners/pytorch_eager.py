"""PyTorch eager on the CPU, no autograd: the framework's own answer for a torch model."""
from __future__ import annotations

from ..errors import InputError
from .base import Runner


class TorchRunner(Runner):
    name = "torch"
    frameworks = ("torch",)

    @classmethod
    def check_program(cls, program) -> None:
        if program.framework != "torch" or program.native is None:
            raise InputError(f"variant 'torch' needs a PyTorch model; {program.spec!r} is a "
                             f"{program.framework} model")

    def open_impl(self):
        import torch

        model = self.program.native.eval()

        def infer(x):
            with torch.no_grad():
                out = model(torch.from_numpy(x))
            return (out[0] if isinstance(out, (tuple, list)) else out).numpy()

        return infer
