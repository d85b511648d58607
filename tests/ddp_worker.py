"""Run by tests/test_training.py under torchrun: train the tiny split in each process with the
loss named on the command line and save that process's final weights and per-epoch figures
as OUT/rank{N}.pt."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_training import DDP_PARAMS, ddp_run  # noqa: E402
from twotower.model import distributed  # noqa: E402


def main(out, loss):
    device = distributed.setup(torch.device("cpu"))
    model, figures = ddp_run(loss, device)
    torch.save({"weights": model.state_dict(), "figures": figures}, Path(out) / f"rank{distributed.rank()}.pt")
    distributed.cleanup()


if __name__ == "__main__":
    main(*sys.argv[1:])
