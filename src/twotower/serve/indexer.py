"""Build an index folder (`twotower.serve.index_folder`) from collection files, resumably.

The build works in `DIR.partial` and renames it onto DIR only when the manifest is written,
so a killed run never leaves a folder that looks complete. Passages are embedded in parts
of `part_rows` rows, each saved (vectors, ids and texts, then a json of its row counts that
marks it done) before the next is read; a rerun with the same collections, model and part
size skips the parts already done; one with anything else stops, as an existing DIR.old
does: nothing a user may want is deleted without --force. Memory holds
one part plus the ids seen so far (to skip repeats); the final vectors are written part by
part and fed to faiss in blocks read from that file.
"""

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from twotower.retrieval import ann, bm25_index

from twotower.serve import index_plan, lockfile
from twotower.serve.collection import RowCounts, Source, clean_batch, describe_skipped, read_batches
from twotower.retrieval.ann import IVF_KINDS
from twotower.errors import TwoTowerError
from twotower.params import FeedbackParams
from twotower.files import atomic_path, npy_writer, save_npy, write_json, write_parquet
from twotower.serve.index_folder import (BM25, DENSE, FORMAT, MANIFEST, PASSAGES, TEXT_GROUP_ROWS, TEXT_OFFSETS, TEXTS,
                                   VECTORS, NpyRows, file_sha256, partial_path)
from twotower.serve.search import Searcher

PART_ROWS = 65536
TEACHER_PART_ROWS = 4096
STATE = "state.json"
PARTS = "parts"
PASSAGE_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string())])


def build_index_folder(sources: list[Source], out, model_path, *, kind: str, eval_params, bm25_params,
                       hybrid_params, feedback=FeedbackParams(), device="auto", part_rows: int | None = None, force: bool = False,
                       nprobe: int | None = None, show_progress: bool = True, log=print) -> dict:
    """Index every passage of `sources` with the model at `model_path` into `out`; returns the
    manifest. `kind` auto sizes the faiss index to the collection (`twotower.serve.index_plan`),
    calibrating an ivf index's nprobe unless `nprobe` is given; a named kind takes
    `eval_params`' faiss settings (hnsw_m, ivf_nlist, ivf_nprobe, ...). `bm25_params`
    the BM25 index's, `hybrid_params` what hybrid search fuses with, `feedback` how dense
    search expands a query (all three recorded in the manifest for searches). The model is let go
    once the passages are embedded, before the faiss and BM25 indexes take their memory.
    The whole build holds `lock_path(out)`, so a second build of `out` fails at once.
    Without `part_rows`, parts are PART_ROWS rows, or TEACHER_PART_ROWS when the teacher
    embeds the passages (~70 s a part on 2 cores, so a killed build loses little)."""
    out = Path(out)
    with lockfile.held(lock_path(out), f"build of {out}"):
        _check_out(out, force)
        started = time.perf_counter()
        searcher = Searcher.from_model(model_path, device)
        part_rows = part_rows or (TEACHER_PART_ROWS if searcher.model.teacher_passages else PART_ROWS)
        state = {"format": FORMAT, "model_sha256": file_sha256(model_path), "part_rows": part_rows,
                 "collections": [source.fingerprint for source in sources]}
        dim = searcher.model.output_dim
        ckpt_info = {"path": str(Path(model_path).resolve()), "sha256": state["model_sha256"],
                     "output_dim": dim, "max_len_query": searcher.max_len_query,
                     "max_len_passage": searcher.max_len_passage,
                     "passage_encoder": searcher.model.cfg.passage_encoder, "space": searcher.model.cfg.teacher}
        work = _work_folder(out, state, force, log)
        counts, per_source = _embed_parts(sources, work / PARTS, searcher, part_rows, show_progress)
        if counts.kept == 0:
            raise TwoTowerError(f"no passages to index: all {counts.read} rows were skipped "
                                f"({describe_skipped(counts.skipped) or 'none'})")
        kind, settings, nprobe = _dense_settings(kind, counts.kept, dim, eval_params, nprobe)
        probes = _calibration_queries(work / PARTS, searcher) if kind in IVF_KINDS else None
        del searcher
        embedded = time.perf_counter()

        parts = sorted((work / PARTS).glob("*.json"))
        _join_vectors(parts, work / VECTORS, counts.kept, dim)
        _join_passages(parts, work, counts.kept)
        _build_dense(work, kind, settings, probes, nprobe, part_rows, show_progress, log)
        dense_done = time.perf_counter()

        texts = (pd.read_parquet(part.with_suffix(".parquet"), columns=["text"])["text"].tolist() for part in parts)
        bm25_index.save(bm25_index.build(texts, bm25_params, counts.kept, show_progress), work / BM25)
        finished = time.perf_counter()

        manifest = {
            "format": FORMAT,
            "model": ckpt_info,
            "collections": [{**source.fingerprint, **asdict(c)} for source, c in zip(sources, per_source)],
            "passages": counts.kept,
            "rows_read": counts.read,
            "skipped": counts.skipped,
            "dense": {"kind": kind, **settings},
            "bm25": asdict(bm25_params),
            "hybrid": asdict(hybrid_params),
            "feedback": asdict(feedback),
            "seconds": {"embed": round(embedded - started, 1), "dense_index": round(dense_done - embedded, 1),
                        "bm25_index": round(finished - dense_done, 1)},
            "build": {"id": uuid.uuid4().hex[:12],  # which build a server serves (its /health)
                      "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        }
        write_json(manifest, work / MANIFEST)
        shutil.rmtree(work / PARTS)
        (work / STATE).unlink()
        _replace(work, out, force)
        return manifest


def lock_path(out) -> Path:
    """The lock a build of `out` holds: a sibling, as it must exist before `out` does."""
    out = Path(out)
    return out.with_name(out.name + ".lock")


def _build_dense(work: Path, kind: str, settings: dict, probes, nprobe, part_rows: int, show_progress: bool,
                 log) -> None:
    """Write the faiss index of work's vectors; an ivf index's nprobe is calibrated on the
    query vectors `probes` (or `nprobe` kept), and `settings` gains what the manifest says."""
    vectors = NpyRows(work / VECTORS)
    if show_progress:
        log(f"building the {kind} faiss index of {len(vectors)} vectors")
    dense = ann.build_index(vectors, kind, **settings, block_rows=part_rows)
    if kind in IVF_KINDS:
        calibration = index_plan.calibrate_nprobe(dense, vectors, probes, nprobe=nprobe, block_rows=part_rows,
                                                  refine=vectors if kind in ann.REFINED_KINDS else None)
        settings.update(ivf_nlist=int(dense.nlist), ivf_nprobe=calibration.nprobe,
                        recall_at_10=calibration.recall, recall_queries=calibration.queries)
        if show_progress:
            log(f"nprobe {calibration.nprobe} of {dense.nlist} cells: recall@10 {calibration.recall} against "
                f"exact search for {calibration.queries} pseudo-queries")
    ann.save_index(dense, work / DENSE)


def _calibration_queries(parts: Path, searcher, n: int = index_plan.CALIBRATION_QUERIES,
                         seed: int = 0) -> np.ndarray:
    """Query vectors of `index_plan.pseudo_queries` from n passages drawn (seeded) from the parts."""
    files = sorted(parts.glob("*.json"))
    kept = [json.loads(file.read_text())["kept"] for file in files]
    starts = np.cumsum([0, *kept])
    rows = np.sort(np.random.default_rng(seed).choice(starts[-1], size=min(n, starts[-1]), replace=False))
    texts = []
    for file, first, last in zip(files, starts[:-1], starts[1:]):
        mine = rows[(rows >= first) & (rows < last)] - first
        if len(mine):
            texts += pd.read_parquet(file.with_suffix(".parquet"), columns=["text"])["text"].iloc[mine].tolist()
    return np.concatenate([searcher.embed_query(query) for query in index_plan.pseudo_queries(texts, seed)])


def _dense_settings(kind: str, n: int, dim: int, eval_params, nprobe: int | None) -> tuple[str, dict, int | None]:
    """(kind, `ann.build_index` settings, nprobe): `auto` follows `index_plan`'s rule for n
    vectors of `dim` dimensions and leaves nprobe (None: calibrate) to the user; a named kind takes eval params'
    settings, nprobe included unless given, as the pipeline's evaluate stage does."""
    settings = ann.settings(eval_params)
    if kind != "auto":
        return kind, settings, (nprobe or settings["ivf_nprobe"]) if kind in IVF_KINDS else nprobe
    plan = index_plan.plan_index(n, dim)
    settings.update(ivf_nlist=plan.nlist, train_per_cell=plan.train_per_cell,
                    kmeans_iterations=plan.kmeans_iterations)
    return plan.kind, settings, nprobe


def _check_out(out: Path, force: bool) -> None:
    if out.is_file() or out.is_symlink():
        raise TwoTowerError(f"--out {out} is a file, not a folder")
    if out.is_dir() and (out / MANIFEST).is_file():
        if not force:
            raise TwoTowerError(f"{out} already holds an index: pass --force to rebuild it")
    elif out.is_dir() and any(out.iterdir()):
        raise TwoTowerError(f"{out} exists and is not a twotower index: choose another --out")
    _check_old(out, force)


def _old_path(out: Path) -> Path:
    return out.with_name(out.name + ".old")


def _check_old(out: Path, force: bool) -> None:
    """Checked before a build as well as at its end, so a user's DIR.old stops it before the
    hours of embedding, not after."""
    old = _old_path(out)
    if (old.exists() or old.is_symlink()) and not force:
        raise TwoTowerError(f"{old} exists (a replaced index is moved there while a build finishes): "
                            "move it away, or pass --force to delete it")


def _work_folder(out: Path, state: dict, force: bool, log) -> Path:
    """`out`'s partial folder: kept if a killed run left it for the same inputs, else new.
    One left for other inputs is discarded only with `force`: it may be hours of work."""
    work = partial_path(out)
    if work.is_dir():
        try:
            previous = json.loads((work / STATE).read_text())
        except (OSError, ValueError):
            previous = None
        if previous == state:
            done = len(list((work / PARTS).glob("*.json")))
            log(f"resuming the build in {work}: {done} part(s) of {state['part_rows']} rows already done")
            return work
        left = ("was left by a build of other collections, model or part size" if previous is not None
                else f"has no readable {STATE}: it is not a build's, or one killed as it began")
        if not force:
            raise TwoTowerError(f"{work} {left}: pass --force to discard it")
        log(f"starting clean: {work} {left}")
        shutil.rmtree(work)
    (work / PARTS).mkdir(parents=True)
    write_json(state, work / STATE)
    return work


def _embed_parts(sources, parts: Path, searcher, part_rows: int, show_progress: bool):
    """Embed every row not yet in a finished part; returns (all counts, counts per source)."""
    seen: set[str] = set()
    counts, per_source = RowCounts(), []
    total = sum(source.rows or 0 for source in sources) or None
    with tqdm(total=total, desc="indexing", unit="row", disable=not show_progress) as progress:
        for number, source in enumerate(sources):
            source_counts = RowCounts()
            for batch, (ids, texts) in enumerate(read_batches(source, part_rows)):
                name = parts / f"{number:03d}-{batch:06d}"
                done = name.with_suffix(".json")
                if done.is_file():
                    part_counts = RowCounts(**json.loads(done.read_text()))
                    seen.update(pd.read_parquet(name.with_suffix(".parquet"), columns=["id"])["id"])
                else:
                    kept_ids, kept_texts, part_counts = clean_batch(ids, texts, seen)
                    vectors = (searcher.embed_passages(kept_texts, show_progress=False) if kept_texts
                               else np.empty((0, searcher.model.output_dim), dtype=np.float32))
                    save_npy(vectors.astype(np.float32, copy=False), name.with_suffix(".npy"))
                    write_parquet(pd.DataFrame({"id": kept_ids, "text": kept_texts}, dtype=object),
                                  name.with_suffix(".parquet"))
                    write_json(asdict(part_counts), done)
                source_counts.add(part_counts)
                progress.update(len(ids))
                progress.set_postfix(skipped=sum(counts.skipped.values()) + sum(source_counts.skipped.values()))
            counts.add(source_counts)
            per_source.append(source_counts)
    return counts, per_source


def _join_vectors(parts, path: Path, rows: int, dim: int) -> None:
    with npy_writer(path, (rows, dim), np.float32) as write:
        for part in parts:
            write(np.load(part.with_suffix(".npy")))


def _join_passages(parts, work: Path, rows: int) -> None:
    """Each part's (id, text) read once into the folder's two text stores: PASSAGES, one parquet
    in row groups of TEXT_GROUP_ROWS, and TEXTS (UTF-8 texts back to back) with TEXT_OFFSETS
    [rows + 1], which `PassageStore` serves hits from."""
    ends, written = [np.zeros(1, dtype=np.int64)], 0
    with (atomic_path(work / PASSAGES) as parquet_tmp, pq.ParquetWriter(parquet_tmp, PASSAGE_SCHEMA) as writer,
          atomic_path(work / TEXTS) as blob_tmp, open(blob_tmp, "wb") as blob):
        for part in parts:
            table = pq.read_table(part.with_suffix(".parquet")).select(["id", "text"]).cast(PASSAGE_SCHEMA)
            writer.write_table(table, row_group_size=TEXT_GROUP_ROWS)
            encoded = [text.encode("utf-8") for text in table.column("text").to_pylist()]
            blob.write(b"".join(encoded))
            lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
            ends.append(written + np.cumsum(lengths))
            written += int(lengths.sum())
    offsets = np.concatenate(ends)
    if len(offsets) != rows + 1:
        raise ValueError(f"{work / TEXTS}: {len(offsets) - 1} texts joined, {rows} expected")
    save_npy(offsets, work / TEXT_OFFSETS)


def _replace(work: Path, out: Path, force: bool) -> None:
    """Rename the finished build onto `out`, moving an index it replaces aside first."""
    _check_old(out, force)
    old = _old_path(out)
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        os.replace(out, old)
    os.replace(work, out)
    if old.exists():
        shutil.rmtree(old)

