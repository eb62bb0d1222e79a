"""PyTorch eager on the CPU, no autograd: the framework's own answer for a torch model,
optionally pruned or cast to float16 / bfloat16 (``torch(precision=fp16)``)."""
from __future__ import annotations

from ..errors import InputError
from .base import Runner


class TorchRunner(Runner):
    name = "torch"
    syntax = "torch[(precision=fp32|fp16|bf16, prune=..)]"
    frameworks = ("torch",)

    @classmethod
    def check_program(cls, program) -> None:
        if program.framework != "torch" or program.native is None:
            raise InputError(f"variant 'torch' needs a PyTorch model; {program.spec!r} is a "
                             f"{program.framework} model")

    def prepare_impl(self) -> None:
        from ..compression import is_compressed
        from ..compression.apply import compress_torch
        from ..frameworks.pytorch import inference_mode

        model = inference_mode(self.program.native)
        self.model = compress_torch(model, self.variant.options) if is_compressed(self.variant.options) else model

    def artifact(self) -> dict:
        """The state dict as ``torch.save`` writes it (what a torch deployment ships)."""
        import io

        import torch

        from ..compression.pruning import torch_stats

        buffer = io.BytesIO()
        torch.save(self.model.state_dict(), buffer)
        stats = torch_stats(self.model)
        return {"size_bytes": buffer.tell(), "parameters": stats.parameters, "nonzeros": stats.nonzeros}

    def open_impl(self):
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        model = self.model
        dtype = next((p.dtype for p in model.parameters()), torch.float32)

        def infer(x):
            with torch.no_grad():
                out = model(torch.from_numpy(x).to(dtype))
            return (out[0] if isinstance(out, (tuple, list)) else out).float().numpy()

        return infer
