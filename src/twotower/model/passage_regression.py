"""The passage tower regressed onto the teacher's vectors of the passages it has encoded.

In student mode the passage tower otherwise learns only from the passages that happen to be
a real query's candidates or a labelled triplet's, through losses shaped for queries. Here
every train and real passage the teacher encoded is a target of its own: the tower's vector
(projected into the teacher's space) is pulled to the teacher's by cosine, plus an in-batch
InfoNCE against the teacher's vectors of the batch's other passages (weight
`train.passage_contrast`; 0.1 in `docs/DISTILLATION-NOTES.md`'s static passage bag): the
cosine asks for the teacher's vector in every direction, the contrast for the directions
that tell a passage from the others, which is what a search ranks by. Only the passage
tower moves: the query tower and the projection into the teacher's space stay as the
earlier phases left them.
With `train.passage_table: freeze` its word table stays too, and only its RNN, projection
and term weights move: the table is 30k pieces x 384 against ~30k targets, and trained it
fits the targets' own pieces (mean cosine to the teacher 0.92 on them, 0.72 on held-out
passages) and validation falls after the phase's first epochs. Validation and test
passages are never targets.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from twotower.model import distributed
from twotower.model.training import (Updates, end_epoch, epoch_batches, make_optimizers, resume, save_checkpoint,
                                     sparse_gradients_possible)
from twotower.retrieval.dense import Split
from twotower.text.tokenizers import TokenArrays

TEMPERATURE = 0.05


@dataclass(frozen=True)
class PassageTargets:
    """Passages' token arrays and the teacher's unit vectors of them, row-aligned."""

    passages: TokenArrays
    vectors: np.ndarray  # float32 [n, teacher dim]

    def __len__(self):
        return len(self.vectors)


def passage_targets(splits: list[Split], held_out_pids=()) -> PassageTargets:
    """The passages of `splits` that have a teacher vector (the teacher encodes only those
    that training uses), gathered into one table, less `held_out_pids` (the validation
    pool's: a held-out query's passage stays in the train split when a training query
    judged it too, `data.holdout`)."""
    ids, lengths, vectors = [], [], []
    width = max((split.passages.ids.shape[1] for split in splits), default=1)
    held_out = np.asarray(list(held_out_pids), dtype=str)
    for split in splits:
        if split.teacher_passages is None:
            continue
        rows = np.flatnonzero(~np.isnan(split.teacher_passages[:, 0])
                              & ~np.isin(np.asarray(split.pids, dtype=str), held_out))
        block = np.asarray(split.passages.ids[rows])
        ids.append(np.pad(block, ((0, 0), (0, width - block.shape[1]))))
        lengths.append(split.passages.lengths[rows])
        vectors.append(split.teacher_passages[rows].astype(np.float32))
    if not vectors:
        return PassageTargets(TokenArrays(np.zeros((0, 1), np.int32), np.zeros(0, np.int64)), np.zeros((0, 0), np.float32))
    return PassageTargets(TokenArrays(np.concatenate(ids), np.concatenate(lengths)), np.concatenate(vectors))


def regression_loss(student: torch.Tensor, teacher_rows: torch.Tensor, teacher_batch: torch.Tensor,
                    rows_in_batch: torch.Tensor, contrast: float) -> torch.Tensor:
    """Mean cosine distance of `student` [r, d] to its teacher rows, plus `contrast` x
    cross-entropy of student @ teacher_batch.T with each row's own place in the batch as target."""
    cosine = (1.0 - (student * teacher_rows).sum(-1)).mean()
    if not contrast:
        return cosine
    logits = student @ teacher_batch.T / TEMPERATURE
    return cosine + contrast * F.cross_entropy(logits, rows_in_batch)


def regress_passages(model, targets: PassageTargets, val_split: Split, params, device, on_epoch=None,
                     checkpoint=None, fingerprint: str = "") -> dict:
    """`params.epochs` epochs of regression (`params`: a `TrainParams`), validated each epoch
    as `training.train` does; ends with the best epoch's weights and returns its figures.
    Checkpointed and resumed like `training.train`."""
    freeze_table = params.passage_table == "freeze"
    frozen = [p for name, p in model.named_parameters()
              if p.requires_grad and (not name.startswith("passage_encoder.")
                                      or freeze_table and name.startswith("passage_encoder.embedding."))]
    for p in frozen:
        p.requires_grad_(False)  # before DDP is built, so it syncs the passage tower alone
    try:
        return _fit(model, targets, val_split, params, device, on_epoch, checkpoint, fingerprint)
    finally:
        for p in frozen:
            p.requires_grad_(True)


def _fit(model, targets, val_split, params, device, on_epoch, checkpoint, fingerprint) -> dict:
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizers = make_optimizers(model, params.lr,
                                 sparse_gradients_possible(params.sparse_embeddings, distributed.world_size(), device))
    schedules = [torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: 1.0) for optimizer in optimizers]
    updates = Updates(optimizers, schedules, trainable, params.grad_clip, 1)
    replica = distributed.wrap(model.passage_encoder, device)
    rng = np.random.default_rng(params.seed)
    state = resume(checkpoint if params.resume else None, fingerprint, model, optimizers, schedules, rng, on_epoch)
    vectors = torch.as_tensor(targets.vectors, device=device)
    for epoch in range(state["epoch"] + 1, params.epochs + 1):
        batches = epoch_batches(rng.permutation(len(targets)), targets.passages.lengths, params.batch_size,
                                params.bucket_size, rng)
        mean_loss = _epoch(replica, model.to_teacher, targets, vectors, batches, updates, device,
                           params.passage_contrast, desc=f"passages {epoch}/{params.epochs}")
        end_epoch(model, state, epoch, mean_loss, val_split, params, device, on_epoch,
                  save=checkpoint and (lambda: save_checkpoint(checkpoint, fingerprint, state, model, optimizers,
                                                               schedules, rng)))
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    return state["best"]


def _epoch(tower, project, targets: PassageTargets, vectors, batches, updates: Updates, device, contrast: float,
           desc: str) -> float:
    """One pass; under torchrun each process encodes every world_size-th row of a batch and
    weighs its mean loss by its share, so DDP's averaged step is the whole batch's."""
    tower.train()
    rank, world = distributed.rank(), distributed.world_size()
    batches = [b for b in batches if len(b) >= world]
    total, count = 0.0, 0
    bar = tqdm(batches, desc=desc, unit="batch", disable=not distributed.is_main())
    for batch in bar:
        own = np.arange(len(batch))[rank::world]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            student = project(tower(*targets.passages.batch(batch[own], device)))
        student = F.normalize(student.float(), dim=-1)
        batch_vectors = vectors[torch.as_tensor(batch, device=device)]
        loss = regression_loss(student, batch_vectors[own], batch_vectors, torch.as_tensor(own, device=device),
                               contrast)
        (loss * len(own) * world / len(batch)).backward()
        updates.step()
        total += float(loss.detach()) * len(own)
        count += len(own)
        bar.set_postfix(loss=f"{total / count:.4f}")
    total, count = distributed.all_sum(total, count)
    return total / count
