"""The rule that sizes `twotower index --index auto` to a collection, and nprobe calibration."""

import numpy as np
import pytest

from twotower.serve import index_plan
from twotower.retrieval.ann import build_index
from twotower.retrieval.dense import top_k


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("n,dim,kind,nlist", [
    (1, 384, "exact", 0), (20_000, 384, "exact", 0),
    (20_001, 384, "ivf", 512), (57_000, 384, "ivf", 955), (200_000, 384, "ivf", 1789),
    (200_001, 384, "ivf_pq", 894), (1_000_000, 384, "ivf_pq", 2000), (8_000_000, 384, "ivf_pq", 5657),
    (1_000_000, 51, "ivf_sq8", 4000),
])
def test_the_rule(n, dim, kind, nlist):
    plan = index_plan.plan_index(n, dim)
    assert (plan.kind, plan.nlist) == (kind, nlist)


def clustered(n, dim, seed, noise):
    rng = np.random.default_rng(seed)
    topics = unit(rng.normal(size=(200, dim)))
    return unit(topics[rng.integers(0, 200, n)] + noise * rng.normal(size=(n, dim)))


def recall(index, queries, truth, nprobe):
    index.nprobe = nprobe
    _, found = index.search(queries, 10)
    return np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])


def test_calibration_picks_the_smallest_nprobe_reaching_the_target():
    vectors, queries = clustered(8000, 32, 0, 0.3), clustered(200, 32, 0, 0.6)
    index = build_index(vectors, "ivf", ivf_nlist=128, train_per_cell=64, kmeans_iterations=10)
    calibration = index_plan.calibrate_nprobe(index, vectors, queries, target=0.95, block_rows=1000)
    assert calibration.recall >= 0.95 and index.nprobe == calibration.nprobe and calibration.queries == 200
    _, truth = top_k(queries, vectors, 10)
    assert recall(index, queries, truth, calibration.nprobe) == pytest.approx(calibration.recall, abs=1e-4)
    assert calibration.nprobe > 1 and recall(index, queries, truth, calibration.nprobe // 2) < 0.95


def test_a_given_nprobe_is_kept_and_its_recall_measured():
    rng = np.random.default_rng(1)
    vectors, queries = unit(rng.normal(size=(3000, 16))), unit(rng.normal(size=(100, 16)))
    index = build_index(vectors, "ivf_sq8", ivf_nlist=64)
    calibration = index_plan.calibrate_nprobe(index, vectors, queries, nprobe=64)
    assert calibration.nprobe == 64 and calibration.recall > 0.9
    calibration = index_plan.calibrate_nprobe(index, vectors, queries, nprobe=1)
    assert calibration.nprobe == 1 and calibration.recall < 0.9


def test_pseudo_queries_are_seeded_spans_of_each_text():
    texts = ["the flea life cycle has four stages: egg, larva, pupa and adult", "a b", "???"]
    spans = index_plan.pseudo_queries(texts, seed=3)
    assert spans == index_plan.pseudo_queries(texts, seed=3) and len(spans) == 3
    words = texts[0].replace(":", "").replace(",", "").split()
    first = spans[0].split()
    assert 3 <= len(first) <= 8 and " ".join(first) in " ".join(words)
    assert spans[1] == "a b" and spans[2] == "???"  # a short text whole; one without words as it is


def test_calibrating_a_pq_index_measures_its_refined_searches():
    vectors, queries = clustered(8000, 32, 0, 0.3), clustered(200, 32, 0, 0.6)
    index = build_index(vectors, "ivf_pq", ivf_nlist=128, train_per_cell=64, kmeans_iterations=10)

    class Rows:
        def take(self, rows):
            return vectors[rows]

    refined = index_plan.calibrate_nprobe(index, vectors, queries, nprobe=128, refine=Rows())
    rough = index_plan.calibrate_nprobe(index, vectors, queries, nprobe=128)
    assert refined.recall >= 0.95 and rough.recall < refined.recall - 0.05  # the 4-bit scores alone miss
    calibration = index_plan.calibrate_nprobe(index, vectors, queries, target=0.95, refine=Rows())
    assert calibration.recall >= 0.95 and calibration.nprobe < 128
