"""Where training and attacks run: `auto` (CUDA when this machine has it, else the CPU), `cpu`,
`cuda` or `cuda:<i>`. Models and the defences' networks are moved there once; ART's
`PyTorchClassifier` then keeps every attack step's tensors on it (numpy only at ART's boundary).

Numbers are reproducible per device kind: the cell store keys cells by the kind (`cpu`, `cuda`),
so a CUDA run never reuses CPU cells nor the reverse, and trained models are cached with the
kind they were trained on recorded in their checkpoint.
"""

from __future__ import annotations

import torch

from .errors import ConfigError

CHOICES = "auto, cpu, cuda or cuda:<index>"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device named by `spec` (None = auto), with a clear error for one this machine lacks."""
    text = "auto" if spec is None else str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        index = text.partition(":")[2]
        if index and not index.isdigit():
            raise ConfigError(f"device {spec!r}: the CUDA index must be a number, e.g. cuda:0.")
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r}: this machine has no CUDA device visible to PyTorch "
                              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). "
                              "Use --device cpu or auto, or install a CUDA build of torch.")
        i = int(index) if index else torch.cuda.current_device()
        if i >= torch.cuda.device_count():
            raise ConfigError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) are visible "
                              f"(indices 0 to {torch.cuda.device_count() - 1}).")
        return torch.device("cuda", i)
    raise ConfigError(f"device {spec!r} is not one of {CHOICES}.")


def kind(device: torch.device) -> str:
    """`cpu` or `cuda`: results are comparable bit for bit only within a kind."""
    return device.type


def activate(device: torch.device) -> None:
    """Make `device` the current CUDA device, so that ART (which puts a `device_type='gpu'`
    classifier on the current CUDA device) and this package agree on it."""
    if device.type == "cuda":
        torch.cuda.set_device(device)


def device_type(device: torch.device) -> str:
    """ART's name for the device kind."""
    return "gpu" if device.type == "cuda" else "cpu"


def move_defence(defence, device: torch.device) -> None:
    """Put a built defence's trained networks on `device`, and tell an ART PyTorch preprocessor so."""
    for net in getattr(defence, "networks", ()):
        net.to(device)
    if defence is not None and hasattr(defence, "_device"):
        defence._device = device
