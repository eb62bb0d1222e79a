"""A runner defined outside MutateNN, as a user would write one: PyTorch eager in float64.

It is registered by tests/test_extensions.py through the public runner table; its module
is importable in worker processes because it sits on the test's import path."""
from __future__ import annotations

from mutatenn.errors import InputError
from mutatenn.runners import Runner


class Float64TorchRunner(Runner):
    name = "torch64"

    @classmethod
    def check_program(cls, program) -> None:
        if program.framework != "torch" or program.native is None:
            raise InputError("variant 'torch64' needs a PyTorch model")

    def prepare_impl(self) -> None:
        import copy

        self.model = copy.deepcopy(self.program.native).double().eval()

    def open_impl(self):
        import torch

        def infer(x):
            with torch.no_grad():
                return self.model(torch.from_numpy(x).double()).numpy()

        return infer
