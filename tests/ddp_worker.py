"""Run by tests/test_training.py under torchrun: train the tiny split in each process and
save that process's final weights as OUT/rank{N}.pt."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_training import PARAMS, fresh_model, make_split, triplets_for  # noqa: E402
from twotower import distributed  # noqa: E402
from twotower.losses import build_loss  # noqa: E402
from twotower.params import ModelParams  # noqa: E402
from twotower.training import train  # noqa: E402


def main(out):
    device = distributed.setup(torch.device("cpu"))
    model = fresh_model()
    split, val = make_split(0), make_split(1, n_queries=8)
    train(model, split, triplets_for(split), val, PARAMS, build_loss(ModelParams(loss="triplet")), device)
    torch.save(model.state_dict(), Path(out) / f"rank{distributed.rank()}.pt")
    distributed.cleanup()


if __name__ == "__main__":
    main(sys.argv[1])
