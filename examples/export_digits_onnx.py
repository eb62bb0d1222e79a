"""Write examples/digits.onnx: the bundled digits CNN exported with torch.onnx (dynamo).

    python examples/export_digits_onnx.py [OUT.onnx]

examples/digits-onnx.toml points at the file this writes.
"""
from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from mutatenn.models.digits import load_trained
    from mutatenn.runners import export_torch_to_onnx

    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else Path(__file__).resolve().parent / "digits.onnx"
    export_torch_to_onnx(load_trained(), (1, 1, 8, 8), out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
