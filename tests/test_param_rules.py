"""Rules across params sections: each broken rule is one line naming the params, the value
and what is accepted; the teacher's dimension is read from its folder's files alone."""

import json
from pathlib import Path

import pytest
import yaml

from twotower.errors import TwoTowerError
from twotower.param_rules import (check_cross_section, check_params_file, teacher_dimension,
                                  teacher_folder)

REPO_PARAMS = Path(__file__).parents[1] / "params.yaml"
TEACHER_OUTPUT = ("model.output: teacher needs train.distill_weight > 0 or train.query_epochs > 0, got 0 and 0 "
                  "(the towers learn the teacher's space from the teacher)")
REAL = ("train.query_epochs: 6 needs data.real_queries > 0, got 0 (no real queries to learn from; "
        "set train.query_epochs: 0)")
ICT = ("train.ict_epochs: 3 needs data.ict_passages > 0, got 0 (no pseudo-query pairs to pretrain on; "
       "set train.ict_epochs: 0)")


def dim_problem(dim, teacher_dim, model="minilm"):
    return (f"tokenize.dim: {dim} is not an integer in [1, {teacher_dim}] (the dimension of teacher.model "
            f"{model}, whose word vectors tokenize.vectors: teacher reduces)")


def test_repo_params_and_the_defaults_break_no_rule():
    assert check_cross_section(yaml.safe_load(REPO_PARAMS.read_text())) == []
    assert check_cross_section({}) == []


@pytest.mark.parametrize("raw,problems", [
    ({"model": {"output": "teacher"}, "train": {"distill_weight": 0, "query_epochs": 0}}, [TEACHER_OUTPUT]),
    ({"model": {"output": "teacher"}, "train": {"distill_weight": 0}}, []),
    ({"model": {"output": "student", "passage_encoder": "student"}, "train": {"distill_weight": 0,
                                                                              "query_epochs": 0}}, []),
    ({"train": {"ict_epochs": 3}}, [ICT]),
    ({"data": {"ict_passages": 0}, "train": {"ict_epochs": 0}}, []),
    ({"data": {"real_queries": 0}}, [REAL]),
    ({"data": {"real_queries": 0}, "train": {"query_epochs": 0, "distill_weight": 0.5}}, []),
    ({"tokenize": {"dim": 385}}, [dim_problem(385, 384)]),
    ({"tokenize": {"dim": 384}}, []),
    ({"tokenize": {"dim": 1000, "vectors": "glove"}}, []),
    ({"data": {"ict_passages": 0}, "model": {"output": "teacher"},
      "train": {"distill_weight": 0, "query_epochs": 0, "ict_epochs": 3},
      "tokenize": {"dim": 512}}, [TEACHER_OUTPUT, ICT, dim_problem(512, 384)]),
], ids=["teacher output, no distillation", "teacher output", "student output, no distillation", "ict, no pairs",
        "no ict", "no real queries", "no real queries, no query epochs", "dim above minilm", "dim of minilm", "glove dim", "all three"])
def test_each_broken_rule_is_one_line(raw, problems):
    assert check_cross_section(raw) == problems


def test_a_rule_skips_itself_when_a_value_it_reads_is_invalid_on_its_own():
    raw = {"model": {"output": "teachr"}, "train": {"distill_weight": 0, "ict_epochs": -1},
           "data": {"ict_passages": 0}, "tokenize": {"dim": 512, "vectors": "bert"}}
    assert check_cross_section(raw) == []
    assert check_cross_section({"tokenize": {"dim": 512}, "teacher": [1]}) == []


def test_other_bad_keys_of_a_section_do_not_hide_a_rule():
    raw = {"model": {"output": "teacher", "rnn_type": "GRUU"}, "train": {"distill_weight": 0, "query_epochs": 0,
                                                                          "lr": -1}}
    assert check_cross_section(raw) == [TEACHER_OUTPUT]


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def sentence_transformers_folder(folder: Path, pooling: dict, dense: int | None = None) -> Path:
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    write_json(folder / "config.json", {"hidden_size": 24})
    write_json(folder / "1_Pooling" / "config.json", pooling)
    if dense is not None:
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
        write_json(folder / "2_Dense" / "config.json", {"in_features": 24, "out_features": dense})
    write_json(folder / "modules.json", modules)
    return folder


@pytest.mark.parametrize("pooling,dense,dim", [
    ({"word_embedding_dimension": 24, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}, None, 24),
    ({"word_embedding_dimension": 24, "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}, None, 48),
    ({"embedding_dimension": 24, "pooling_mode": "mean", "include_prompt": True}, None, 24),
    ({"embedding_dimension": 24, "pooling_mode": ["mean", "max", "cls"]}, None, 72),
    ({"word_embedding_dimension": 24, "pooling_mode_mean_tokens": True}, 8, 8),
], ids=["mean", "mean+max", "v6 mean", "v6 three modes", "dense layer"])
def test_teacher_dimension_from_the_folder_files(tmp_path, pooling, dense, dim):
    assert teacher_dimension(sentence_transformers_folder(tmp_path, pooling, dense)) == dim


def test_teacher_dimension_of_a_plain_transformers_folder_and_of_unreadable_ones(tmp_path):
    assert teacher_dimension(tmp_path) is None
    write_json(tmp_path / "config.json", {"hidden_size": 32})
    assert teacher_dimension(tmp_path) == 32
    (tmp_path / "modules.json").write_text("not json")
    assert teacher_dimension(tmp_path) is None
    assert teacher_dimension(tmp_path / "absent") is None


def test_the_packaged_teacher_is_read_without_loading_it():
    assert teacher_dimension(teacher_folder("minilm")) == 384


def test_another_teacher_folder_sets_the_bound_and_an_unreadable_one_skips_the_rule(tmp_path):
    folder = sentence_transformers_folder(tmp_path / "small", {"word_embedding_dimension": 8,
                                                               "pooling_mode_mean_tokens": True})
    raw = {"teacher": {"model": str(folder)}, "tokenize": {"dim": 16}}
    assert check_cross_section(raw) == [dim_problem(16, 8, folder)]
    assert check_cross_section({"teacher": {"model": str(tmp_path / "absent")}, "tokenize": {"dim": 16}}) == []


def test_check_params_file_stops_at_the_first_broken_rule(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": {"ict_epochs": 3}, "tokenize": {"dim": 512}}))
    with pytest.raises(TwoTowerError) as err:
        check_params_file(path)
    assert str(err.value) == ICT
    check_params_file(REPO_PARAMS)
