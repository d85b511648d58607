"""The device a stage runs the model on, chosen once and passed down."""

import torch

from twotower.errors import TwoTowerError


def select_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; naming an absent device is an error."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise TwoTowerError(f"device {name!r} requested but not available here; use auto or cpu")
    return torch.device(name)
