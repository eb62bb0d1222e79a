"""The bundled default model: a small CNN for scikit-learn's 8x8 digits.

`python -m mutatenn.models.digits` retrains it reproducibly (fixed seed) and writes the
weights that ship in ``mutatenn/data/digits_cnn.pt``; it prints the held-out accuracy.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

WEIGHTS = Path(__file__).resolve().parent.parent / "data" / "digits_cnn.pt"
SEED = 20261122
HELD_OUT_FRACTION = 0.25
LABELS = [str(i) for i in range(10)]


def digits_split() -> dict[str, np.ndarray]:
    """Train / held-out split of the digits data as uint8 greyscale images (0..255)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = np.clip(np.rint(data.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, data.target, test_size=HELD_OUT_FRACTION, random_state=0, stratify=data.target
    )
    return {"train_x": x_tr, "train_y": y_tr, "test_x": x_te, "test_y": y_te}


def build_model():
    """Conv-BN-ReLU, a residual conv block, max-pool, two dense layers."""
    import torch
    from torch import nn

    class DigitsCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(16)
            self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
            self.bn2 = nn.BatchNorm2d(16)
            self.pool = nn.MaxPool2d(2)
            self.fc1 = nn.Linear(16 * 4 * 4, 64)
            self.fc2 = nn.Linear(64, 10)

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv1(x)))
            h = torch.relu(h + self.bn2(self.conv2(h)))
            h = self.pool(h).flatten(1)
            return self.fc2(torch.relu(self.fc1(h)))

    return DigitsCNN()


def to_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 8, 8) images to the model's float input (N, 1, 8, 8) in [0, 1]."""
    return (images.astype(np.float32) / 255.0)[:, None, :, :]


def train(epochs: int = 40) -> tuple[object, float]:
    import torch

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)
    split = digits_split()
    x = torch.from_numpy(to_input(split["train_x"]))
    y = torch.from_numpy(split["train_y"]).long()
    model = build_model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    return model.eval(), held_out_accuracy(model)


def held_out_accuracy(model) -> float:
    import torch

    split = digits_split()
    with torch.no_grad():
        pred = model.eval()(torch.from_numpy(to_input(split["test_x"]))).argmax(1).numpy()
    return float((pred == split["test_y"]).mean())


def load_trained():
    """The shipped model with its trained weights."""
    import torch

    model = build_model()
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Retrain the bundled digits CNN (fixed seed).")
    parser.add_argument("--out", type=Path, default=WEIGHTS, help="where to write the weights")
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args(argv)
    import torch

    model, acc = train(args.epochs)
    tmp = args.out.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(args.out)
    print(f"held-out accuracy: {acc:.4f} on {len(digits_split()['test_y'])} images; weights: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
