"""Searcher and the `twotower search` command on a hand-built model and a three-passage index.

Each of the eight words gets its own unit word vector, and an untrained model is the mean of
its words' vectors (the RNN projection starts at zero), so scores can be worked out by hand:
a passage made of exactly the query's words scores 1, one sharing no word scores 0.
"""

import io

import numpy as np
import pandas as pd
import pytest
import torch

from twotower import Searcher, TwoTowerError
from twotower.cli import main
from twotower.retrieval.dense import embed
from twotower.model.towers import ModelConfig, TwoTower, save_model
from twotower.params import FeedbackParams
from twotower.serve.search import EMBEDDINGS, MODEL, PASSAGES, PIDS
from twotower.text.tokenizers import PAD, UNK, Tokenizer

WORDS = ["flea", "life", "cycle", "dog", "cat", "bread", "recipe", "oven"]
PASSAGE_TABLE = pd.DataFrame({
    "pid": ["p0", "p1", "p2"],
    "text": ["bread recipe for the oven", "the flea life cycle", "a dog and a cat"],
})


@pytest.fixture
def root(tmp_path):
    """A project root laid out as the pipeline leaves it: model, index, test passages."""
    vocab = [PAD, UNK, *WORDS]
    vectors = torch.zeros(len(vocab), len(WORDS))
    vectors[2:] = torch.eye(len(WORDS))
    model = TwoTower(ModelConfig(vocab_size=len(vocab), embed_dim=len(WORDS), hidden_dim=4), vectors).eval()
    save_model(model, vocab, max_len_query=8, max_len_passage=16, path=tmp_path / MODEL)

    ids, lengths = Tokenizer(vocab).encode_batch(PASSAGE_TABLE["text"], 16)
    (tmp_path / EMBEDDINGS).parent.mkdir(parents=True)
    np.save(tmp_path / EMBEDDINGS, embed(model.encode_passages, ids, lengths, 2, "cpu"))
    PASSAGE_TABLE[["pid"]].to_parquet(tmp_path / PIDS, index=False)
    (tmp_path / PASSAGES).parent.mkdir(parents=True)
    PASSAGE_TABLE.to_parquet(tmp_path / PASSAGES, index=False)
    return tmp_path


NO_FEEDBACK = FeedbackParams(depth=0)


def test_pipeline_index_ranks_the_passage_with_the_query_words_first(root):
    hits = Searcher.from_pipeline(root, device="cpu", feedback=NO_FEEDBACK).search("flea life cycle", top_k=2)
    assert [(h.rank, h.pid, h.text) for h in hits] == [(1, "p1", "the flea life cycle"),
                                                       (2, "p0", "bread recipe for the oven")]
    # p1 = mean(flea, life, cycle, unk) -> cosine 3 / (sqrt(3) * sqrt(3)) = 1; p0 shares nothing.
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)
    assert hits[1].score == pytest.approx(0.0, abs=1e-6)


def test_feedback_adds_the_first_passages_vectors_to_the_query(root):
    """q = p1's direction; its first two passages are p1 (cosine 1) and p0 (0, before p2 by
    row): q + 2 * mean(p1, p0) = 2 p1 + p0, of norm sqrt(5), so p1 scores 2/sqrt(5), p0 1/sqrt(5)."""
    searcher = Searcher.from_pipeline(root, device="cpu", feedback=FeedbackParams(depth=2, weight=2.0))
    hits = searcher.search("flea life cycle", top_k=3)
    assert [h.pid for h in hits] == ["p1", "p0", "p2"]
    assert [h.score for h in hits] == pytest.approx([2 / 5 ** 0.5, 1 / 5 ** 0.5, 0.0], abs=1e-6)
    one = Searcher.from_pipeline(root, device="cpu", feedback=FeedbackParams(depth=1, weight=1.0))
    assert [h.score for h in one.search("flea life cycle", top_k=2)] == pytest.approx([1.0, 0.0], abs=1e-6)


def test_cli_search_takes_feedback_from_the_roots_params(root, capsys):
    (root / "params.yaml").write_text("feedback:\n  depth: 2\n  weight: 2.0\n")
    main(["search", "flea life cycle", "-k", "2", "--root", str(root), "--device", "cpu"])
    assert capsys.readouterr().out.splitlines()[0] == "1. [p1] 0.8944  the flea life cycle"  # 2/sqrt(5)
    (root / "params.yaml").write_text("feedback:\n  depth: 0\n")
    main(["search", "flea life cycle", "-k", "2", "--root", str(root), "--device", "cpu"])
    assert capsys.readouterr().out.splitlines()[0] == "1. [p1] 1.0000  the flea life cycle"
    (root / "params.yaml").write_text("feedback:\n  depth: -1\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "flea life cycle", "--root", str(root), "--device", "cpu"])
    assert exit_info.value.code == 2
    assert "feedback.depth" in capsys.readouterr().err


def test_cli_search_without_params_uses_the_default_feedback(root, capsys):
    main(["search", "flea", "-k", "3", "--root", str(root), "--device", "cpu"])
    lines = capsys.readouterr().out.splitlines()
    hits = Searcher.from_pipeline(root, device="cpu", feedback=FeedbackParams()).search("flea", top_k=3)
    assert lines == [f"{h.rank}. [{h.pid}] {h.score:.4f}  {h.text}" for h in hits]
    # depth 2 x 2: the first two are p1 and p0 (a tie at 0 goes to the lower row), so the
    # query is flea + p1 + p0, of norm sqrt(3 + 2/sqrt(3)), and p1 scores (1 + 1/sqrt(3)) / that
    assert lines[0].startswith("1. [p1] 0.7739")


def test_top_k_beyond_the_corpus_returns_every_passage(root):
    hits = Searcher.from_pipeline(root, device="cpu").search("dog", top_k=10)
    assert [h.pid for h in hits] == ["p2", "p0", "p1"]  # ties at 0 go to the lower row


def test_documents_are_ranked_without_an_index(root):
    searcher = Searcher.from_model(root / MODEL, device="cpu")
    documents = ["a dog and a cat", "bread in the oven", "flea"]
    hits = searcher.search("oven bread", top_k=2, documents=documents)
    assert [(h.pid, h.text) for h in hits] == [("1", "bread in the oven"), ("0", "a dog and a cat")]
    assert searcher.search("oven", documents=[]) == []


def test_similarity_is_a_cosine(root):
    searcher = Searcher.from_model(root / MODEL, device="cpu")
    same = searcher.similarity("flea life cycle", "flea life cycle")
    unrelated = searcher.similarity("flea life cycle", "bread recipe")
    partial = searcher.similarity("flea life", "flea cycle")
    assert same == pytest.approx(1.0, abs=1e-6)
    assert unrelated == pytest.approx(0.0, abs=1e-6)
    assert partial == pytest.approx(0.5, abs=1e-6)
    assert -1.0 <= unrelated < partial < same <= 1.0


@pytest.mark.parametrize("missing", [MODEL, EMBEDDINGS, PIDS, PASSAGES])
def test_a_missing_artefact_is_named(root, missing):
    (root / missing).unlink()
    with pytest.raises(TwoTowerError, match=rf"{missing.name} not found: `dvc repro` \(or `dvc pull`\)"):
        Searcher.from_pipeline(root, device="cpu")


def test_bad_searches_are_refused(root):
    searcher = Searcher.from_pipeline(root, device="cpu")
    with pytest.raises(TwoTowerError, match="query is empty"):
        searcher.search("  \t ")
    with pytest.raises(TwoTowerError, match="got 0"):
        searcher.search("flea", top_k=0)
    with pytest.raises(TwoTowerError, match="no passage index"):
        Searcher.from_model(root / MODEL, device="cpu").search("flea")


@pytest.mark.parametrize("query", ["???", "!!!", "...", " - ", "\u00bf?"])
def test_a_query_without_a_word_is_refused(root, query):
    searcher = Searcher.from_pipeline(root, device="cpu")
    with pytest.raises(TwoTowerError, match="^query has no words to search for: .* holds no letters or digits$"):
        searcher.search(query)
    with pytest.raises(TwoTowerError, match="query has no words to search for"):
        searcher.search(query, documents=["flea"])
    assert searcher.search("flea?!", top_k=1)[0].pid == "p1"  # punctuation beside a word is fine


def test_cli_refuses_a_query_without_a_word_with_one_line_and_exit_2(root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "???", "--root", str(root), "--device", "cpu"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: query has no words to search for: '???' holds no letters or digits\n"


def test_cli_interactive_answers_a_query_without_a_word_with_an_error_and_goes_on(root, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("...\nflea\n"))
    main(["search", "-i", "-k", "1", "--root", str(root), "--device", "cpu"])
    captured = capsys.readouterr()
    assert captured.err == "error: query has no words to search for: '...' holds no letters or digits\n"
    assert "1. [p1]" in captured.out and captured.out.count("query> ") == 3


def test_cli_prints_ranked_passages(root, capsys):
    (root / "params.yaml").write_text("feedback:\n  depth: 0\n")  # scores by hand: the query's own
    main(["search", "flea life cycle", "-k", "2", "--root", str(root), "--device", "cpu"])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["1. [p1] 1.0000  the flea life cycle", "2. [p0] 0.0000  bread recipe for the oven"]


def test_cli_interactive_answers_until_eof(root, capsys, monkeypatch):
    (root / "params.yaml").write_text("feedback:\n  depth: 0\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("flea\nbread oven\n"))
    main(["search", "--interactive", "-k", "1", "--root", str(root), "--device", "cpu"])
    out = capsys.readouterr().out
    assert out.count("query> ") == 3
    answers = [line.split("query> ")[-1] for line in out.splitlines() if "1. [" in line]
    # cosines 1/sqrt(3) (one of p1's three words) and 2/sqrt(6) (two of p0's three)
    assert answers == ["1. [p1] 0.5774  the flea life cycle", "1. [p0] 0.8165  bread recipe for the oven"]


def test_cli_interactive_stops_at_quit(root, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("flea\nquit\ndog\n"))
    main(["search", "-i", "--root", str(root), "--device", "cpu"])
    out = capsys.readouterr().out
    assert "[p1]" in out.splitlines()[0] and out.count("query> ") == 2


def test_cli_error_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "flea", "--root", str(tmp_path), "--device", "cpu"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "model.pt not found" in err


def test_one_query_embeds_as_in_a_batch_at_any_length(root):
    """The traced single-query path (traced at 3 tokens) against the batched one, from an
    empty query to one past max_len_query."""
    searcher = Searcher.from_model(root / MODEL, device="cpu")
    with torch.no_grad():  # the projection starts at zero: make the RNN count
        searcher.model.query_encoder.project.weight.normal_(generator=torch.Generator().manual_seed(0))
    queries = ["", "flea", "dog cat", "flea life cycle dog", " ".join(WORDS * 2)]
    batched = searcher._embed(searcher.model.encode_queries, queries, searcher.max_len_query, show_progress=False)
    for query, expected in zip(queries, batched):
        np.testing.assert_allclose(searcher.embed_query(query)[0], expected, atol=1e-6)
