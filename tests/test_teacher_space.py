"""A model without a passage tower: passages are the teacher's vectors, in `twotower index`,
`Searcher` and the index's manifest, and only a query tower of the same teacher space may
search such an index."""

import numpy as np
import pandas as pd
import pytest
import torch

from tests.tiny_index import PASSAGES, WORDS, make_model, write_collection
from twotower.serve.collection import open_source
from twotower.errors import TwoTowerError
from twotower.serve.indexer import build_index_folder
from twotower.model.towers import ModelConfig, TwoTower, save_model
from twotower.params import Bm25Params, EvalParams, FeedbackParams, HybridParams
from twotower.serve.search import Searcher
from twotower.distill.teacher import encode_texts, load_teacher, teacher_dir
from twotower.text.tokenizers import PAD, UNK

SPACE = "minilm:384"
TEACHER = {"model": "minilm", "max_seq_length": 64}


def make_query_tower(path, space: str = SPACE, seed: int = 0) -> None:
    """An untrained query tower over WORDS projected into a 384-d teacher space."""
    torch.manual_seed(seed)
    vocab = [PAD, UNK, *WORDS]
    vectors = torch.zeros(len(vocab), len(WORDS))
    vectors[2:] = torch.eye(len(WORDS))
    config = ModelConfig(vocab_size=len(vocab), embed_dim=len(WORDS), hidden_dim=4, output="teacher",
                         passage_encoder="teacher", teacher_dim=384, teacher=space)
    save_model(TwoTower(config, vectors).eval(), vocab, max_len_query=8, max_len_passage=16, path=path,
               teacher=TEACHER)


@pytest.fixture(scope="module")
def teacher():
    return load_teacher(teacher_dir("minilm"), "cpu", TEACHER["max_seq_length"])


def build(root, model_path):
    write_collection(PASSAGES, root / "c.parquet", "parquet")
    return build_index_folder([open_source(root / "c.parquet")], root / "index", model_path, device="cpu",
                              kind="exact", eval_params=EvalParams(), bm25_params=Bm25Params(),
                              hybrid_params=HybridParams(), show_progress=False, log=lambda line: None)


def test_a_model_without_a_passage_tower_has_none():
    make = ModelConfig(vocab_size=4, embed_dim=2, output="teacher", passage_encoder="teacher", teacher_dim=3)
    model = TwoTower(make)
    assert model.teacher_passages and model.passage_encoder is None
    with pytest.raises(TwoTowerError, match="no passage tower"):
        model.encode_passages(torch.ones(1, 2, dtype=torch.long), torch.ones(1, dtype=torch.long))
    with pytest.raises(ValueError):
        TwoTower(ModelConfig(vocab_size=4, embed_dim=2, passage_encoder="teacher"))  # output student


def test_the_index_holds_the_teachers_vectors_and_says_so(tmp_path, teacher, monkeypatch):
    make_query_tower(tmp_path / "q.pt")
    from twotower.serve import indexer

    part_sizes, embed_parts = [], indexer._embed_parts
    monkeypatch.setattr(indexer, "_embed_parts", lambda sources, parts, searcher, part_rows, show_progress: (
        part_sizes.append(part_rows) or embed_parts(sources, parts, searcher, part_rows, show_progress)))
    manifest = build(tmp_path, tmp_path / "q.pt")
    assert part_sizes == [indexer.TEACHER_PART_ROWS]  # the teacher's parts are small: a kill loses little
    assert manifest["model"]["passage_encoder"] == "teacher" and manifest["model"]["space"] == SPACE
    vectors = np.load(tmp_path / "index" / "vectors.npy")
    expected = encode_texts(teacher, PASSAGES["text"].tolist(), 64, dtype=np.float32)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_any_query_tower_of_the_same_space_searches_it_and_others_are_refused(tmp_path):
    make_query_tower(tmp_path / "q.pt")
    build(tmp_path, tmp_path / "q.pt")
    make_query_tower(tmp_path / "retrained.pt", seed=1)  # other weights, same space: allowed
    hits = Searcher.from_index(tmp_path / "index", model=tmp_path / "retrained.pt", device="cpu").search("flea", 3)
    assert len(hits) == 3 and {hit.pid for hit in hits} <= set(PASSAGES["id"])
    make_query_tower(tmp_path / "other.pt", space="other-teacher:384")
    with pytest.raises(TwoTowerError) as err:
        Searcher.from_index(tmp_path / "index", model=tmp_path / "other.pt", device="cpu")
    assert "'minilm:384'" in str(err.value) and "'other-teacher:384'" in str(err.value)
    assert "\n" not in str(err.value)
    make_model(tmp_path / "student.pt")
    with pytest.raises(TwoTowerError, match="its own passage tower"):
        Searcher.from_index(tmp_path / "index", model=tmp_path / "student.pt", device="cpu")


def test_search_over_documents_ranks_the_teachers_passage_vectors(tmp_path, teacher):
    make_query_tower(tmp_path / "q.pt")
    searcher = Searcher.from_model(tmp_path / "q.pt", device="cpu", feedback=FeedbackParams(depth=0))
    texts = PASSAGES["text"].tolist()
    hits = searcher.search("coffee bean", top_k=len(texts), documents=texts)
    query = searcher._embed(searcher.model.encode_queries, ["coffee bean"], 8, show_progress=False)[0]
    scores = encode_texts(teacher, texts, 64, dtype=np.float32) @ query
    assert [hit.pid for hit in hits] == [str(i) for i in np.lexsort((np.arange(len(texts)), -scores))]
    np.testing.assert_allclose([hit.score for hit in hits], np.sort(scores)[::-1], atol=1e-5)
    assert searcher.similarity("coffee bean", texts[6]) == pytest.approx(float(scores[6]), abs=1e-5)
