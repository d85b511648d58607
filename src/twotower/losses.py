"""Ranking losses over L2-normalised embeddings (so a dot product is a cosine).

Training builds its loss once, `build_loss(model_params)`, and calls it with one
`LossInputs` per step. A new loss is a function `(LossInputs, ModelParams) -> tensor` in
`LOSSES` plus its name in `params.LOSSES` (and a check of any param of its own).
"""

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossInputs:
    """One step's vectors.

    `q` [b, d] holds this process's queries. `pos` and `neg` [n, d], n >= b, hold the
    passages of the whole batch: rows :b are the positive and negative of `q`'s rows, in
    order, and under torchrun the rows after them are the other processes' passages
    (`distributed.gather_rows`); in one process n = b. `same_query` [b, n] marks the rows of
    `pos` that are positives of query i's own query id (row i itself included).
    """

    q: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor
    same_query: torch.Tensor | None = None


def triplet_loss(q, pos, neg, margin: float) -> torch.Tensor:
    """Hinge on cosine distance: the positive must be closer than the negative by `margin`."""
    d_pos = 1.0 - (q * pos).sum(-1)
    d_neg = 1.0 - (q * neg).sum(-1)
    return F.relu(d_pos - d_neg + margin).mean()


def cosine_loss(q, pos, neg, margin: float) -> torch.Tensor:
    """Pointwise, like torch's CosineEmbeddingLoss: pull positives to cosine 1, push
    negatives below cosine `margin`."""
    return ((1.0 - (q * pos).sum(-1)) + F.relu((q * neg).sum(-1) - margin)).mean()


def infonce_loss(q, pos, neg, temperature: float, same_query: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over every passage in the batch (all positives and hard negatives); query i's
    target is `pos[i]`.

    `same_query[i, j]` marks in-batch positives that belong to query i's own query id
    (another positive of the same query): they are masked out, not treated as negatives.
    """
    passages = torch.cat([pos, neg], dim=0)
    logits = q @ passages.T / temperature
    if same_query is not None:
        n = pos.shape[0]
        mask = same_query.clone()
        mask.fill_diagonal_(False)
        logits[:, :n] = logits[:, :n].masked_fill(mask, float("-inf"))
    labels = torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(logits, labels)


def _triplet(inputs: LossInputs, params) -> torch.Tensor:
    b = len(inputs.q)
    return triplet_loss(inputs.q, inputs.pos[:b], inputs.neg[:b], params.margin)


def _cosine(inputs: LossInputs, params) -> torch.Tensor:
    b = len(inputs.q)
    return cosine_loss(inputs.q, inputs.pos[:b], inputs.neg[:b], params.margin)


def _infonce(inputs: LossInputs, params) -> torch.Tensor:
    return infonce_loss(inputs.q, inputs.pos, inputs.neg, params.temperature, inputs.same_query)


LOSSES = {"triplet": _triplet, "cosine": _cosine, "infonce": _infonce}


def build_loss(params):
    """The loss `params.loss` names, with its settings from `params` (a `ModelParams`), as a
    function of one `LossInputs`."""
    try:
        return partial(LOSSES[params.loss], params=params)
    except KeyError:
        raise ValueError(f"unknown loss {params.loss!r}") from None
