"""Sharded corpus embedding: the shards cover every row once, a merge of any shard count is
byte-identical to one unsharded run (in the library, the stage and under torchrun), and a
missing or wrong shard is named in one line."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from stages import embed_corpus
from twotower.retrieval import shards as shards_module
from twotower.errors import TwoTowerError
from twotower.retrieval.dense import embed
from twotower.model.towers import ModelConfig, TwoTower, save_model
from twotower.retrieval.shards import WINDOW_BATCHES, check_shard, embed_shard, merge_shards, shard_path, shard_rows
from twotower.text.tokenizers import TokenArrays

ROOT = Path(__file__).resolve().parents[1]
BATCH = 2
WINDOW = WINDOW_BATCHES * BATCH  # 64 rows
N_PASSAGES = 150  # windows of 64, 64 and 22 rows


@pytest.mark.parametrize("window", [1, 3, 7])
def test_shards_cover_every_row_once_in_order_on_window_boundaries(window):
    for n in range(0, 60):
        windows = -(-n // window)
        for num_shards in range(1, 15):
            ranges = [shard_rows(n, k, num_shards, window) for k in range(num_shards)]
            assert [row for rows in ranges for row in rows] == list(range(n)), (n, num_shards)
            assert all(rows.start % window == 0 for rows in ranges if rows)
            counts = [-(-len(rows) // window) for rows in ranges]
            assert max(counts) - min(counts) <= 1
            assert sum(counts) == windows
            if num_shards > windows:
                assert sum(1 for rows in ranges if not rows) == num_shards - windows


def test_shard_rows_are_the_even_split_without_windows():
    assert [shard_rows(10, k, 3) for k in range(3)] == [range(0, 3), range(3, 6), range(6, 10)]
    assert [shard_rows(2, k, 4) for k in range(4)] == [range(0, 0), range(0, 1), range(1, 1), range(1, 2)]


@pytest.mark.parametrize("shard, num_shards, message", [
    (0, 0, "the number of shards must be at least 1, got 0"),
    (3, 3, "shard 3 does not exist: 3 shards are numbered 0 to 2"),
    (-1, 2, "shard -1 does not exist: 2 shards are numbered 0 to 1"),
])
def test_bad_shard_numbers_are_refused(shard, num_shards, message):
    with pytest.raises(TwoTowerError, match=f"^{message}$"):
        check_shard(shard, num_shards)


def tiny_model():
    torch.manual_seed(0)
    model = TwoTower(ModelConfig(vocab_size=20, embed_dim=4, hidden_dim=3), torch.randn(20, 4)).eval()
    with torch.no_grad():
        model.passage_encoder.project.weight.normal_()  # so the RNN part of the vector counts
    return model


def tiny_tokens(n=N_PASSAGES, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, size=n).astype(np.int32)
    ids = np.where(np.arange(8)[None, :] < lengths[:, None], rng.integers(2, 20, size=(n, 8)), 0).astype(np.int32)
    return TokenArrays(ids, lengths)


def embed_sharded(model, tokens, num_shards, folder):
    for k in range(num_shards):
        embed_shard(model.encode_passages, 4, tokens.ids, tokens.lengths, BATCH, "cpu",
                    shard_path(folder, k, num_shards), k, num_shards)


@pytest.mark.parametrize("num_shards", [2, 3, 5])
def test_merged_shards_are_byte_identical_to_one_run(tmp_path, monkeypatch, num_shards):
    monkeypatch.setattr(shards_module, "COPY_ROWS", 7)  # so the merge copies in many slices
    model, tokens = tiny_model(), tiny_tokens()
    embed_shard(model.encode_passages, 4, tokens.ids, tokens.lengths, BATCH, "cpu", tmp_path / "whole.npy")
    embed_sharded(model, tokens, num_shards, tmp_path / "shards")
    assert merge_shards(tmp_path / "shards", num_shards, N_PASSAGES, BATCH, tmp_path / "merged.npy") == (150, 4)
    assert (tmp_path / "merged.npy").read_bytes() == (tmp_path / "whole.npy").read_bytes()
    whole = np.load(tmp_path / "whole.npy")
    np.testing.assert_allclose(whole, embed(model.encode_passages, tokens.ids, tokens.lengths, BATCH, "cpu"),
                               rtol=1e-5, atol=1e-6)  # windows only change float rounding
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1, rtol=1e-5)


def test_a_corpus_of_one_window_embeds_exactly_as_before(tmp_path):
    model, tokens = tiny_model(), tiny_tokens(n=WINDOW)
    embed_shard(model.encode_passages, 4, tokens.ids, tokens.lengths, BATCH, "cpu", tmp_path / "whole.npy")
    np.save(tmp_path / "plain.npy", embed(model.encode_passages, tokens.ids, tokens.lengths, BATCH, "cpu"))
    assert (tmp_path / "whole.npy").read_bytes() == (tmp_path / "plain.npy").read_bytes()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    embed_sharded(tiny_model(), tiny_tokens(), 3, folder)
    return folder


def merge_error(shards, tmp_path, damage):
    """Copy the three good shards, `damage(folder)` them, and return the merge's error."""
    folder = tmp_path / "shards"
    folder.mkdir()
    for path in shards.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    damage(folder)
    with pytest.raises(TwoTowerError) as error:
        merge_shards(folder, 3, N_PASSAGES, BATCH, tmp_path / "merged.npy")
    assert not (tmp_path / "merged.npy").exists()
    assert "\n" not in str(error.value)
    return str(error.value)


def test_a_missing_shard_is_named(shards, tmp_path):
    message = merge_error(shards, tmp_path, lambda folder: shard_path(folder, 1, 3).unlink())
    assert message == f"shard 1 of 3 is missing: {shard_path(tmp_path / 'shards', 1, 3)}"


def test_shards_of_another_shard_count_are_missing_shards(shards, tmp_path):
    with pytest.raises(TwoTowerError, match="shard 0 of 2 is missing"):
        merge_shards(shards, 2, N_PASSAGES, BATCH, tmp_path / "merged.npy")


@pytest.mark.parametrize("array, expected", [
    (np.zeros((64, 4), dtype=np.float32), "shard 2 of 3 (*) has 64 rows, not 22: made from other passages"),
    (np.zeros((22, 5), dtype=np.float32), "shard 2 of 3 (*) has 5 dimensions, shard 0 has 4"),
    (np.zeros((22, 4), dtype=np.float64), "shard 2 of 3 (*) holds float64 of shape (22, 4), not float32"),
    (np.zeros(22, dtype=np.float32), "shard 2 of 3 (*) holds float32 of shape (22,), not float32"),
    (np.zeros((4, 22), dtype=np.float32).T, "shard 2 of 3 (*) holds float32 of shape (22, 4), not float32"),
    (np.zeros((22, 4), dtype=">f4"), "shard 2 of 3 (*) holds >f4 of shape (22, 4), not float32"),
    (b"not an npy file", "shard 2 of 3 (*) is not a readable .npy file (ValueError)"),
])
def test_a_wrong_shard_is_named(shards, tmp_path, array, expected):
    def damage(folder):
        path = shard_path(folder, 2, 3)
        path.write_bytes(array) if isinstance(array, bytes) else np.save(path, array)

    message = merge_error(shards, tmp_path, damage)
    head, tail = expected.split("(*)")
    assert message.startswith(head + f"({shard_path(tmp_path / 'shards', 2, 3)})" + tail), message


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """What embed_corpus reads: params.yaml, model.pt, prepared/test and tokens/test."""
    root = tmp_path_factory.mktemp("pipeline")
    (root / "params.yaml").write_text(yaml.safe_dump({"eval": {"batch_size": BATCH, "device": "cpu"}}))
    save_model(tiny_model(), [f"w{i}" for i in range(20)], 4, 8, root / "model.pt")
    split = root / "prepared" / "test"
    split.mkdir(parents=True)
    pd.DataFrame({"qid": ["q0"], "text": ["w2"]}).to_parquet(split / "queries.parquet")
    pd.DataFrame({"pid": [f"p{i}" for i in range(N_PASSAGES)], "text": "w2"}).to_parquet(split / "passages.parquet")
    pd.DataFrame({"qid": ["q0"], "pid": ["p0"], "relevance": [1]}).to_parquet(split / "qrels.parquet")
    tiny_tokens().save(root / "tokens" / "test", "passages")
    return root


def stage_args(root, out):
    return ["--params", str(root / "params.yaml"), "--model", str(root / "model.pt"), "--prepared",
            str(root / "prepared"), "--tokens", str(root / "tokens"), "--out", str(out)]


@pytest.fixture(scope="module")
def unsharded(pipeline):
    embed_corpus.main(stage_args(pipeline, pipeline / "index"))
    return pipeline / "index"


def assert_same_index(a, b):
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir()) == [
        "embeddings.npy", "pids.parquet"]
    assert (a / "embeddings.npy").read_bytes() == (b / "embeddings.npy").read_bytes()
    assert pd.read_parquet(a / "pids.parquet").equals(pd.read_parquet(b / "pids.parquet"))


def test_stage_shards_on_separate_machines_merge_to_the_unsharded_index(pipeline, unsharded, tmp_path, capsys):
    args = stage_args(pipeline, tmp_path / "index")
    for k in (2, 0, 1):
        embed_corpus.main(args + ["--shard", str(k), "--num-shards", "3", "--shard-dir", str(tmp_path / "shards")])
        assert not (tmp_path / "index").exists()
    assert "shard 1 of 3: embedded passages 64 to 127" in capsys.readouterr().out
    embed_corpus.main(args + ["--merge", "--num-shards", "3", "--shard-dir", str(tmp_path / "shards")])
    assert_same_index(unsharded, tmp_path / "index")
    assert np.load(unsharded / "embeddings.npy").shape == (N_PASSAGES, 4)


@pytest.mark.parametrize("options, message", [
    (["--shard", "3", "--num-shards", "3", "--shard-dir", "s"], "shard 3 does not exist: 3 shards are numbered 0 to 2"),
    (["--shard", "0", "--num-shards", "0", "--shard-dir", "s"], "the number of shards must be at least 1, got 0"),
    (["--merge", "--num-shards", "0", "--shard-dir", "s"], "the number of shards must be at least 1, got 0"),
    (["--shard", "1", "--num-shards", "2"], "--shard needs --num-shards and --shard-dir"),
    (["--merge", "--shard-dir", "s"], "--merge needs --num-shards and --shard-dir"),
    (["--shard", "0", "--merge", "--num-shards", "2", "--shard-dir", "s"], "--shard and --merge are separate steps"),
    (["--num-shards", "2"], "--num-shards goes with --shard K or --merge"),
])
def test_stage_refuses_bad_shard_options_in_one_line(pipeline, tmp_path, capsys, options, message):
    with pytest.raises(SystemExit) as exit_:
        embed_corpus.main(stage_args(pipeline, tmp_path / "index") + options)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "index").exists()


def test_stage_merge_names_a_missing_shard(pipeline, tmp_path, capsys):
    with pytest.raises(SystemExit):
        embed_corpus.main(stage_args(pipeline, tmp_path / "index")
                          + ["--merge", "--num-shards", "2", "--shard-dir", str(tmp_path)])
    assert capsys.readouterr().err == f"error: shard 0 of 2 is missing: {shard_path(tmp_path, 0, 2)}\n"


def test_torchrun_two_processes_write_the_unsharded_index(pipeline, unsharded, tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "stages.embed_corpus", *stage_args(pipeline, tmp_path / "index")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "shard 0 of 2: embedded passages 0 to 63" in result.stdout
    assert "shard 1 of 2: embedded passages 64 to 149" in result.stdout
    assert_same_index(unsharded, tmp_path / "index")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]  # the shard folder is gone
