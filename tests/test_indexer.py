"""`twotower index` and `Searcher.from_index`: every format, same hits as searching the texts
directly, skipped rows counted, an interrupted build resumed, another model refused."""

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from twotower import Searcher, TwoTowerError
from twotower.serve import indexer as indexer_module
from twotower.retrieval.bm25 import bm25_run
from twotower.cli import main
from twotower.serve.collection import open_source
from twotower.serve.index_folder import MANIFEST, PASSAGES, NpyRows, PassageStore, partial_path
from twotower.serve.indexer import build_index_folder
from twotower.params import Bm25Params, EvalParams, HybridParams
from tests.tiny_index import PASSAGES as TABLE
from tests.tiny_index import make_model, write_collection


# 36 passages: the 8, and each pair of them joined (an ivf_pq index trains on at least 16).
LARGER_TABLE = pd.DataFrame({"id": [*TABLE["id"], *(f"{a}+{b}" for i, a in enumerate(TABLE["id"]) for b in TABLE["id"][i + 1:])],
                             "text": [*TABLE["text"], *(f"{a} {b}" for i, a in enumerate(TABLE["text"])
                                                        for b in TABLE["text"][i + 1:])]})


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.pt"
    make_model(path)
    return path


def build(paths, out, model, part_rows=3, kind="exact", force=False, logs=None):
    sources = [open_source(p) for p in paths]
    return build_index_folder(sources, out, model, kind=kind, eval_params=EvalParams(), device="cpu",
                              bm25_params=Bm25Params(), hybrid_params=HybridParams(), part_rows=part_rows,
                              force=force, show_progress=False,
                              log=(logs.append if logs is not None else lambda line: None))


@pytest.mark.parametrize("format", ["parquet", "jsonl", "tsv"])
def test_dense_hits_are_those_of_searching_the_texts_directly(tmp_path, model, format):
    collection = tmp_path / f"c.{format}"
    write_collection(TABLE, collection, format)
    manifest = build([collection], tmp_path / "index", model)
    assert manifest["passages"] == 8 and manifest["rows_read"] == 8
    assert manifest["model"]["path"] == str(model.resolve())

    searcher = Searcher.from_index(tmp_path / "index", device="cpu")
    direct = Searcher.from_model(model, "cpu")
    for query in ["flea life cycle", "coffee", "bank interest rate"]:
        hits = searcher.search(query, 8)  # all 8: which of several tied passages makes a cut is faiss' choice
        expected = direct.search(query, 8, documents=TABLE["text"].tolist())
        assert [h.pid for h in hits] == [TABLE["id"][int(h.pid)] for h in expected]
        assert [h.score for h in hits] == pytest.approx([h.score for h in expected], abs=1e-6)
        assert [h.text for h in hits] == [h.text for h in expected]
    assert searcher.search("flea life cycle", 1)[0].pid == "d1"


def test_bm25_hits_are_the_bm25_baselines(tmp_path, model):
    collection = tmp_path / "c.parquet"
    write_collection(TABLE, collection, "parquet")
    build([collection], tmp_path / "index", model)
    searcher = Searcher.from_index(tmp_path / "index", device="cpu")
    for query in ["coffee", "bank interest rate", "the flea"]:
        hits = searcher.search(query, 10, mode="bm25")
        run = bm25_run(pd.DataFrame({"qid": ["q"], "text": [query]}), TABLE.rename(columns={"id": "pid"}),
                       Bm25Params())
        assert [h.pid for h in hits] == run["pid"].tolist()
        assert [h.score for h in hits] == pytest.approx(run["score"].tolist(), rel=1e-6)
    assert searcher.search("the", 10, mode="bm25") == []  # a stopword matches nothing


def test_hybrid_fuses_dense_and_bm25(tmp_path, model):
    collection = tmp_path / "c.parquet"
    write_collection(TABLE, collection, "parquet")
    build([collection], tmp_path / "index", model)
    searcher = Searcher.from_index(tmp_path / "index", device="cpu")
    hits = searcher.search("coffee bean", 3, mode="hybrid")
    # d6 has both words (top of dense and of BM25: fused 1.0); d7 only "coffee".
    assert [h.pid for h in hits][:2] == ["d6", "d7"]
    assert hits[0].score == pytest.approx(1.0)
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


def test_several_collections_with_bad_rows_skip_and_count_them(tmp_path, model):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.tsv"
    write_collection(TABLE.iloc[:5], first, "jsonl")
    extra = pd.DataFrame({"id": ["d1", "e1", "e2", "e3"], "text": ["repeat of d1", "tea leaves", " ", "oven bread"]})
    write_collection(pd.concat([TABLE.iloc[5:], extra]), second, "tsv")
    manifest = build([first, second], tmp_path / "index", model)
    assert manifest["rows_read"] == 12 and manifest["passages"] == 10
    assert manifest["skipped"] == {"missing_id": 0, "empty_text": 1, "duplicate_id": 1}
    assert [c["kept"] for c in manifest["collections"]] == [5, 5]
    stored = pd.read_parquet(tmp_path / "index" / PASSAGES)
    assert stored["id"].tolist() == [*TABLE["id"], "e1", "e3"]
    assert stored.loc[1, "text"] == TABLE["text"][1]  # the first d1 wins


def test_a_collection_of_only_bad_rows_is_an_error(tmp_path, model):
    collection = tmp_path / "c.jsonl"
    collection.write_text('{"id": "a", "text": ""}\n{"id": null, "text": "x"}\n')
    with pytest.raises(TwoTowerError, match="no passages to index: all 2 rows were skipped "
                                            r"\(1 missing id, 1 empty text\)"):
        build([collection], tmp_path / "index", model)
    assert not (tmp_path / "index").exists()


def test_an_interrupted_build_leaves_no_index_and_a_rerun_resumes(tmp_path, model, monkeypatch):
    collection = tmp_path / "c.parquet"
    write_collection(TABLE, collection, "parquet")
    calls = []
    real = Searcher.embed_passages

    def embed_then_die(self, texts, show_progress=True):
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C (or a kill, for the files on disk) does mid-build
        return real(self, texts, show_progress)

    monkeypatch.setattr(Searcher, "embed_passages", embed_then_die)
    with pytest.raises(KeyboardInterrupt):
        build([collection], tmp_path / "index", model)
    assert not (tmp_path / "index").exists()
    with pytest.raises(TwoTowerError, match="a build was interrupted: rerun"):
        Searcher.from_index(tmp_path / "index")
    assert len(list((partial_path(tmp_path / "index") / "parts").glob("*.json"))) == 1

    calls.clear()
    monkeypatch.setattr(Searcher, "embed_passages", lambda self, texts, show_progress=True:
                        calls.append(len(texts)) or real(self, texts, show_progress))
    logs = []
    build([collection], tmp_path / "index", model, logs=logs)
    assert calls == [3, 2]  # parts 2 and 3 of 3, 3 and 2 rows; part 1 was kept
    assert "resuming the build" in logs[0]
    assert not partial_path(tmp_path / "index").exists()

    build([collection], tmp_path / "whole", model)
    for name in ("vectors.npy", "passages.parquet", "dense.faiss"):
        assert (tmp_path / "index" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_a_partial_build_of_other_inputs_is_kept_unless_forced(tmp_path, model, monkeypatch):
    collection = tmp_path / "c.parquet"
    write_collection(TABLE, collection, "parquet")
    monkeypatch.setattr(indexer_module, "_join_vectors", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        build([collection], tmp_path / "index", model)
    monkeypatch.undo()
    partial = partial_path(tmp_path / "index")
    done = sorted(path.name for path in (partial / "parts").iterdir())
    write_collection(TABLE.iloc[:4], collection, "parquet")  # the collection changed meanwhile
    left = "was left by a build of other collections, model or part size: pass --force to discard it"
    with pytest.raises(TwoTowerError, match=rf"^{re.escape(str(partial))} {left}$"):
        build([collection], tmp_path / "index", model)
    assert sorted(path.name for path in (partial / "parts").iterdir()) == done  # untouched
    logs = []
    manifest = build([collection], tmp_path / "index", model, force=True, logs=logs)
    assert logs[0].startswith("starting clean")
    assert manifest["passages"] == 4


def test_an_old_folder_is_deleted_only_with_force(tmp_path, model):
    collection = tmp_path / "c.parquet"
    write_collection(TABLE, collection, "parquet")
    old = tmp_path / "index.old"
    old.mkdir()
    (old / "notes.txt").write_text("mine")
    message = "exists (a replaced index is moved there while a build finishes): move it away, or pass --force to delete it"
    with pytest.raises(TwoTowerError, match=rf"^{re.escape(str(old))} {re.escape(message)}$"):
        build([collection], tmp_path / "index", model)
    assert (old / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "index").exists() and not partial_path(tmp_path / "index").exists()
    assert build([collection], tmp_path / "index", model, force=True)["passages"] == 8
    assert not old.exists()


def test_an_existing_index_is_replaced_only_with_force(tmp_path, model):
    collection = tmp_path / "c.parquet"
    write_collection(TABLE, collection, "parquet")
    build([collection], tmp_path / "index", model)
    with pytest.raises(TwoTowerError, match="already holds an index: pass --force"):
        build([collection], tmp_path / "index", model)
    write_collection(TABLE.iloc[:2], collection, "parquet")
    assert build([collection], tmp_path / "index", model, force=True)["passages"] == 2
    assert Searcher.from_index(tmp_path / "index", device="cpu").size == 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(TwoTowerError, match="exists and is not a twotower index"):
        build([collection], tmp_path / "other", model)


def test_a_second_build_of_one_out_fails_at_once_naming_the_lock_and_its_pid(tmp_path, model):
    collection = tmp_path / "c.parquet"
    write_collection(TABLE, collection, "parquet")
    lock = tmp_path / "index.lock"
    with open(lock, "w") as held:  # what a running build holds: flock, with its pid written
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        with pytest.raises(TwoTowerError, match=rf"^another build of {re.escape(str(tmp_path / 'index'))} is "
                                                rf"running \(pid 4242, holding {re.escape(str(lock))}\)"):
            build([collection], tmp_path / "index", model)
        assert not partial_path(tmp_path / "index").exists()  # it stopped before starting any work
    assert build([collection], tmp_path / "index", model)["passages"] == 8  # released: a build runs


def test_a_lock_file_left_by_a_killed_build_does_not_block_the_next(tmp_path, model):
    collection = tmp_path / "c.parquet"
    write_collection(TABLE, collection, "parquet")
    (tmp_path / "index.lock").write_text("999999\n")  # as SIGKILL leaves it: the file, no flock
    assert build([collection], tmp_path / "index", model)["passages"] == 8
    assert not (tmp_path / "index.lock").exists()


def test_searching_with_another_model_is_refused_naming_both(tmp_path, model):
    collection = tmp_path / "c.parquet"
    write_collection(TABLE, collection, "parquet")
    build([collection], tmp_path / "index", model)
    other = tmp_path / "other.pt"
    make_model(other, seed=1)
    with pytest.raises(TwoTowerError, match=rf"built with model {model.resolve()} .* but {other} is a different model"):
        Searcher.from_index(tmp_path / "index", other, device="cpu")
    model.rename(tmp_path / "moved.pt")
    with pytest.raises(TwoTowerError, match="model not found: .*pass --model"):
        Searcher.from_index(tmp_path / "index", device="cpu")
    assert Searcher.from_index(tmp_path / "index", tmp_path / "moved.pt", device="cpu").size == 8


def test_a_damaged_index_folder_is_one_line(tmp_path, model):
    collection = tmp_path / "c.parquet"
    write_collection(TABLE, collection, "parquet")
    build([collection], tmp_path / "index", model)
    manifest_path = tmp_path / "index" / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "passages": 9}))
    with pytest.raises(TwoTowerError, match="passages.parquet has 8 rows but the manifest says 9"):
        Searcher.from_index(tmp_path / "index", device="cpu")
    del manifest["dense"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(TwoTowerError, match="manifest.json is incomplete"):
        Searcher.from_index(tmp_path / "index", device="cpu")
    manifest_path.write_text("{")
    with pytest.raises(TwoTowerError, match="is not valid JSON"):
        Searcher.from_index(tmp_path / "index", device="cpu")
    manifest_path.unlink()
    with pytest.raises(TwoTowerError, match="is not a twotower index: it has no manifest.json"):
        Searcher.from_index(tmp_path / "index", device="cpu")


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "ivf_pq"])
def test_approximate_indexes_find_the_same_top_hit(tmp_path, model, kind):
    collection = tmp_path / "c.parquet"
    write_collection(LARGER_TABLE if kind == "ivf_pq" else TABLE, collection, "parquet")
    build([collection], tmp_path / "index", model, kind=kind)
    searcher = Searcher.from_index(tmp_path / "index", device="cpu")
    assert searcher.manifest["dense"]["kind"] == kind
    assert searcher.search("flea life cycle", 1)[0].pid == "d1"


def test_index_and_search_commands(tmp_path, model, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the defaults
    collection = tmp_path / "c.tsv"
    write_collection(pd.concat([TABLE, TABLE.iloc[:1]]), collection, "tsv")
    main(["index", str(collection), "--out", "index", "--model", str(model), "--part-rows", "4",
          "--device", "cpu", "-q"])
    assert capsys.readouterr().out.startswith("indexed 8 passages of 9 rows (skipped: 1 duplicate id) into index")
    assert json.loads((tmp_path / "index" / MANIFEST).read_text())["dense"]["kind"] == "exact"

    main(["search", "--index", "index", "--mode", "bm25", "-k", "2", "bank loan"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("1. [d4] ") and lines[0].endswith("a bank loan and its interest rate")
    assert lines[1].startswith("2. [d3] ")


@pytest.mark.parametrize("argv, message", [
    (["search", "--mode", "bm25", "coffee"], "--mode bm25 needs --index DIR"),
    (["search", "--index", "nowhere", "coffee"], "index folder not found: nowhere"),
    (["index", "c.parquet", "--out", "i", "--index", "flat"],
     "--index 'flat' is not one of auto, exact, hnsw, ivf, ivf_sq8, ivf_pq"),
    (["index", "c.parquet", "--out", "i", "--index", "exact", "--nprobe", "8"],
     "--nprobe must be a positive integer, for an ivf index (got 8 with --index exact)"),
    (["index", "c.parquet", "--out", "i", "--nprobe", "0"], "--nprobe must be a positive integer"),
    (["index", "c.parquet", "--out", "i", "--params", "none.yaml"], "params file not found: none.yaml"),
    (["index", "missing.jsonl", "--out", "i"], "collection not found: missing.jsonl"),
    (["index", "c.parquet", "--out", "i", "--model", "none.pt"], "model not found: none.pt"),
    (["index", "c.parquet", "--out", "i", "--part-rows", "0"], "--part-rows must be at least 1, got 0"),
])
def test_bad_command_lines_fail_with_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    write_collection(TABLE, tmp_path / "c.parquet", "parquet")
    with pytest.raises(SystemExit) as exit:
        main(argv)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.count("\n") == 1 and message in err


def test_npy_rows_reads_what_np_load_does(tmp_path):
    array = np.arange(40, dtype=np.float32).reshape(10, 4)
    np.save(tmp_path / "v.npy", array)
    rows = NpyRows(tmp_path / "v.npy")
    assert (len(rows), rows.shape, rows.dtype) == (10, (10, 4), np.float32)
    for key in (slice(0, 3), slice(7, 20), slice(4, 4), np.array([9, 0, 3]), np.array([], dtype=int)):
        np.testing.assert_array_equal(rows[key], array[key])
    np.testing.assert_array_equal(rows.take(np.array([9, 0, 3, 3])), array[[9, 0, 3, 3]])
    assert rows.take(np.array([], dtype=int)).shape == (0, 4)
    with pytest.raises(IndexError, match="row 10 out of range for v.npy"):
        rows.take([10])
    np.save(tmp_path / "flat.npy", np.zeros(3))
    with pytest.raises(TwoTowerError, match="expected a C-ordered 2-D array"):
        NpyRows(tmp_path / "flat.npy")


def test_a_passage_store_reads_the_file_it_opened_after_another_replaces_it(tmp_path):
    """What a server's old searcher needs while `twotower index --force` swaps the folder."""
    path = tmp_path / PASSAGES
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["old a", "old b"]}), path)
    store = PassageStore(path, cache_groups=0)  # no cache: every text is read from the file
    pq.write_table(pa.table({"id": ["x", "y", "z"], "text": ["new x", "new y", "new z"]}), tmp_path / "new")
    os.replace(tmp_path / "new", path)  # as the build's rename does
    texts = []
    reader = threading.Thread(target=lambda: texts.extend(store.texts(np.array([1, 0]))))  # opens its reader now
    reader.start()
    reader.join()
    assert texts == ["old b", "old a"]
    assert store.texts(np.array([0])) == ["old a"] and list(store.ids) == ["a", "b"]


def test_a_killed_index_command_resumes_to_the_same_index(tmp_path, model):
    """SIGKILL, as the OOM killer or a lost machine would: no `finally` runs, a part may be half
    written in its temporary. The next run must resume and give what an unbroken run gives."""
    collection = tmp_path / "c.parquet"
    rows = pd.DataFrame({"id": [f"r{i}" for i in range(30_000)],
                         "text": [TABLE["text"][i % 8] + f" {i % 97}" for i in range(30_000)]})
    write_collection(rows, collection, "parquet")
    command = [sys.executable, "-m", "twotower.cli", "index", str(collection), "--model", str(model),
               "--part-rows", "500", "--device", "cpu", "-q", "--params", str(tmp_path / "p.yaml")]
    (tmp_path / "p.yaml").write_text("bm25:\n  k1: 0.9\n")
    parts = partial_path(tmp_path / "index") / "parts"
    process = subprocess.Popen([*command, "--out", str(tmp_path / "index")], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (parts.is_dir() and len(list(parts.glob("*.json"))) >= 3):
        assert process.poll() is None and time.monotonic() < deadline, "the build ended before it was killed"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "index").exists()
    done = len(list(parts.glob("*.json")))
    assert 3 <= done < 60

    resumed = subprocess.run([*command, "--out", str(tmp_path / "index")], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming the build in {partial_path(tmp_path / 'index')}: {done} part(s)" in resumed.stdout
    assert not partial_path(tmp_path / "index").exists()
    subprocess.run([*command, "--out", str(tmp_path / "whole")], check=True, capture_output=True)
    for name in ("vectors.npy", "passages.parquet", "dense.faiss"):
        assert (tmp_path / "index" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_auto_gives_a_small_collection_exact_search(tmp_path, model):
    write_collection(TABLE, tmp_path / "c.parquet", "parquet")
    manifest = build([tmp_path / "c.parquet"], tmp_path / "index", model, kind="auto")
    assert manifest["dense"]["kind"] == "exact"


def test_auto_above_the_thresholds_builds_a_calibrated_sq8_index(tmp_path, model, monkeypatch):
    from twotower.serve import index_plan

    monkeypatch.setattr(index_plan, "EXACT_MAX", 2)
    monkeypatch.setattr(index_plan, "FLOAT_MAX", 4)
    plan_index = index_plan.plan_index
    monkeypatch.setattr(index_plan, "plan_index", lambda n, dim: plan_index(n, dim + 1))  # an odd dimension
    write_collection(TABLE, tmp_path / "c.parquet", "parquet")
    manifest = build([tmp_path / "c.parquet"], tmp_path / "index", model, kind="auto")
    dense = manifest["dense"]
    assert dense["kind"] == "ivf_sq8" and dense["ivf_nlist"] == 1 and dense["ivf_nprobe"] == 1
    assert dense["recall_at_10"] >= 0.97 and dense["recall_queries"] == 8
    searcher = Searcher.from_index(tmp_path / "index", device="cpu")
    direct = Searcher.from_model(model, "cpu")
    hits = searcher.search("coffee bean", 3)
    expected = direct.search("coffee bean", 3, documents=TABLE["text"].tolist())
    assert [h.score for h in hits] == pytest.approx([h.score for h in expected], abs=0.02)  # 8-bit vectors


def test_a_pq_index_serves_exact_scores_and_needs_its_vectors(tmp_path, model, monkeypatch):
    from twotower.serve import index_plan

    monkeypatch.setattr(index_plan, "EXACT_MAX", 2)
    monkeypatch.setattr(index_plan, "FLOAT_MAX", 4)
    table = LARGER_TABLE
    write_collection(table, tmp_path / "c.parquet", "parquet")
    manifest = build([tmp_path / "c.parquet"], tmp_path / "index", model, kind="auto", part_rows=16)
    assert manifest["dense"]["kind"] == "ivf_pq" and manifest["dense"]["recall_at_10"] >= 0.9  # ties: joined texts
    searcher = Searcher.from_index(tmp_path / "index", device="cpu")
    expected = Searcher.from_model(model, "cpu").search("coffee bean", 3, documents=table["text"].tolist())
    hits = searcher.search("coffee bean", 3)
    assert [h.pid for h in hits] == [table["id"][int(h.pid)] for h in expected]
    assert [h.score for h in hits] == pytest.approx([h.score for h in expected], abs=1e-5)  # re-ranked exactly
    (tmp_path / "index" / "vectors.npy").unlink()
    with pytest.raises(TwoTowerError, match="vectors.npy not found \\(feedback and ivf_pq searches read it\\): rebuild the index"):
        Searcher.from_index(tmp_path / "index", device="cpu")


def test_texts_come_from_the_text_blob_as_the_parquet_has_them(tmp_path, model):
    table = pd.DataFrame({"id": ["a", "b", "c", "d"], "text": ["naïve café ☕ coffee", "bank loan", "x", "日本語 text"]})
    write_collection(table, tmp_path / "c.parquet", "parquet")
    # The second source repeats every id: its parts keep no row, and the blob must not care.
    build([tmp_path / "c.parquet", tmp_path / "c.parquet"], tmp_path / "index", model, part_rows=2)
    store = Searcher.from_index(tmp_path / "index", device="cpu").store
    assert store._texts_fd is not None
    assert store.texts([3, 0, 2, 1]) == ["日本語 text", "naïve café ☕ coffee", "x", "bank loan"]
    for name in ("texts.bin", "text_offsets.npy"):  # a folder built before the blob existed
        (tmp_path / "index" / name).unlink()
    old = Searcher.from_index(tmp_path / "index", device="cpu").store
    assert old._texts_fd is None and old.texts([3, 0, 2, 1]) == store.texts([3, 0, 2, 1])


def test_short_ids_are_stored_fixed_width_and_long_ones_as_objects():
    """Fixed-width ids hold no Python objects, so forked server workers never copy their pages;
    ids too long for that stay objects rather than padding every row to the longest."""
    import pyarrow as pa

    from twotower.serve.index_folder import MAX_FIXED_ID, compact_ids

    short = compact_ids(pa.chunked_array([["7", "8841823"], ["d12"]]))
    assert short.dtype == np.dtype("<U7") and short.tolist() == ["7", "8841823", "d12"]
    long_id = "x" * (MAX_FIXED_ID + 1)
    assert compact_ids(pa.chunked_array([["a", long_id]])).tolist() == ["a", long_id]
    assert compact_ids(pa.chunked_array([["a", long_id]])).dtype == object
    assert len(compact_ids(pa.chunked_array([], type=pa.string()))) == 0
