"""The train stage's phases: which ones run, on what, and fitting them in turn.

Up to four phases, each validated every epoch, in this order (their epochs follow each
other in the curves; each phase starts from the best epoch so far, and the best epoch of
all of them is kept):
1. `train.ict_epochs` on the inverse-cloze pairs subsample made from unlabelled passages;
2. `train.query_epochs` on unlabelled real queries: the query tower learns the teacher's
   vector of each query and the teacher's scores over its candidate passages
   (`train.candidates` mines them, `twotower.distill.candidates`), teacher losses only;
3. `train.epochs` on the labelled train triplets;
4. `train.passage_epochs` at `train.passage_lr`, student mode only: the passage tower alone
   (its word table too with `train.passage_table: train`) regressed onto the teacher's
   vectors of every train and real passage it encoded (`twotower.model.passage_regression`).
A checkpoint resumes only a run whose params and input files match (`inputs_fingerprint`).
"""

import copy
import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from twotower.data.prepared import load_split
from twotower.distill.candidates import bm25_candidates, candidate_triplets, teacher_candidates
from twotower.errors import TwoTowerError
from twotower.model.passage_regression import passage_targets, regress_passages
from twotower.model.tokenized import load_tokenized
from twotower.model.training import SELECT_ON, train
from twotower.retrieval.dense import Split


ICT_PHASE = "inverse-cloze pairs"
PASSAGE_PHASE = "passage regression"


@dataclass(frozen=True)
class Phase:
    name: str
    split: Split | None  # None for the passage phase, which has `targets` instead
    triplets: pd.DataFrame | None
    params: object  # TrainParams with this phase's epochs
    targets: object = None  # passage_regression.PassageTargets

    @property
    def size(self) -> str:
        return f"{len(self.targets)} passages" if self.targets is not None else f"{len(self.triplets)} triplets"


def inputs_fingerprint(param_sections, files) -> str:
    """What a checkpoint must match to be resumed: the params and the input files' bytes."""
    digest = hashlib.sha256(json.dumps(param_sections, sort_keys=True).encode())
    for path in files:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def run_fingerprint(param_sections, tokens, triplets_dir, phases: list[Phase], teacher) -> str:
    """The fingerprint of a train run: its params, the token table, the triplets its phases
    read and the teacher's manifest when it learns from the teacher."""
    files = [Path(tokens, "vocab.txt"), Path(tokens, "embeddings.npy"), Path(triplets_dir, "train.parquet")]
    if any(phase.name == ICT_PHASE for phase in phases):
        files.append(Path(triplets_dir, "ict.parquet"))
    if teacher:
        files.append(Path(teacher, "manifest.json"))
    return inputs_fingerprint(param_sections, files)


def ict_split(prepared, tokens, teacher):
    """The inverse-cloze split to pretrain on, or None, with a note, when subsample made no
    pairs (no passage it sampled had two sentences; older runs left an empty split)."""
    ict = load_tokenized(prepared, tokens, "ict", teacher) if Path(prepared, "ict").is_dir() else None
    if ict is None or len(ict.qids) == 0:
        print(f"note: no inverse-cloze pairs in {Path(prepared, 'ict')}: skipping the train.ict_epochs pretraining")
        return None
    return ict


def real_query_triplets(split, prepared, params, bm25_params) -> pd.DataFrame:
    """Each real query's mined candidate pair (`twotower.distill.candidates`)."""
    if params.candidates == "bm25":
        tables = load_split(prepared, "real")
        ranked = bm25_candidates(tables.queries, tables.passages, bm25_params, params.candidate_depth)
    else:
        ranked = teacher_candidates(split.teacher_queries, split.teacher_passages, params.candidate_depth)
    return candidate_triplets(split.qids, split.pids, ranked, params.seed)


def plan_phases(params, train_split, triplets, prepared, tokens, triplets_dir, teacher, teacher_dir,
                bm25_params, passage_tower: bool = False, held_out_pids=()) -> list[Phase]:
    """The phases `params` asks for that have data; a phase without data is skipped with a
    note, and no phase at all is an error naming the three epoch params. The passage phase
    needs a model with a passage tower (`passage_tower`) and the teacher's vectors; without a
    passage tower (teacher mode) it has nothing to train and is left out silently. It never
    fits a passage of `held_out_pids` (validation's)."""
    phases = []
    ict = ict_split(prepared, tokens, teacher) if params.ict_epochs else None
    if ict is not None:
        phases.append(Phase(ICT_PHASE, ict, pd.read_parquet(Path(triplets_dir, "ict.parquet")),
                            replace(params, epochs=params.ict_epochs, early_stopping=0)))
    regress = bool(params.passage_epochs and passage_tower)
    real = (load_tokenized(prepared, tokens, "real", teacher_dir)  # read once, for either phase
            if (params.query_epochs or regress) and Path(prepared, "real").is_dir() else None)
    if params.query_epochs:
        if real is not None:
            phases.append(Phase("real queries", real, real_query_triplets(real, prepared, params, bm25_params),
                                replace(params, epochs=params.query_epochs, early_stopping=0)))
        else:
            print("note: train.query_epochs > 0 but there is no real split (no queries.parquet, or "
                  "data.real_queries: 0): phase skipped")
    if params.epochs:
        phases.append(Phase("labelled triplets", train_split, triplets, params))
    if regress:
        phase = passage_phase(params, [split for split in (train_split, real) if split is not None], held_out_pids)
        if phase is not None:
            phases.append(phase)
    if not phases:
        raise TwoTowerError("nothing to train: train.epochs, train.query_epochs and train.ict_epochs are all 0")
    return phases


def passage_phase(params, splits: list[Split], held_out_pids=()) -> Phase | None:
    """The passage regression phase over the passages of `splits` (train, and real when
    there is one) that the teacher encoded, less `held_out_pids`, or None, with a note,
    when there are none."""
    targets = passage_targets(splits, held_out_pids)
    if len(targets) == 0:
        print("note: train.passage_epochs > 0 but the teacher encoded no train or real passages: phase skipped")
        return None
    return Phase(PASSAGE_PHASE, None, None,
                 replace(params, epochs=params.passage_epochs, lr=params.passage_lr, early_stopping=0), targets=targets)


def fit_phases(model, phases: list[Phase], val_split, loss, device, on_epoch, checkpoints: Path,
               fingerprint: str) -> dict:
    """Each phase in turn from the best weights so far, by validation (a phase that did
    not beat an earlier one hands that one's weights on, not its own); returns the best
    epoch of all (numbered across phases) and leaves its weights in the model."""
    best, best_state, offset = None, None, 0
    for number, phase in enumerate(phases):
        print(f"phase {number + 1}: {phase.name}, {phase.params.epochs} epoch(s), {phase.size}")
        if best_state is not None:
            model.load_state_dict(best_state)

        def shifted(epoch, figures, offset=offset):
            if on_epoch:
                on_epoch(offset + epoch, figures)

        checkpoint = checkpoints / f"phase{number + 1}.pt"
        if phase.targets is not None:
            found = regress_passages(model, phase.targets, val_split, phase.params, device, on_epoch=shifted,
                                     checkpoint=checkpoint, fingerprint=fingerprint)
        else:
            found = train(model, phase.split, phase.triplets, val_split, phase.params, loss, device, on_epoch=shifted,
                          checkpoint=checkpoint, fingerprint=fingerprint)
        if best is None or found[SELECT_ON] > best[SELECT_ON]:
            best = {**found, "epoch": offset + found["epoch"]}
            best_state = copy.deepcopy(model.state_dict())
        offset += phase.params.epochs
    model.load_state_dict(best_state)
    return best
