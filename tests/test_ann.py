import numpy as np
import pytest

from twotower.retrieval.ann import build_index, index_kind, load_index, refine_depth, save_index, search
from twotower.errors import TwoTowerError
from twotower.retrieval.dense import to_run, top_k


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus():
    """5,000 passages and 200 queries around 100 topics: unit vectors with the cluster
    structure real embeddings have (uniform random vectors in 50 dims have none, which is
    the worst case for an inverted file)."""
    rng = np.random.default_rng(0)
    topics = unit(rng.normal(size=(100, 50)))
    passages = unit(topics[rng.integers(0, 100, 5000)] + 0.1 * rng.normal(size=(5000, 50)))
    queries = unit(topics[rng.integers(0, 100, 200)] + 0.1 * rng.normal(size=(200, 50)))
    return passages, queries


class Rows:
    """The float vectors a refined search re-ranks with (what `index_folder.NpyRows` gives a server)."""

    def __init__(self, array):
        self.array, self.taken = array, 0

    def take(self, rows):
        self.taken += len(rows)
        return self.array[rows]


def recall_at_10(rows, exact_rows):
    return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows[:, :10], exact_rows[:, :10])])


def test_exact_index_equals_numpy_top_k(corpus):
    passages, queries = corpus
    scores, rows = search(build_index(passages, "exact"), queries, 100)
    ref_scores, ref_rows = top_k(queries, passages, 100)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "ivf_sq8", "ivf_pq"])
def test_approximate_recall_at_10(corpus, kind):
    passages, queries = corpus
    index = build_index(passages, kind, ivf_nlist=64, ivf_nprobe=8)
    assert index_kind(index) == kind
    _, rows = search(index, queries, 10, refine=Rows(passages) if kind == "ivf_pq" else None)
    _, exact_rows = top_k(queries, passages, 10)
    assert recall_at_10(rows, exact_rows) >= 0.9


def test_search_time_settings_override_the_index(corpus):
    passages, queries = corpus
    _, exact_rows = top_k(queries, passages, 10)
    ivf = build_index(passages, "ivf", ivf_nlist=64, ivf_nprobe=1)
    assert recall_at_10(search(ivf, queries, 10, nprobe=64)[1], exact_rows) == 1.0
    assert ivf.nprobe == 1
    hnsw = build_index(passages, "hnsw", hnsw_ef_search=10)
    assert recall_at_10(search(hnsw, queries, 10, ef_search=500)[1], exact_rows) == 1.0


def test_builds_are_deterministic(corpus):
    passages, queries = corpus
    for kind in ("hnsw", "ivf", "ivf_sq8", "ivf_pq"):
        first = search(build_index(passages, kind, ivf_nlist=64), queries, 50)
        second = search(build_index(passages, kind, ivf_nlist=64), queries, 50)
        np.testing.assert_array_equal(first[1], second[1])


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf", "ivf_sq8", "ivf_pq"])
def test_save_load_round_trip(tmp_path, corpus, kind):
    passages, queries = corpus
    index = build_index(passages, kind, ivf_nlist=64)
    save_index(index, tmp_path / "faiss.index")
    loaded = load_index(tmp_path / "faiss.index", kind)
    assert loaded.ntotal == len(passages)
    assert [p.name for p in tmp_path.iterdir()] == ["faiss.index"]
    for got, want in zip(search(loaded, queries, 20), search(index, queries, 20)):
        np.testing.assert_array_equal(got, want)


def test_load_checks_the_kind_and_the_file(tmp_path, corpus):
    save_index(build_index(corpus[0], "exact"), tmp_path / "faiss.index")
    with pytest.raises(TwoTowerError, match="holds an index of kind exact, but eval.index is hnsw"):
        load_index(tmp_path / "faiss.index", "hnsw")
    with pytest.raises(TwoTowerError, match=f"holds {len(corpus[0])} vectors, not 10; rerun embed_corpus"):
        load_index(tmp_path / "faiss.index", "exact", size=10)
    with pytest.raises(TwoTowerError, match="faiss index not found"):
        load_index(tmp_path / "missing.index")
    (tmp_path / "junk.index").write_bytes(b"not an index")
    with pytest.raises(TwoTowerError, match="not a readable faiss index"):
        load_index(tmp_path / "junk.index")


def test_bad_kind_is_a_user_error(corpus):
    with pytest.raises(TwoTowerError, match="^index kind 'annoy' is not one of exact, hnsw, ivf, ivf_sq8, ivf_pq$"):
        build_index(corpus[0], "annoy")


def test_rows_an_index_did_not_find_are_left_out_of_the_run(corpus):
    passages, queries = corpus
    index = build_index(passages, "ivf", ivf_nlist=64, ivf_nprobe=1)
    scores, rows = search(index, queries[:3], 1000)
    assert (rows < 0).any() and np.isneginf(scores[rows < 0]).all()
    run = to_run(["a", "b", "c"], [f"p{i}" for i in range(len(passages))], scores, rows)
    assert len(run) == (rows >= 0).sum()
    assert run.groupby("qid")["rank"].max().tolist() == (rows >= 0).sum(1).tolist()


def test_hnsw_returns_k_rows_even_when_k_exceeds_ef_search(corpus):
    passages, queries = corpus
    index = build_index(passages, "hnsw", hnsw_ef_search=16)
    _, rows = search(index, queries[:5], 200)
    assert (rows >= 0).all()
    assert recall_at_10(rows, top_k(queries[:5], passages, 10)[1]) == 1.0


def test_sq8_stores_a_byte_a_dimension(tmp_path, corpus):
    for kind in ("ivf", "ivf_sq8"):
        save_index(build_index(corpus[0], kind, ivf_nlist=64), tmp_path / f"{kind}.index")
    flat, sq8 = ((tmp_path / f"{kind}.index").stat().st_size for kind in ("ivf", "ivf_sq8"))
    vectors = corpus[0].size  # floats
    assert flat > 4 * vectors and sq8 < 1.5 * vectors


def test_a_refined_pq_search_ranks_its_candidates_by_exact_scores(corpus):
    passages, queries = corpus
    index = build_index(passages, "ivf_pq", ivf_nlist=64, ivf_nprobe=64)
    rough_scores, rough_rows = search(index, queries, 10)
    exact_of = lambda rows: np.einsum("qd,qkd->qk", queries, passages[rows])
    assert np.abs(rough_scores - exact_of(rough_rows)).max() > 1e-3  # 4-bit codes: approximate scores
    rows_read = Rows(passages)
    scores, rows = search(index, queries, 10, refine=rows_read)
    np.testing.assert_allclose(scores, exact_of(rows), rtol=1e-5, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()
    assert rows_read.taken <= len(queries) * refine_depth(10)
    _, exact_rows = top_k(queries, passages, 10)
    assert recall_at_10(rows, exact_rows) > recall_at_10(rough_rows, exact_rows)


def test_refine_depth_is_ten_candidates_a_result_up_to_256():
    assert [refine_depth(k) for k in (1, 10, 25, 26, 5000)] == [10, 100, 250, 256, 256]


def test_a_deep_refined_run_is_exact_at_the_top_and_in_order_below(corpus):
    passages, queries = corpus
    index = build_index(passages, "ivf_pq", ivf_nlist=64, ivf_nprobe=64)
    scores, rows = search(index, queries[:20], 1000, refine=Rows(passages))
    assert (rows >= 0).all() and all(len(set(r)) == 1000 for r in rows)
    exact = np.einsum("qd,qkd->qk", queries[:20], passages[rows])
    np.testing.assert_allclose(scores[:, :256], exact[:, :256], rtol=1e-5, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()
    _, exact_rows = top_k(queries[:20], passages, 10)
    shallow = search(index, queries[:20], 10, refine=Rows(passages))[1]  # 100 candidates re-scored, not 256
    assert recall_at_10(rows, exact_rows) >= recall_at_10(shallow, exact_rows) >= 0.9


def test_pq_needs_an_even_dimension(corpus):
    with pytest.raises(TwoTowerError, match="ivf_pq index codes pairs of dimensions; these vectors have 49"):
        build_index(corpus[0][:, :49], "ivf_pq", ivf_nlist=8)
    with pytest.raises(TwoTowerError, match="ivf_pq index needs at least 16 vectors to train its codes, got 15"):
        build_index(corpus[0][:15], "ivf_pq", ivf_nlist=1)
