"""The training loop: seed, batch triplets, step, validate each epoch, keep the best epoch.

The best epoch is the one with the highest validation nDCG@10 (`SELECT_ON`): graded, like
the test's headline measure, on a validation split shaped like the test (`twotower.data.holdout`).
"""

import copy
import math
import random
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from twotower.model import distributed
from twotower.errors import TwoTowerError
from twotower.retrieval.dense import Split, rank
from twotower.model.losses import LossInputs
from twotower.evaluation.metrics import evaluate_run
from twotower.distill.teacher import missing_rows

SELECT_ON = "nDCG@10"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def triplet_rows(triplets: pd.DataFrame, split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triplet ids -> row numbers into the split's token arrays."""
    qrow = pd.Series(np.arange(len(split.qids)), index=split.qids)
    prow = pd.Series(np.arange(len(split.pids)), index=split.pids)
    try:
        return (qrow.loc[triplets["qid"]].to_numpy(), prow.loc[triplets["pos_pid"]].to_numpy(),
                prow.loc[triplets["neg_pid"]].to_numpy())
    except KeyError as exc:
        raise TwoTowerError(f"triplets name ids absent from the tokenized split: {exc}") from None


def validate(model, split: Split, depth: int, batch_size: int, device, feedback=None) -> dict:
    """The figures that pick the best epoch, from `validation_run`. Training validates
    without `feedback`; a sweep may score the kept model with the search the test uses."""
    run = validation_run(model, split, depth, batch_size, device, feedback)
    return evaluate_run(run, split.qrels, names=["MRR@10", "nDCG@10", "Recall@100"])


def validation_run(model, split: Split, depth: int, batch_size: int, device, feedback=None) -> pd.DataFrame:
    """The validation run `depth` passages deep, over the teacher's passage vectors when the
    model has no passage tower."""
    vectors = None
    if getattr(model, "teacher_passages", False):
        if split.teacher_passages is None or np.isnan(split.teacher_passages[:, 0]).any():
            raise TwoTowerError("validation needs the teacher's vectors of every validation passage "
                                "(run `dvc repro teacher`)")
        vectors = split.teacher_passages.astype(np.float32)
    return rank(model, split, depth=depth, batch_size=batch_size, device=device, passage_vectors=vectors,
                feedback=feedback)


def epoch_batches(order: np.ndarray, lengths: np.ndarray, batch_size: int, bucket_size: int,
                  rng: np.random.Generator) -> list[np.ndarray]:
    """Cut a permutation of triplets into batches.

    With `bucket_size` > 1, each window of `bucket_size` batches' worth of triplets is sorted
    by length before cutting, and the batches are then shuffled: batches hold similar
    lengths (little padding, cheaper RNN steps) while their order stays random.
    """
    if bucket_size <= 1:
        return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    window = batch_size * bucket_size
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start: start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def batches_per_epoch(n: int, batch_size: int, bucket_size: int) -> int:
    """How many batches `epoch_batches` cuts from `n` triplets (windows cut separately)."""
    if bucket_size <= 1:
        return -(-n // batch_size)
    full_windows, rest = divmod(n, batch_size * bucket_size)
    return full_windows * bucket_size + -(-rest // batch_size)


def sparse_gradients_possible(requested: bool, world_size: int, device) -> bool:
    """Sparse gradients unless DDP must all-reduce them over nccl, which has no sparse
    all-reduce (pytorch/pytorch#22400): multi-GPU runs fall back to dense Adam, with a note."""
    if requested and world_size > 1 and torch.device(device).type == "cuda":
        if distributed.is_main():
            print("note: train.sparse_embeddings needs gloo; with nccl (torchrun on GPUs) "
                  "the word table is trained by dense Adam")
        return False
    return requested


def make_optimizers(model, lr: float, sparse_embeddings: bool) -> list[torch.optim.Optimizer]:
    """Adam for the RNNs and projections, and for the word tables and term weights (the
    passage tower's own too, when it has them) either Adam too or, with `sparse_embeddings`,
    SparseAdam over sparse row gradients.

    Dense Adam walks every row of the token table (30k WordPiece pieces x 384 by default,
    400k x 50 with GloVe words) and its two moment tables at each step, which costs more than the RNNs on CPU; SparseAdam ("lazy Adam") moves
    only the rows of words in the batch. Call before wrapping the model for DDP, which
    reads the tables' `sparse` flag when it is built.
    """
    tables = [module for module in model.modules() if isinstance(module, torch.nn.Embedding)]
    for table in tables:
        table.sparse = sparse_embeddings
    table_params = [p for table in tables for p in table.parameters() if p.requires_grad]
    others = [p for p in model.parameters() if p.requires_grad and not any(p is t for t in table_params)]
    if not sparse_embeddings:
        return [torch.optim.Adam(others + table_params, lr=lr)]
    return [torch.optim.Adam(others, lr=lr), *([torch.optim.SparseAdam(table_params, lr=lr)] if table_params else [])]


def clip_gradients(parameters, max_norm: float) -> float:
    """`torch.nn.utils.clip_grad_norm_` for a mix of dense and sparse gradients (which it
    rejects): scale all gradients so their joint L2 norm is at most `max_norm`."""
    grads = []
    for p in parameters:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()  # repeated rows are summed, so the norm is the true one
            grads.append(p.grad._values())
        else:
            grads.append(p.grad)
    if not grads:
        return 0.0
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale)
    return float(total)


@dataclass
class Updates:
    """How gradients become weights: the optimizers and their schedules, an update every
    `accum_steps` batches, gradients clipped to a joint norm of `grad_clip` (0: never)."""

    optimizers: list
    schedules: list
    trainable: list
    grad_clip: float
    accum_steps: int

    def step(self) -> None:
        if self.grad_clip > 0:
            clip_gradients(self.trainable, self.grad_clip)
        for optimizer, schedule in zip(self.optimizers, self.schedules):
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)


def _teacher_inputs(model, split: Split, q_rows, pos_rows, neg_rows, device) -> dict:
    """The teacher's vectors of a batch's rows, laid out as `LossInputs` wants (passages of
    every process), and the student's projection into the teacher's space."""
    if split.teacher_queries is None:
        return {}

    def rows(vectors, which):
        return torch.as_tensor(np.asarray(vectors[which]), dtype=torch.float32, device=device)

    return {"teacher_q": rows(split.teacher_queries, q_rows),
            "teacher_pos": distributed.gather_rows(rows(split.teacher_passages, pos_rows)),
            "teacher_neg": distributed.gather_rows(rows(split.teacher_passages, neg_rows)),
            "to_teacher": _projection(getattr(model, "module", model))}


def _projection(model):
    """Student vectors -> teacher space for the `cosine` loss: the learned projection, or
    nothing more when the towers already end in it (`output: teacher`)."""
    return (lambda vectors: vectors) if model.cfg.output == "teacher" else model.to_teacher


def _train_epoch(model, split: Split, rows3, batches, loss, updates: Updates, device, desc: str) -> float:
    """One pass over `batches` of triplet indices with `loss` (see `twotower.model.losses`);
    returns the mean loss.

    Under torchrun each process encodes every world_size-th triplet of each batch, and the
    loss sees its own queries against the passage vectors of all processes
    (`distributed.gather_rows`, with gradients), so in-batch negatives span the whole batch.
    Each process's mean loss is weighted by its share of the batch before DDP averages the
    gradients, so the step is that of one process with the whole batch, for every loss.
    """
    q_rows, pos_rows, neg_rows = rows3
    fixed = getattr(model, "module", model).teacher_passages  # passages are the teacher's vectors
    model.train()
    rank, world = distributed.rank(), distributed.world_size()
    batches = [b for b in batches if len(b) >= world]  # every process must take part in each step
    total, count = 0.0, 0
    bar = tqdm(batches, desc=desc, unit="batch", disable=not distributed.is_main())
    for step, batch in enumerate(bar):
        rows = batch[rank::world]
        passage_rows = np.concatenate([pos_rows[rows], neg_rows[rows]])
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            if fixed:
                q, _ = model(*split.queries.batch(q_rows[rows], device))
                both = torch.as_tensor(np.asarray(split.teacher_passages[passage_rows]), dtype=torch.float32,
                                       device=device)
            else:
                q, both = model(*split.queries.batch(q_rows[rows], device), *split.passages.batch(passage_rows, device))
            q, both = q.float(), both.float()
        qids = torch.as_tensor(q_rows[rows], device=device)
        inputs = LossInputs(q, distributed.gather_rows(both[: len(rows)]), distributed.gather_rows(both[len(rows):]),
                            same_query=qids[:, None] == distributed.gather_rows(qids)[None, :],
                            labelled=split.labelled, passages_fixed=fixed,
                            **_teacher_inputs(model, split, q_rows[rows], pos_rows[rows], neg_rows[rows], device))
        loss_value = loss(inputs)
        share = len(rows) * world / len(batch)  # 1 in a single process
        (loss_value * share / updates.accum_steps).backward()
        if (step + 1) % updates.accum_steps == 0 or step + 1 == len(batches):
            updates.step()
        total += float(loss_value.detach()) * len(rows)
        count += len(rows)
        bar.set_postfix(loss=f"{total / count:.4f}")
    total, count = distributed.all_sum(total, count)
    return total / count


def train(model, train_split: Split, triplets: pd.DataFrame, val_split: Split, params, loss, device,
          on_epoch=None, checkpoint=None, fingerprint: str = "") -> dict:
    """Train `model` in place with `loss` (`twotower.model.losses.build_loss`) and `params` (a
    `TrainParams`); at the end it holds the weights of the epoch with the best
    validation nDCG@10. `on_epoch(epoch, metrics)` receives each epoch's figures.
    `params.lr_schedule: cosine` decays the learning rate to 0 over all steps;
    `params.early_stopping: N > 0` stops after N epochs without a better nDCG@10.

    With a `checkpoint` path, the whole training state (weights, optimizer, schedule, random
    generators, best epoch, figures so far) is saved there after every epoch. If the file
    exists with the same `fingerprint` (params and inputs) and `params.resume` is true,
    training continues after its last epoch, replaying earlier epochs' figures to
    `on_epoch`, and ends with the same weights as a run that was never interrupted.

    Returns the best epoch's figures (with its number under `epoch`).
    """
    rows3 = triplet_rows(triplets, train_split)
    if len(rows3[0]) == 0:
        raise TwoTowerError("no training triplets (does the train split have selected passages?)")
    if train_split.teacher_queries is not None:
        missing = (missing_rows(train_split.teacher_queries, rows3[0])
                   + missing_rows(train_split.teacher_passages, np.concatenate(rows3[1:])))
        if missing:
            raise TwoTowerError(f"the teacher has no vectors for {missing} texts of the training triplets "
                                "(the teacher stage is older than the triplets: run `dvc repro teacher`)")
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizers = make_optimizers(model, params.lr,
                                 sparse_gradients_possible(params.sparse_embeddings, distributed.world_size(), device))
    replica = distributed.wrap(model, device)
    triplet_lengths = np.maximum(train_split.passages.lengths[rows3[1]], train_split.passages.lengths[rows3[2]])
    rng = np.random.default_rng(params.seed)
    steps_per_epoch = batches_per_epoch(len(rows3[0]), params.batch_size, params.bucket_size)
    total_updates = params.epochs * -(-steps_per_epoch // params.grad_accum_steps)
    schedules = [torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: (
        0.5 * (1 + math.cos(math.pi * update / total_updates)) if params.lr_schedule == "cosine" else 1.0))
        for optimizer in optimizers]
    updates = Updates(optimizers, schedules, trainable, params.grad_clip, params.grad_accum_steps)
    state = resume(checkpoint if getattr(params, "resume", True) else None, fingerprint, model, optimizers,
                   schedules, rng, on_epoch)
    for epoch in range(state["epoch"] + 1, params.epochs + 1):
        best = state["best"]
        if best is not None and params.early_stopping and epoch - 1 - best["epoch"] >= params.early_stopping:
            print(f"early stopping: no better validation {SELECT_ON} since epoch {best['epoch']}")
            break
        batches = epoch_batches(rng.permutation(len(rows3[0])), triplet_lengths, params.batch_size,
                                params.bucket_size, rng)
        mean_loss = _train_epoch(replica, train_split, rows3, batches, loss, updates, device,
                                 desc=f"epoch {epoch}/{params.epochs}")
        end_epoch(model, state, epoch, mean_loss, val_split, params, device, on_epoch,
                  save=checkpoint and (lambda: save_checkpoint(checkpoint, fingerprint, state, model, optimizers,
                                                               schedules, rng)))
    model.load_state_dict(state["best_state"])
    return state["best"]


def end_epoch(model, state: dict, epoch: int, mean_loss: float, val_split: Split, params, device, on_epoch,
              save=None) -> None:
    """What follows each epoch's steps, in every training loop: validate, report to
    `on_epoch`, keep the weights if the epoch is the best so far (by `SELECT_ON`), record it
    in `state` and, in the main process, `save()` the checkpoint."""
    figures = {"loss": mean_loss, **validate(model, val_split, params.val_depth, params.val_batch_size, device)}
    if on_epoch:
        on_epoch(epoch, figures)
    state["history"].append((epoch, figures))
    if state["best"] is None or figures[SELECT_ON] > state["best"][SELECT_ON]:
        state["best"] = {"epoch": epoch, **figures}
        state["best_state"] = copy.deepcopy(model.state_dict())
    state["epoch"] = epoch
    if save and distributed.is_main():
        save()


def save_checkpoint(path, fingerprint, state, model, optimizers, schedules, rng) -> None:
    from twotower.files import atomic_path

    with atomic_path(path) as tmp:
        torch.save({**state, "fingerprint": fingerprint, "model": model.state_dict(),
                    "optimizers": [o.state_dict() for o in optimizers],
                    "schedules": [s.state_dict() for s in schedules],
                    "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}, tmp)


def resume(checkpoint, fingerprint, model, optimizers, schedules, rng, on_epoch) -> dict:
    """The training state to start from: a fresh one, or the one saved at `checkpoint` when
    it matches (`load_checkpoint`), loaded into the model, optimizers, schedules and random
    generators, its epochs' figures replayed to `on_epoch`."""
    state = {"epoch": 0, "best": None, "best_state": None, "history": []}
    saved = load_checkpoint(checkpoint, fingerprint, len(optimizers)) if checkpoint is not None else None
    if saved is None:
        return state
    model.load_state_dict(saved["model"])
    for optimizer, schedule, optimizer_state, schedule_state in zip(
            optimizers, schedules, saved["optimizers"], saved["schedules"]):
        optimizer.load_state_dict(optimizer_state)
        schedule.load_state_dict(schedule_state)
    rng.bit_generator.state = saved["rng"]
    torch.set_rng_state(saved["torch_rng"])
    print(f"resuming from {checkpoint} after epoch {saved['epoch']}")
    for epoch, figures in saved["history"]:
        if on_epoch:
            on_epoch(epoch, figures)
    return {k: saved[k] for k in state}


def load_checkpoint(path, fingerprint, optimizers: int):
    """The saved state, or None when there is none, it belongs to other params or inputs, or
    it holds another number of optimizers (sparse vs dense word-table updates: the same
    params give dense ones under torchrun on GPUs)."""
    from pathlib import Path

    if not Path(path).is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a checkpoint we cannot read is as good as none
        print(f"ignoring unreadable checkpoint {path} ({type(exc).__name__})")
        return None
    if saved.get("fingerprint") != fingerprint:
        print(f"ignoring checkpoint {path}: it was made with other params or inputs")
        return None
    if len(saved.get("optimizers", [])) != optimizers:
        print(f"ignoring checkpoint {path}: it holds {len(saved.get('optimizers', []))} optimizer states, "
              f"this run has {optimizers}")
        return None
    return saved
