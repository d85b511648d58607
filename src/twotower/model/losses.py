"""Ranking losses over L2-normalised embeddings (so a dot product is a cosine).

Training builds its loss once, `build_loss(model_params)`, and calls it with one
`LossInputs` per step. A new loss is a function `(LossInputs, ModelParams) -> tensor` in
`LOSSES` plus its name in `param_checks.LOSSES` (and a check of any param of its own).
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

    For distillation, `teacher_q`, `teacher_pos` and `teacher_neg` are the teacher's unit
    vectors of the same rows (same layout), `to_teacher` the student's learned projection
    into the teacher's space, and `labelled` false for pseudo-query pairs, whose 0/1 labels
    are made up and so give way to the teacher's soft scores.
    """

    q: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor
    same_query: torch.Tensor | None = None
    teacher_q: torch.Tensor | None = None
    teacher_pos: torch.Tensor | None = None
    teacher_neg: torch.Tensor | None = None
    to_teacher: object = None
    labelled: bool = True
    passages_fixed: bool = False  # pos/neg are the teacher's own vectors: no passage tower to teach


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


def kl_distill_loss(q, passages, teacher_q, teacher_passages, temperature: float) -> torch.Tensor:
    """KL(teacher || student) between the softmaxes over the batch's passages of each query's
    scores: the student learns how the teacher spreads its belief over every in-batch
    passage, not only which one is labelled."""
    student = F.log_softmax(q @ passages.T / temperature, dim=-1)
    teacher = F.log_softmax(teacher_q @ teacher_passages.T / temperature, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean")


def margin_mse_loss(q, pos, neg, teacher_q, teacher_pos, teacher_neg) -> torch.Tensor:
    """Margin-MSE (Hofstätter et al. 2020): the student's score margin between positive and
    negative must equal the teacher's; only differences are matched, so the two models'
    score scales need not agree."""
    student = (q * pos).sum(-1) - (q * neg).sum(-1)
    teacher = (teacher_q * teacher_pos).sum(-1) - (teacher_q * teacher_neg).sum(-1)
    return F.mse_loss(student, teacher)


def vector_cosine_loss(student, teacher) -> torch.Tensor:
    """Mean cosine distance between projected student vectors and the teacher's vectors."""
    return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()


def _kl(inputs: LossInputs, params) -> torch.Tensor:
    return kl_distill_loss(inputs.q, torch.cat([inputs.pos, inputs.neg]), inputs.teacher_q,
                           torch.cat([inputs.teacher_pos, inputs.teacher_neg]), params.temperature)


def _margin_mse(inputs: LossInputs, params) -> torch.Tensor:
    b = len(inputs.q)
    return margin_mse_loss(inputs.q, inputs.pos[:b], inputs.neg[:b], inputs.teacher_q,
                           inputs.teacher_pos[:b], inputs.teacher_neg[:b])


def _vector_cosine(inputs: LossInputs, params) -> torch.Tensor:
    b = len(inputs.q)
    if inputs.passages_fixed:
        return params.vector_weight * vector_cosine_loss(inputs.to_teacher(inputs.q), inputs.teacher_q)
    student = torch.cat([inputs.q, inputs.pos[:b], inputs.neg[:b]])
    teacher = torch.cat([inputs.teacher_q, inputs.teacher_pos[:b], inputs.teacher_neg[:b]])
    return params.vector_weight * vector_cosine_loss(inputs.to_teacher(student), teacher)


LOSSES = {"triplet": _triplet, "cosine": _cosine, "infonce": _infonce}
DISTILL_LOSSES = {"kl": _kl, "margin_mse": _margin_mse, "cosine": _vector_cosine}


def build_loss(params, distill_weight: float = 0.0):
    """The training loss as a function of one `LossInputs`, from `params` (a `ModelParams`).

    Labelled batches get `params.loss` on their labels, or with `distill_weight` w > 0,
    (1 - w) x that + w x the teacher losses `params.distill_loss` names (summed; `cosine`
    scaled by `params.vector_weight`). Unlabelled batches (pseudo-queries, real queries'
    candidates) get the teacher losses alone, whatever w.
    """
    if params.loss not in LOSSES:
        raise ValueError(f"unknown loss {params.loss!r}")
    labels = partial(LOSSES[params.loss], params=params)
    teacher_losses = [partial(DISTILL_LOSSES[name], params=params) for name in params.distill_loss.split("+")]

    def loss(inputs: LossInputs) -> torch.Tensor:
        if not inputs.labelled:
            return sum(part(inputs) for part in teacher_losses)
        if distill_weight == 0:
            return labels(inputs)
        return (1.0 - distill_weight) * labels(inputs) + distill_weight * sum(part(inputs) for part in teacher_losses)

    return loss


def needs_projection(params, teacher_losses: bool) -> bool:
    """Whether the model needs the student -> teacher projection: for the `cosine` teacher
    loss (when teacher losses are used at all), or as its output layer (`output: teacher`)."""
    return params.output == "teacher" or (teacher_losses and "cosine" in params.distill_loss.split("+"))
