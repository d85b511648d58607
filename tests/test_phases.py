"""The train stage's phases: which run, what a resumed checkpoint must match."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from twotower.errors import TwoTowerError
from twotower.model.phases import ICT_PHASE, Phase, fit_phases, plan_phases, run_fingerprint
from twotower.model.training import SELECT_ON
from twotower.params import TrainParams


def inputs(tmp_path):
    tokens, triplets = tmp_path / "tokens", tmp_path / "triplets"
    tokens.mkdir()
    triplets.mkdir()
    (tokens / "vocab.txt").write_text("<pad>\n<unk>\nflea\n")
    np.save(tokens / "embeddings.npy", np.zeros((3, 4), dtype=np.float32))
    (triplets / "train.parquet").write_bytes(b"train")
    (triplets / "ict.parquet").write_bytes(b"ict")
    return tokens, triplets


def test_the_fingerprint_follows_the_params_and_the_bytes_of_what_the_phases_read(tmp_path):
    tokens, triplets = inputs(tmp_path)
    labelled = [Phase("labelled triplets", None, None, None)]
    base = run_fingerprint([{"lr": 0.1}], tokens, triplets, labelled, None)
    assert run_fingerprint([{"lr": 0.1}], tokens, triplets, labelled, None) == base
    assert run_fingerprint([{"lr": 0.2}], tokens, triplets, labelled, None) != base
    with_ict = run_fingerprint([{"lr": 0.1}], tokens, triplets, [Phase(ICT_PHASE, None, None, None), *labelled], None)
    assert with_ict != base
    (triplets / "ict.parquet").write_bytes(b"other pairs")  # read only by the ict phase
    assert run_fingerprint([{"lr": 0.1}], tokens, triplets, labelled, None) == base
    (triplets / "train.parquet").write_bytes(b"other triplets")
    assert run_fingerprint([{"lr": 0.1}], tokens, triplets, labelled, None) != base


def test_a_teacher_run_also_matches_the_teachers_manifest(tmp_path):
    tokens, triplets = inputs(tmp_path)
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "manifest.json").write_text('{"dim": 384}')
    phases = [Phase("labelled triplets", None, None, None)]
    first = run_fingerprint([], tokens, triplets, phases, teacher)
    (teacher / "manifest.json").write_text('{"dim": 768}')
    assert run_fingerprint([], tokens, triplets, phases, teacher) != first


def test_no_phase_at_all_is_one_line_naming_the_three_epoch_params(tmp_path):
    params = replace(TrainParams(), epochs=0, query_epochs=0, ict_epochs=0)
    with pytest.raises(TwoTowerError, match="train.epochs, train.query_epochs and train.ict_epochs are all 0"):
        plan_phases(params, None, None, tmp_path, tmp_path, tmp_path, None, tmp_path, None)


def test_a_phase_without_data_is_skipped_with_a_note(tmp_path, capsys):
    params = replace(TrainParams(), epochs=2, query_epochs=3, ict_epochs=1)
    phases = plan_phases(params, "train split", "triplets", tmp_path, tmp_path, tmp_path, None, tmp_path, None)
    assert [(p.name, p.split, p.params.epochs) for p in phases] == [("labelled triplets", "train split", 2)]
    out = capsys.readouterr().out
    assert "no inverse-cloze pairs" in out and "no real split" in out


def test_each_phase_starts_from_the_best_weights_so_far_and_the_best_of_all_is_kept(monkeypatch, tmp_path):
    """A phase that validates worse than an earlier one does not hand its weights on: in
    student mode the labelled phase can end below the real-query phase, and the passage
    phase should then start from the real-query phase's weights."""
    model = torch.nn.Linear(1, 1, bias=False)
    scores = {"a": 0.5, "b": 0.4, "c": 0.45}
    seen = []

    def fake_train(model, split, triplets, val_split, params, loss, device, on_epoch, checkpoint, fingerprint):
        seen.append(model.weight.item())
        with torch.no_grad():
            model.weight.fill_(len(seen))  # each phase leaves weights of its own: 1, 2, 3
        return {"epoch": 1, SELECT_ON: scores[split]}

    monkeypatch.setattr("twotower.model.phases.train", fake_train)
    with torch.no_grad():
        model.weight.fill_(0.0)
    phases = [Phase(name, name, [name], replace(TrainParams(), epochs=1)) for name in "abc"]
    best = fit_phases(model, phases, None, None, "cpu", None, tmp_path, "f")
    assert seen == [0.0, 1.0, 1.0]  # c starts from a's weights, not from b's worse ones
    assert best == {"epoch": 1, SELECT_ON: 0.5}
    assert model.weight.item() == 1.0
