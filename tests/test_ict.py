"""Inverse-cloze pairs: where their passages come from when the raw folder has no
collection.parquet (the Hugging Face files), and the subsample stage on such a folder."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from tiny_data import make_tiny_msmarco, msmarco_table

from twotower.data.ict import inverse_cloze_pairs, pseudo_query_passages, sample_passages

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def passages_file(path, n=100):
    texts = [f"Passage {i} has a first sentence. And passage {i} has a second one." for i in range(n)]
    frame = pd.DataFrame({"pid": [f"p{i}" for i in range(n)], "text": texts})
    frame.to_parquet(path, index=False)
    return frame


def test_sample_passages_is_seeded_and_the_same_whatever_the_batch_size(tmp_path):
    table = passages_file(tmp_path / "passages.parquet")
    sample = sample_passages(tmp_path / "passages.parquet", 10, seed=3)
    assert len(sample) == 10 and sample["pid"].is_unique
    assert sample.merge(table, on=["pid", "text"]).shape[0] == 10  # whole rows of the table
    assert sample["pid"].str[1:].astype(int).is_monotonic_increasing  # file order
    for batch_size in (1, 7, 100):
        pd.testing.assert_frame_equal(sample_passages(tmp_path / "passages.parquet", 10, 3, batch_size), sample)
    assert not sample.equals(sample_passages(tmp_path / "passages.parquet", 10, seed=4))
    everything = sample_passages(tmp_path / "passages.parquet", 1000, seed=3, batch_size=7)
    pd.testing.assert_frame_equal(everything, table)


def test_pseudo_query_passages_come_from_the_collection_else_from_train(tmp_path):
    passages_file(tmp_path / "train_passages.parquet", n=20)
    collection = pd.DataFrame({"pid": ["c1", "c2"], "text": ["One. Two.", "Three."]})
    passages, source = pseudo_query_passages(collection, tmp_path / "train_passages.parquet", 5, seed=0)
    assert source == "collection" and list(passages["pid"]) == ["c1", "c2"]
    passages, source = pseudo_query_passages(None, tmp_path / "train_passages.parquet", 5, seed=0)
    assert source == "train" and len(passages) == 5 and passages["pid"].str.startswith("p").all()
    pairs = inverse_cloze_pairs(passages, 5, seed=0)
    assert len(pairs.queries) == 5 and set(pairs.passages["pid"]) == {f"{pid}#ict" for pid in passages["pid"]}


def hugging_face_folder(folder: Path, two_sentences: bool) -> Path:
    """Tiny train/validation/test files and no collection.parquet, as Hugging Face ships
    ms_marco; with `two_sentences`, each train passage is followed by its row's next one,
    so that it makes an inverse-cloze pair (the tiny passages are single sentences)."""
    make_tiny_msmarco(folder, n_train=12, n_validation=6, n_test=6)
    (folder / "collection.parquet").unlink()
    if two_sentences:
        rows = pq.read_table(folder / "train.parquet").to_pylist()
        for row in rows:
            texts = row["passages"]["passage_text"]
            row["passages"]["passage_text"] = [f"{t} {texts[(i + 1) % len(texts)]}" for i, t in enumerate(texts)]
        pq.write_table(msmarco_table(rows, graded=True), folder / "train.parquet")
    return folder


@pytest.mark.parametrize("two_sentences", [True, False])
def test_subsample_without_collection_makes_pairs_from_train_passages(tmp_path, two_sentences):
    """Default data params but for 4000 pseudo-query passages (and a validation split of 2
    held-out queries, which the tiny train split can spare) on a folder without collection.parquet."""
    raw = hugging_face_folder(tmp_path / "raw", two_sentences)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"raw_dir": str(raw), "ict_passages": 4000, "val_queries": 2}}))
    out = tmp_path / "prepared"
    result = subprocess.run([sys.executable, "-m", "stages.subsample", "--params", str(params), "--out", str(out)],
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"note: no collection.parquet in {raw}: the inverse-cloze pairs are made from the train split's passages" \
        in lines
    if not two_sentences:
        assert "note: no inverse-cloze pairs (no sampled passage has two sentences of 4+ words): no ict split" in lines
        assert not (out / "ict").exists()
        return
    train_pids = set(pd.read_parquet(out / "train" / "passages.parquet")["pid"])
    pairs = pd.read_parquet(out / "ict" / "passages.parquet")
    assert f"ict: {len(pairs)} inverse-cloze pairs from train passages" in lines
    assert len(pairs) == len(train_pids)  # fewer than 4000: every train passage makes one
    assert {pid.removesuffix("#ict") for pid in pairs["pid"]} == train_pids
