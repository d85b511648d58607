import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from twotower.errors import TwoTowerError
from twotower.model.towers import ModelConfig
from twotower.params import (SECTIONS, DataParams, ModelParams, load_section, read_params_file,
                             section_from_dict)

REPO_PARAMS = Path(__file__).parents[1] / "params.yaml"


def committed_params(path: Path = REPO_PARAMS) -> dict:
    """params.yaml as committed at HEAD, not the working copy: `dvc exp run -S
    model.rnn_type=GRU` leaves GRU in the working copy, and a user's experiment must not
    fail the tests. Outside a git checkout (an unpacked sdist) the file itself."""
    try:
        shown = subprocess.run(["git", "show", f"HEAD:./{path.name}"], cwd=path.parent, capture_output=True,
                               text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return read_params_file(path)
    return yaml.safe_load(shown.stdout)


@pytest.mark.parametrize("name", list(SECTIONS))
def test_defaults_and_repo_params_validate(name):
    assert section_from_dict(name, None) == SECTIONS[name]()
    assert isinstance(load_section(name, REPO_PARAMS), SECTIONS[name])


@pytest.mark.parametrize("name", list(SECTIONS))
def test_dataclass_defaults_are_the_repo_params(name):
    """One source of defaults: a key missing from a params file falls back to the value the
    pipeline runs with, and every param is spelled out in params.yaml for `dvc exp run -S`."""
    committed = committed_params()
    assert section_from_dict(name, committed[name]) == SECTIONS[name]()
    assert sorted(committed[name]) == sorted(f.name for f in fields(SECTIONS[name]))


def test_the_defaults_are_compared_with_the_committed_params_not_an_experiment(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    params = tmp_path / "params.yaml"
    params.write_text("model:\n  rnn_type: RNN\n")
    subprocess.run([*git, "add", "params.yaml"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "defaults"], check=True)
    params.write_text("model:\n  rnn_type: GRU\n")  # what `dvc exp run -S model.rnn_type=GRU` leaves
    assert committed_params(params) == {"model": {"rnn_type": "RNN"}}
    uncommitted = tmp_path / "sdist" / "params.yaml"  # not in HEAD: the file itself is read
    uncommitted.parent.mkdir()
    uncommitted.write_text("model:\n  rnn_type: LSTM\n")
    assert committed_params(uncommitted) == {"model": {"rnn_type": "LSTM"}}


def test_model_config_defaults_are_the_model_params():
    """The architecture defaults have one source; only the teacher's part differs: a bare
    config has no teacher, so it is a student with its own passage tower, while the
    pipeline's params put queries in the teacher's space over the teacher's passages."""
    config = ModelConfig(vocab_size=10, embed_dim=4)
    defaults = ModelParams()
    teacher_fields = ("output", "passage_encoder", "teacher_dim", "teacher")  # teacher_dim: the teacher's output
    for f in fields(ModelConfig):
        if f.name not in ("vocab_size", "embed_dim", *teacher_fields):
            assert getattr(config, f.name) == getattr(defaults, f.name), f.name
    assert (config.output, config.passage_encoder, config.teacher_dim, config.teacher) == ("student", "student", 0, "")
    assert (defaults.output, defaults.passage_encoder) == ("teacher", "teacher")
    from_params = ModelConfig.from_params(defaults, vocab_size=10, embed_dim=4, teacher_dim=384, teacher="minilm:384")
    assert (from_params.output, from_params.passage_encoder) == ("teacher", "teacher")


def test_values_are_kept():
    model = section_from_dict("model", {"rnn_type": "LSTM", "hidden_dim": 64, "loss": "infonce"})
    assert (model.rnn_type, model.hidden_dim, model.loss) == ("LSTM", 64, "infonce")
    assert model.margin == ModelParams().margin
    assert section_from_dict("data", {"subsample": 1}).subsample == 1  # an int is a number


def test_rnn_type_message_names_param_value_and_choices():
    with pytest.raises(TwoTowerError) as err:
        section_from_dict("model", {"rnn_type": "GRUU"})
    message = str(err.value)
    assert "model.rnn_type" in message and "'GRUU'" in message and "GRU, LSTM, RNN" in message
    assert message == "model.rnn_type: 'GRUU' is not one of GRU, LSTM, RNN"


BAD_VALUES = [
    ("train", "lr", -0.001),
    ("train", "lr", 0),
    ("data", "subsample", 0),
    ("data", "subsample", 1.5),
    ("train", "batch_size", 0),
    ("tokenize", "max_len_query", 0),
    ("tokenize", "max_len_passage", 2.5),
    ("model", "loss", "hinge"),
    ("model", "pooling", "sum"),
    ("model", "dropout", 1.0),
    ("model", "hidden_dim", "128"),
    ("model", "temperature", 0),
    ("triplets", "negatives", "semi"),
    ("eval", "depth", 10),
    ("eval", "index", "annoy"),
    ("eval", "ivf_nprobe", 0),
    ("train", "device", "tpu"),
    ("train", "val_depth", 10),
    ("train", "val_batch_size", 0),
    ("train", "passage_lr", 0),
    ("train", "passage_lr", -0.001),
    ("train", "passage_table", "frozen"),
    ("train", "passage_contrast", -0.1),
    ("data", "val_trec_set", ""),
    ("data", "val_trec_set", 20),
]


@pytest.mark.parametrize("section,name,value", BAD_VALUES)
def test_bad_value_fails_naming_param_and_value(section, name, value):
    with pytest.raises(TwoTowerError, match=rf"^{section}\.{name}: {value!r} is not "):
        section_from_dict(section, {name: value})


@pytest.mark.parametrize("section,name", [("model", "bidirectional"), ("model", "shared_encoder"),
                                          ("model", "freeze_embeddings"), ("data", "subsample_test")])
def test_bool_given_as_string(section, name):
    with pytest.raises(TwoTowerError, match=rf"^{section}\.{name}: 'true' is not true or false$"):
        section_from_dict(section, {name: "true"})


@pytest.mark.parametrize("section,name", [("train", "batch_size"), ("tokenize", "max_vocab"), ("data", "seed")])
def test_bool_is_not_an_integer(section, name):
    with pytest.raises(TwoTowerError, match=rf"^{section}\.{name}: True is not an integer"):
        section_from_dict(section, {name: True})


def test_unknown_key_in_a_section():
    with pytest.raises(TwoTowerError, match=r"^model\.hiden_dim: unknown param; accepted: .*hidden_dim"):
        section_from_dict("model", {"hiden_dim": 64})


def test_section_must_be_a_mapping():
    with pytest.raises(TwoTowerError, match="^train: expected a mapping"):
        section_from_dict("train", [1, 2])


def test_params_are_frozen():
    params = DataParams()
    with pytest.raises(AttributeError):
        params.subsample = 0.5


def test_params_file_errors(tmp_path):
    with pytest.raises(TwoTowerError, match="params file not found"):
        read_params_file(tmp_path / "params.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(TwoTowerError, match="not valid YAML"):
        read_params_file(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(TwoTowerError, match="expected a mapping of sections"):
        read_params_file(listed)


def test_load_section_reads_only_its_section(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("model:\n  rnn_type: RNN\ntrain:\n  lr: 0.01\n")
    assert load_section("model", path).rnn_type == "RNN"
    assert load_section("train", path).lr == 0.01
    assert load_section("eval", path) == SECTIONS["eval"]()


@pytest.mark.parametrize("section,name,value", [("train", "lr", float("inf")), ("hybrid", "weight", float("nan")),
                                                ("bm25", "k1", float("-inf")), ("train", "grad_clip", float("inf")),
                                                ("model", "temperature", float("nan")),
                                                ("train", "passage_lr", float("nan")),
                                                ("train", "passage_contrast", float("inf"))])
def test_non_finite_numbers_are_rejected(section, name, value):
    """YAML's .inf and .nan are floats, and NaN fails no range comparison."""
    with pytest.raises(TwoTowerError) as err:
        section_from_dict(section, {name: value})
    assert str(err.value) == f"{section}.{name}: {value!r} is not a finite number"


def test_word_vectors_need_the_word_tokenizer_and_an_unknown_choice_is_named_as_such():
    """GloVe has no vectors for word pieces: under the default WordPiece tokenizer only the
    teacher's vectors fit; a value that is no choice at all gets the list of choices."""
    with pytest.raises(TwoTowerError) as err:
        section_from_dict("tokenize", {"vectors": "glove"})
    assert str(err.value) == ("tokenize.vectors: 'glove' is not teacher when tokenize.tokenizer is wordpiece "
                              "(GloVe has no vectors for word pieces)")
    assert section_from_dict("tokenize", {"tokenizer": "word", "vectors": "glove"}).vectors == "glove"
    with pytest.raises(TwoTowerError) as err:
        section_from_dict("tokenize", {"vectors": "word2vec"})
    assert str(err.value) == "tokenize.vectors: 'word2vec' is not one of glove, teacher"
