"""Ranking losses over L2-normalised embeddings (so a dot product is a cosine)."""

import torch
import torch.nn.functional as F


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
    """Softmax over every passage in the batch (all positives and hard negatives).

    `same_query[i, j]` marks in-batch positives that belong to query i's own query id
    (another positive of the same query): they are masked out, not treated as negatives.
    """
    passages = torch.cat([pos, neg], dim=0)
    logits = q @ passages.T / temperature
    if same_query is not None:
        b = q.shape[0]
        mask = same_query.clone()
        mask.fill_diagonal_(False)
        logits[:, :b] = logits[:, :b].masked_fill(mask, float("-inf"))
    labels = torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(logits, labels)


def compute_loss(name: str, q, pos, neg, margin: float, temperature: float, same_query=None):
    if name == "triplet":
        return triplet_loss(q, pos, neg, margin)
    if name == "cosine":
        return cosine_loss(q, pos, neg, margin)
    if name == "infonce":
        return infonce_loss(q, pos, neg, temperature, same_query)
    raise ValueError(f"unknown loss {name!r}")
