"""`twotower validate`: every params problem and every raw-data problem on its own line, in
seconds, before a long run; and `param_rules.validate_all`, which collects the params ones."""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from tiny_data import make_tiny_msmarco, msmarco_table

from twotower.cli import main
from twotower.data.prepare import check_split
from twotower.param_rules import validate_all
from twotower.params import SECTIONS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return make_tiny_msmarco(tmp_path_factory.mktemp("raw"), n_train=12, n_validation=6, n_test=6)


def validate(capsys, *args) -> tuple[int, list[str]]:
    try:
        main(["validate", *args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    assert captured.err == ""
    return code, captured.out.splitlines()


def write_params(tmp_path, raw_dir, **sections):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"data": {"raw_dir": str(raw_dir)}, **sections}))
    return path


def test_repo_params_are_valid():
    assert validate_all(yaml.safe_load((ROOT / "params.yaml").read_text())) == []
    assert validate_all({}) == []


def test_validate_all_reports_every_problem_not_just_the_first():
    problems = validate_all({
        "modle": {"hidden_dim": 3},
        "model": {"rnn_type": "GRUU", "hiden_dim": 4, "loss": "hinge"},
        "train": {"lr": -0.1, "batch_size": 0},
        "data": {"subsample": 1.5},
        "tokenize": {"max_len_query": 0, "max_len_passage": 0},
        "eval": [1, 2],
    })
    assert problems == [
        "modle: unknown section; accepted: " + ", ".join(sorted(SECTIONS)) + " (did you mean model?)",
        "data.subsample: 1.5 is not a number in (0, 1]",
        "tokenize.max_len_passage: 0 is not an integer >= 1",
        "tokenize.max_len_query: 0 is not an integer >= 1",
        problems[4],
        "model.loss: 'hinge' is not one of triplet, cosine, infonce",
        "model.rnn_type: 'GRUU' is not one of GRU, LSTM, RNN",
        "train.batch_size: 0 is not an integer >= 1",
        "train.lr: -0.1 is not a number in (0, inf)",
        "eval: expected a mapping, got [1, 2]",
    ]
    assert problems[4].startswith("model.hiden_dim: unknown param; accepted: ")
    assert problems[4].endswith("(did you mean hidden_dim?)")


def test_ok_on_good_params_and_data(tmp_path, capsys, raw):
    code, lines = validate(capsys, "--params", str(write_params(tmp_path, raw)))
    assert code == 0
    assert lines == [f"ok: {tmp_path / 'params.yaml'} is valid and {raw} has train, validation, test "
                     "in the expected schema"]


def test_one_line_per_problem_prefixed_with_the_params_file(tmp_path, capsys, raw):
    params = write_params(tmp_path, raw, model={"rnn_type": "GRUU"}, train={"lr": -1, "batch_size": 0})
    code, lines = validate(capsys, "--params", str(params))
    assert code == 1
    assert lines == [f"{params}: model.rnn_type: 'GRUU' is not one of GRU, LSTM, RNN",
                     f"{params}: train.batch_size: 0 is not an integer >= 1",
                     f"{params}: train.lr: -1 is not a number in (0, inf)"]


def test_nan_and_inf_are_problems(tmp_path, capsys, raw):
    params = tmp_path / "params.yaml"
    params.write_text(f"data:\n  raw_dir: {raw}\ntrain:\n  lr: .inf\nhybrid:\n  weight: .nan\n")
    code, lines = validate(capsys, "--params", str(params))
    assert code == 1
    assert lines == [f"{params}: train.lr: inf is not a finite number",
                     f"{params}: hybrid.weight: nan is not a finite number"]


def test_rules_across_sections_are_one_line_each(tmp_path, capsys, raw):
    params = write_params(tmp_path, raw, data={"raw_dir": str(raw), "ict_passages": 0},
                          model={"output": "teacher"},
                          train={"distill_weight": 0, "query_epochs": 0, "ict_epochs": 3, "lr": -1},
                          tokenize={"dim": 1000})
    code, lines = validate(capsys, "--params", str(params))
    assert code == 1
    assert lines == [f"{params}: train.lr: -1 is not a number in (0, inf)",
                     f"{params}: model.output: teacher needs train.distill_weight > 0 or train.query_epochs > 0, "
                     "got 0 and 0 (the towers learn the teacher's space from the teacher)",
                     f"{params}: train.ict_epochs: 3 needs data.ict_passages > 0, got 0 (no pseudo-query pairs "
                     "to pretrain on; set train.ict_epochs: 0)",
                     f"{params}: tokenize.dim: 1000 is not an integer in [1, 384] (the dimension of teacher.model "
                     "minilm, whose word vectors tokenize.vectors: teacher reduces)"]


def test_data_flag_overrides_raw_dir_and_missing_folder_is_one_line(tmp_path, capsys, raw):
    params = write_params(tmp_path, tmp_path / "absent")
    code, lines = validate(capsys, "--params", str(params))
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"raw data folder not found: {tmp_path / 'absent'}")
    assert validate(capsys, "--params", str(params), "--data", str(raw))[0] == 0


def test_missing_params_file_and_bad_data_are_all_reported(tmp_path, capsys, raw):
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pq.read_table(raw / "train.parquet").drop_columns(["query"]), data / "train.parquet")
    pq.write_table(pq.read_table(raw / "test.parquet"), data / "test-00000-of-00001.parquet")
    code, lines = validate(capsys, "--params", str(tmp_path / "nope.yaml"), "--data", str(data))
    assert code == 1
    assert lines[0] == f"params file not found: {tmp_path / 'nope.yaml'}"
    assert lines[1].startswith(f"{data / 'train.parquet'}: missing column(s) query;")
    assert lines[2].startswith(f"no 'validation' split in {data}")
    assert len(lines) == 3  # the test shard is fine


def test_sample_warnings_do_not_fail(tmp_path, capsys, raw):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("validation", "test"):
        (data / f"{split}.parquet").symlink_to(raw / f"{split}.parquet")
    rows = pq.read_table(raw / "train.parquet").to_pylist()
    rows[0]["query"] = " "
    rows[1]["passages"]["is_selected"].append(1)
    pq.write_table(msmarco_table(rows, graded=True), data / "train.parquet")
    code, lines = validate(capsys, "--params", str(write_params(tmp_path, data)))
    assert code == 0
    where = f"{data / 'train.parquet'} (all {len(rows)} rows)"
    assert lines[:2] == [f"warning: {where}: 1 rows whose passage lists differ in length (subsample drops them)",
                         f"warning: {where}: 1 rows with an empty or missing query (subsample drops them)"]
    assert lines[2].startswith("ok: ") and lines[2].endswith("(2 warning(s))")


def test_sample_proves_conflicting_query_ids(tmp_path, raw):
    rows = pq.read_table(raw / "train.parquet").to_pylist()
    rows[5]["query_id"] = rows[4]["query_id"]
    pq.write_table(msmarco_table(rows, graded=True), tmp_path / "train.parquet")
    problems, warnings = check_split(tmp_path, "train", sample_rows=8)
    assert warnings == []
    assert problems == [f"{tmp_path / 'train.parquet'} (first 8 of {len(rows)} rows): query id "
                        f"{rows[4]['query_id']} appears with different texts ({sorted([rows[4]['query'], rows[5]['query']])[0]!r}"
                        f" vs {sorted([rows[4]['query'], rows[5]['query']])[1]!r}); 1 such id(s) in all"]


def test_a_sample_without_positives_is_only_a_warning_unless_it_is_everything(tmp_path, raw):
    rows = pq.read_table(raw / "train.parquet").to_pylist()
    for row in rows[:8]:
        row["passages"]["is_selected"] = [0] * len(row["passages"]["is_selected"])
    pq.write_table(msmarco_table(rows, graded=True), tmp_path / "train.parquet")
    problems, warnings = check_split(tmp_path, "train", sample_rows=8)
    assert problems == [] and warnings[-1].endswith("no query has a selected passage (is_selected all 0)")
    problems, _ = check_split(tmp_path, "train", sample_rows=1000)
    assert problems == []  # rows 8 onwards have positives


def test_validate_does_not_import_torch(tmp_path, raw):
    """The point is speed: torch alone takes seconds to import."""
    params = write_params(tmp_path, raw)
    code = ("import sys; from twotower.cli import main\n"
            f"main(['validate', '--params', {str(params)!r}])\n"
            "print('torch' in sys.modules)")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False"


def test_a_val_trec_set_the_train_rows_lack_is_one_line_naming_the_sets_they_have(tmp_path, capsys):
    """subsample would stop on it after reading every split; validate says it up front."""
    raw = make_tiny_msmarco(tmp_path / "raw", n_train=12, n_validation=6, n_test=6)
    train = pq.read_table(raw / "train.parquet").to_pandas()
    train["trec_set"] = ["dl20", "dl21"] * 6
    train.to_parquet(raw / "train.parquet")
    code, lines = validate(capsys, "--params", str(write_params(tmp_path, raw, data={"raw_dir": str(raw),
                                                                                     "val_trec_set": "dl19"})))
    assert code == 1
    assert lines == [f"{tmp_path / 'params.yaml'}: data.val_trec_set: 'dl19' is not a TREC-DL set of the train "
                     "split; it has dl20, dl21 (or use 'all')"]
    code, lines = validate(capsys, "--params", str(write_params(tmp_path, raw, data={"raw_dir": str(raw),
                                                                                     "val_trec_set": "dl21"})))
    assert code == 0


def test_train_rows_without_trec_sets_pass_without_the_stages_note(tmp_path, capsys):
    """subsample notes that such rows hold out from every query; validate only checks, so it
    says ok and nothing else."""
    raw = make_tiny_msmarco(tmp_path / "raw", n_train=12, n_validation=6, n_test=6)
    code, lines = validate(capsys, "--params", str(write_params(tmp_path, raw, data={"raw_dir": str(raw),
                                                                                     "val_trec_set": "dl20"})))
    assert code == 0
    assert len(lines) == 1 and lines[0].startswith("ok: ")
