import numpy as np
import pytest
import torch

from twotower.retrieval.dense import embed, to_run, top_k
from twotower.model.towers import ModelConfig, TwoTower


def reference_top_k(queries, passages, k):
    """Brute force: full sort by (-score, row)."""
    scores = queries @ passages.T
    rows = np.stack([np.lexsort((np.arange(len(s)), -s))[:k] for s in scores])
    return np.take_along_axis(scores, rows, axis=1), rows


@pytest.mark.parametrize("k", [1, 5, 37, 40, 100])
def test_top_k_matches_brute_force(k):
    rng = np.random.default_rng(k)
    queries = rng.normal(size=(23, 6)).astype(np.float32)
    passages = rng.normal(size=(40, 6)).astype(np.float32)
    scores, rows = top_k(queries, passages, k, batch_size=7)
    ref_scores, ref_rows = reference_top_k(queries, passages, min(k, 40))
    assert rows.shape == scores.shape == (23, min(k, 40))
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_ties_go_to_the_lower_row_when_all_are_kept():
    passages = np.array([[1.0], [2.0], [1.0], [2.0], [1.0]], dtype=np.float32)
    scores, rows = top_k(np.ones((1, 1), dtype=np.float32), passages, k=10)
    assert rows.tolist() == [[1, 3, 0, 2, 4]]
    assert scores.tolist() == [[2.0, 2.0, 1.0, 1.0, 1.0]]


def test_ties_go_to_the_lower_row_inside_the_top_k():
    # Ten 3s and ten 2s, shuffled among twenty 1s: the top 20 is exactly the 3s and 2s.
    values = np.random.default_rng(0).permutation([3.0] * 10 + [2.0] * 10 + [1.0] * 20)
    _, rows = top_k(np.ones((1, 1), dtype=np.float32), values[:, None].astype(np.float32), k=20)
    expected = np.concatenate([np.flatnonzero(values == 3), np.flatnonzero(values == 2)])
    assert rows[0].tolist() == expected.tolist()


def test_ties_at_the_cut_go_to_the_lower_row():
    # Scores 0 1 0 1 2 1, k = 3: rank 1 is row 4 (2), then the 1s in row order: 1, 3 (not 5).
    passages = np.array([[0.0], [1.0], [0.0], [1.0], [2.0], [1.0]], dtype=np.float32)
    _, rows = top_k(np.ones((1, 1), dtype=np.float32), passages, k=3)
    assert rows.tolist() == [[4, 1, 3]]


def test_to_run_shape_and_ranks():
    scores = np.array([[0.9, 0.5, 0.1], [0.8, 0.7, 0.2]], dtype=np.float32)
    rows = np.array([[2, 0, 1], [1, 2, 0]])
    run = to_run(["qa", "qb"], ["p0", "p1", "p2"], scores, rows)
    assert list(run.columns) == ["qid", "pid", "rank", "score"]
    assert len(run) == 6
    assert run["qid"].tolist() == ["qa"] * 3 + ["qb"] * 3
    assert run["pid"].tolist() == ["p2", "p0", "p1", "p1", "p2", "p0"]
    assert run["rank"].tolist() == [1, 2, 3, 1, 2, 3]
    np.testing.assert_allclose(run["score"], scores.ravel(), rtol=1e-6)
    assert run["score"].dtype == np.float64


def test_embed_returns_rows_in_input_order():
    torch.manual_seed(0)
    model = TwoTower(ModelConfig(vocab_size=20, embed_dim=4, hidden_dim=3), torch.randn(20, 4)).eval()
    with torch.no_grad():
        model.passage_encoder.project.weight.normal_()  # so the RNN, which sees the padding width, counts
    rng = np.random.default_rng(0)
    lengths = np.array([2, 7, 1, 5, 7, 3, 4, 1, 6], dtype=np.int32)  # not sorted, with ties
    ids = np.zeros((len(lengths), 8), dtype=np.int32)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(2, 20, size=n)

    vectors = embed(model.encode_passages, ids, lengths, batch_size=4, device="cpu")

    assert vectors.shape == (len(lengths), 4) and vectors.dtype == np.float32
    with torch.no_grad():
        one_by_one = np.concatenate([
            model.encode_passages(torch.as_tensor(ids[row: row + 1, :n], dtype=torch.long),
                                  torch.tensor([n])).numpy()
            for row, n in enumerate(lengths)
        ])
    np.testing.assert_allclose(vectors, one_by_one, rtol=1e-5, atol=1e-6)
