"""Property tests (Hypothesis): the tokenizer and word counts on any text, the metrics'
bounds and fixed points, and triplet sampling on random qrels. Example counts stay small:
each metric call runs trec_eval."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from twotower.errors import TwoTowerError
from twotower.evaluation.metrics import METRIC_NAMES, evaluate_run
from twotower.text.tokenizers import PAD_ID, UNK_ID, Tokenizer, build_vocab, count_words, document_frequency, words
from twotower.data.triplets import build_triplets

# Any code point, surrogates, controls and unassigned ones included.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=200)
SOME_TEXT = st.one_of(ANY_TEXT, st.lists(st.sampled_from(["lake", "Water", "fish", "ÉTÉ", "\x00", " ", "\n",
                                                          "naïve", "日本", "🐟", "\u200b"]),
                                         max_size=40).map("".join))
FAST = settings(max_examples=60, deadline=None)
SLOW = settings(max_examples=40, deadline=None)


@FAST
@given(texts=st.lists(SOME_TEXT, max_size=8), vocab_texts=st.lists(SOME_TEXT, max_size=8),
       max_len=st.integers(1, 12), max_vocab=st.integers(2, 50))
def test_tokenizer_never_crashes_ids_in_range_pad_only_at_the_end(texts, vocab_texts, max_len, max_vocab):
    vocab = build_vocab(vocab_texts, ["the", "lake"], min_freq=1, max_vocab=max_vocab)
    assert vocab[:2] == ["<pad>", "<unk>"] and len(set(vocab)) == len(vocab) <= max(max_vocab, 2)
    tokenizer = Tokenizer(vocab)
    ids, lengths = tokenizer.encode_batch(texts, max_len)
    assert ids.shape == (len(texts), max_len) and lengths.shape == (len(texts),)
    assert ((ids >= 0) & (ids < len(vocab))).all()
    assert ((lengths >= 1) & (lengths <= max_len)).all()
    for row, length, text in zip(ids, lengths, texts):
        assert (row[:length] != PAD_ID).all() and (row[length:] == PAD_ID).all()
        expected = [tokenizer.ids.get(w, UNK_ID) for w in words(text)[:max_len]] or [UNK_ID]
        assert row[:length].tolist() == expected


def judged_queries():
    """qrels over a shared pool of pids; relevance 0-3 with selected = relevance >= 2 (TREC-DL)."""
    judgement = st.tuples(st.integers(0, 29), st.integers(0, 3))
    return st.dictionaries(st.sampled_from([f"q{i}" for i in range(6)]),
                           st.lists(judgement, min_size=1, max_size=12, unique_by=lambda j: j[0]),
                           min_size=1, max_size=4)


def qrels_frame(judged: dict) -> pd.DataFrame:
    rows = [(qid, f"p{pid}", rel, rel >= 2) for qid, js in judged.items() for pid, rel in js]
    return pd.DataFrame(rows, columns=["qid", "pid", "relevance", "selected"])


@SLOW
@given(judged=judged_queries(), scores=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0]), min_size=40, max_size=40),
       run_size=st.integers(0, 30), order_seed=st.integers(0, 2**32 - 1))
def test_metrics_are_bounded_and_ignore_run_row_order(judged, scores, run_size, order_seed):
    """Scores come from four values, so ties are everywhere: ranks must come from (score,
    pid), never from the order of the run's rows."""
    qrels = qrels_frame(judged)
    assume(qrels["selected"].any())
    pids = [f"p{i}" for i in range(30)]
    run = pd.DataFrame([(qid, pids[(i * 7 + j) % 30], scores[(i + j) % 40])
                        for i, qid in enumerate(sorted(judged)) for j in range(run_size)],
                       columns=["qid", "pid", "score"]).drop_duplicates(["qid", "pid"])
    found = evaluate_run(run, qrels)
    assert set(found) == set(METRIC_NAMES)
    assert all(0.0 <= v <= 1.0 for v in found.values())
    shuffled = run.sample(frac=1.0, random_state=np.random.RandomState(order_seed % 2**32))
    assert evaluate_run(shuffled.reset_index(drop=True), qrels) == found


@SLOW
@given(judged=judged_queries(), unjudged=st.integers(0, 20))
def test_perfect_ranking_scores_one(judged, unjudged):
    """Every judged passage ranked by its grade above everything unjudged."""
    qrels = qrels_frame(judged)
    assume(qrels["selected"].any())
    rows = [(r.qid, r.pid, float(r.relevance)) for r in qrels.itertuples()]
    rows += [(qid, f"x{i}", -1.0) for qid in judged for i in range(unjudged)]
    found = evaluate_run(pd.DataFrame(rows, columns=["qid", "pid", "score"]), qrels)
    for name in ("P@1", "MRR@10", "nDCG@10", "Recall@100", "MAP"):
        assert found[name] == 1.0, name
    positives = qrels[qrels["selected"]].groupby("qid").size()
    if (positives <= 10).all():
        assert found["Recall@10"] == 1.0
    if (positives >= 5).all():
        assert found["P@5"] == 1.0


@st.composite
def triplet_inputs(draw):
    n_pids = draw(st.integers(2, 25))
    pids = [f"p{i}" for i in range(n_pids)]
    judged = draw(st.dictionaries(
        st.sampled_from([f"q{i}" for i in range(8)]),
        st.lists(st.tuples(st.sampled_from(pids), st.integers(0, 3), st.booleans()), min_size=1, max_size=8,
                 unique_by=lambda j: j[0]),
        min_size=1, max_size=6))
    rows = [(qid, pid, rel, selected) for qid, js in judged.items() for pid, rel, selected in js]
    qrels = pd.DataFrame(rows, columns=["qid", "pid", "relevance", "selected"])
    candidates = {qid: draw(st.lists(st.sampled_from(pids), max_size=10)) for qid in judged}
    return qrels, pids, candidates


@FAST
@given(inputs=triplet_inputs(), negatives=st.sampled_from(["random", "hard", "mixed", "bm25"]),
       per_query=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_a_negative_is_never_selected_or_related_for_its_query(inputs, negatives, per_query, seed):
    """`selected` and `relevance` are drawn independently here, so a passage can be
    selected with relevance 0, or related (relevance > 0) without being selected."""
    qrels, pids, candidates = inputs
    related = qrels[qrels["selected"] | (qrels["relevance"] > 0)].groupby("qid")["pid"].agg(set).to_dict()
    positives = qrels[qrels["selected"]].groupby("qid")["pid"].agg(set).to_dict()
    if any(len(related.get(qid, ())) >= len(pids) for qid in positives):
        with pytest.raises(TwoTowerError, match="every passage of the split is relevant"):
            build_triplets(qrels, np.array(pids), negatives, per_query, seed, bm25_candidates=candidates)
        return
    stats = Counter()
    triplets = build_triplets(qrels, np.array(pids), negatives, per_query, seed, stats, candidates)
    assert len(triplets) == per_query * len(positives)
    assert set(triplets["qid"]) == set(positives)
    for qid, pos, neg in triplets.itertuples(index=False):
        assert pos in positives[qid]
        assert neg not in related[qid] and neg != pos
        assert neg in pids
    again = build_triplets(qrels, np.array(pids), negatives, per_query, seed, bm25_candidates=candidates)
    pd.testing.assert_frame_equal(again, triplets)


# Greek capital sigma lowercases by context (final or not), so it checks chunked counting.
SIGMA_TEXT = st.lists(st.sampled_from(["Σ", "ΟΔΟΣ", "'", ".", " ", "a", "É", "\u0345"]),
                      max_size=12).map("".join)


@FAST
@given(texts=st.lists(st.one_of(SOME_TEXT, SIGMA_TEXT), max_size=8), chunk=st.integers(1, 4))
def test_count_words_in_chunks_equals_counting_each_text(texts, chunk):
    assert count_words(texts, chunk=chunk) == Counter(w for t in texts for w in words(t))


@FAST
@given(rows=st.lists(st.lists(st.integers(0, 9), min_size=5, max_size=5), max_size=10))
def test_document_frequency_equals_a_set_per_row(rows):
    ids = np.array(rows, dtype=np.int32).reshape(len(rows), 5)
    expected = Counter(i for row in rows for i in set(row))
    assert document_frequency(ids, 10).tolist() == [expected[i] for i in range(10)]
