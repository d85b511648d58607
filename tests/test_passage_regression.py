"""Student mode's passage phase: only the passage tower moves, toward the teacher's vectors."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from twotower.model.passage_regression import passage_targets, regress_passages, regression_loss
from twotower.model.phases import PASSAGE_PHASE, plan_phases
from twotower.model.towers import ModelConfig, TwoTower
from twotower.model.training import seed_everything
from twotower.params import TrainParams

from tests.test_training import DIM, TEACHER_DIM, VOCAB, make_split
from tests.test_training import with_teacher as with_seeded_teacher

PARAMS = TrainParams(lr=0.01, batch_size=4, epochs=3, seed=0, device="cpu", bucket_size=1)


def with_teacher(split, seed=0, missing=()):
    """`split` with seeded teacher vectors; rows in `missing` have none (NaN), as for
    passages the teacher stage did not encode."""
    split = with_seeded_teacher(split, seed)
    passages = split.teacher_passages.copy()
    passages[list(missing)] = np.nan
    return replace(split, teacher_passages=passages)


def student_model(**overrides):
    seed_everything(0)
    cfg = ModelConfig(vocab_size=VOCAB + 2, embed_dim=DIM, hidden_dim=6, teacher_dim=TEACHER_DIM, output="teacher",
                      **overrides)
    return TwoTower(cfg, torch.randn(VOCAB + 2, DIM))


def mean_cosine(model, targets):
    with torch.no_grad():
        vectors = model.encode_passages(*targets.passages.batch(np.arange(len(targets)), "cpu"))
    return float((vectors * torch.as_tensor(targets.vectors)).sum(-1).mean())


def test_targets_are_the_passages_the_teacher_encoded_from_every_split():
    first = with_teacher(make_split(0), missing=[0, 3])
    second = with_teacher(make_split(1, n_queries=5), seed=1)
    targets = passage_targets([first, second, make_split(2)])  # the last has no teacher vectors
    assert len(targets) == 16 - 2 + 5
    keep = [i for i in range(16) if i not in (0, 3)]
    np.testing.assert_array_equal(targets.passages.ids[:14], first.passages.ids[keep])
    np.testing.assert_array_equal(targets.vectors[14:], second.teacher_passages.astype(np.float32))
    assert not np.isnan(targets.vectors).any()


def test_targets_leave_out_the_held_out_passages():
    split = with_teacher(make_split(0))
    held_out = split.pids[[2, 5]]
    targets = passage_targets([split], held_out_pids=held_out)
    keep = [i for i in range(len(split.pids)) if i not in (2, 5)]
    assert len(targets) == len(keep)
    np.testing.assert_array_equal(targets.vectors, split.teacher_passages[keep].astype(np.float32))


def test_only_the_passage_tower_moves_and_it_moves_toward_the_teacher(tmp_path):
    split = with_teacher(make_split(0))
    targets = passage_targets([split])
    model = student_model()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    start = mean_cosine(model, targets)
    best = regress_passages(model, targets, make_split(5), replace(PARAMS, epochs=20, passage_table="train"),
                            torch.device("cpu"))
    assert 1 <= best["epoch"] <= 20 and "nDCG@10" in best
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert moved and all(name.startswith("passage_encoder.") for name in moved)
    assert any(name.startswith("passage_encoder.embedding") for name in moved)  # its own table
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again afterwards
    # Validation picks the kept epoch, so compare the fit with a run that keeps the last one.
    last = student_model()
    figures = []
    regress_passages(last, targets, make_split(5), replace(PARAMS, epochs=20, passage_table="train"),
                     torch.device("cpu"), on_epoch=lambda epoch, f: figures.append(f["loss"]))
    assert figures[-1] < figures[0]
    assert mean_cosine(model, targets) > start or mean_cosine(last, targets) > start


def test_a_frozen_passage_table_stays_while_the_rest_of_the_passage_tower_moves():
    split = with_teacher(make_split(0))
    targets = passage_targets([split])
    model = student_model()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    start = mean_cosine(model, targets)
    regress_passages(model, targets, make_split(5), replace(PARAMS, epochs=20, passage_table="freeze"),
                     torch.device("cpu"), on_epoch=lambda epoch, f: None)
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert "passage_encoder.embedding.weight" not in moved
    assert {"passage_encoder.term_weight.weight", "passage_encoder.project.weight"} <= moved
    assert all(name.startswith("passage_encoder.") for name in moved)
    assert all(p.requires_grad for p in model.parameters())  # the table is trainable again afterwards
    assert mean_cosine(model, targets) > start


def test_the_contrast_adds_in_batch_cross_entropy_to_the_cosine_at_its_weight():
    torch.manual_seed(0)
    student = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    teacher = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    own = torch.tensor([0, 2, 3, 5])  # the student rows' places among the batch's teacher rows
    cosine = float((1 - (student * teacher[own]).sum(-1)).mean())
    assert float(regression_loss(student, teacher[own], teacher, own, 0.0)) == pytest.approx(cosine)
    cross_entropy = float(torch.nn.functional.cross_entropy(student @ teacher.T / 0.05, own))
    assert float(regression_loss(student, teacher[own], teacher, own, 2.0)) == pytest.approx(cosine + 2 * cross_entropy)


def test_the_phase_trains_with_the_contrast_params_ask_for():
    targets = passage_targets([with_teacher(make_split(0))])
    trained = {}
    for contrast in (0.0, 1.0):
        model = student_model()
        regress_passages(model, targets, make_split(5), replace(PARAMS, epochs=2, passage_contrast=contrast),
                         torch.device("cpu"))
        trained[contrast] = model.passage_encoder.project.weight.detach().clone()
    assert not torch.equal(trained[0.0], trained[1.0])


def test_a_resumed_run_ends_with_the_weights_of_an_unbroken_one(tmp_path):
    split = with_teacher(make_split(0))
    targets = passage_targets([split])
    val = make_split(5)
    unbroken = student_model()
    regress_passages(unbroken, targets, val, PARAMS, torch.device("cpu"))
    seed_everything(0)
    interrupted = student_model()
    checkpoint = tmp_path / "phase.pt"
    regress_passages(interrupted, targets, val, replace(PARAMS, epochs=2), torch.device("cpu"),
                     checkpoint=checkpoint, fingerprint="f")
    resumed = student_model()
    seen = []
    regress_passages(resumed, targets, val, PARAMS, torch.device("cpu"), checkpoint=checkpoint, fingerprint="f",
                     on_epoch=lambda epoch, f: seen.append(epoch))
    assert seen == [1, 2, 3]  # the first two replayed from the checkpoint
    for (name, a), b in zip(unbroken.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_the_phase_comes_last_and_only_for_a_model_with_a_passage_tower(tmp_path, capsys):
    split = with_teacher(make_split(0))
    params = replace(TrainParams(), epochs=2, query_epochs=0, ict_epochs=0, passage_epochs=4, lr=0.002,
                     passage_lr=0.0005)
    args = (params, split, "triplets", tmp_path, tmp_path, tmp_path, "teacher", tmp_path, None)
    phases = plan_phases(*args, passage_tower=True)
    assert [(p.name, p.params.epochs) for p in phases] == [("labelled triplets", 2), (PASSAGE_PHASE, 4)]
    assert [p.params.lr for p in phases] == [0.002, 0.0005]  # the passage phase has a learning rate of its own
    assert len(phases[1].targets) == 16
    assert [p.name for p in plan_phases(*args, passage_tower=False)] == ["labelled triplets"]
    no_vectors = (params, make_split(0), "triplets", tmp_path, tmp_path, tmp_path, "teacher", tmp_path, None)
    assert [p.name for p in plan_phases(*no_vectors, passage_tower=True)] == ["labelled triplets"]
    assert "teacher encoded no train or real passages: phase skipped" in capsys.readouterr().out
