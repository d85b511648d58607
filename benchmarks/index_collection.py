"""`twotower index` on a large synthetic collection: wall time, peak RSS, passages/s.

Writes (once) a parquet collection of `--passages` synthetic passages with MS MARCO-like
lengths (log-normal, median 50 words, cut at 3-400, as `make_large_input.py`) of GloVe words
drawn Zipf-like, then runs the real command in a child process and reads its peak RSS
from the kernel (`RUSAGE_CHILDREN`). The manifest's own timings split the run into
embedding (reading, tokenizing, the passage tower, writing parts), the faiss index and BM25.

    python benchmarks/index_collection.py                       # 1,000,000 passages, 1,000 topics, auto
    python benchmarks/index_collection.py --topics 0            # random words: no topic structure
    python benchmarks/index_collection.py --passages 100000 --kind hnsw
    python benchmarks/index_collection.py --real data/raw/collection.parquet data/prepared/test/passages.parquet

With `--real`, passages are remixed from the sentences of real ones instead of random words
(`write_sentence_collection`): closer to what a dense index meets in a real collection.
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from make_large_input import Words


def write_collection(path: Path, passages: int, seed: int, topics: int = 0, chunk: int = 50_000) -> None:
    """With `topics`, each passage is about one of them: half its words come from that topic's
    50 (drawn from GloVe ranks 1,000-50,000), the rest Zipf-like as before. Real passages
    are about something, and a dense index's cells follow what they are about; random
    words alone give vectors with no structure to cluster, the worst case for an ivf index."""
    rng = np.random.default_rng(seed)
    words = Words(rng)
    topic_words = rng.integers(1_000, 50_000, size=(topics, 50)) if topics else None
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, passages, chunk):
            n = min(chunk, passages - start)
            lengths = np.clip(rng.lognormal(np.log(50), 0.45, n), 3, 400).astype(np.int64)
            ids = pa.array([f"s{i}" for i in range(start, start + n)])
            if topic_words is None:
                texts = words.texts(lengths)
            else:
                word_ids = np.searchsorted(words.cdf, rng.random(int(lengths.sum())))
                topic = np.repeat(rng.integers(0, topics, n), lengths)
                on_topic = rng.random(len(word_ids)) < 0.5
                word_ids[on_topic] = topic_words[topic[on_topic], rng.integers(0, 50, int(on_topic.sum()))]
                offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
                texts = pc.binary_join(pa.ListArray.from_arrays(offsets, words.words.take(word_ids)), " ")
            writer.write_table(pa.Table.from_arrays([ids, texts], schema=schema))
    os.replace(tmp, path)


SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def real_sentences(paths: list[Path]) -> list[list[str]]:
    """Each real passage of `paths` (parquet with a `text` or `passage_text` column) as its sentences."""
    out = []
    for path in paths:
        columns = pq.read_schema(path).names
        column = "text" if "text" in columns else "passage_text"
        for text in pq.read_table(path, columns=[column]).column(0).to_pylist():
            sentences = [s for s in SENTENCE_END.split(text.strip()) if s]
            if sentences:
                out.append(sentences)
    return out


def write_sentence_collection(path: Path, passages: int, seed: int, sources: list[Path],
                              chunk: int = 50_000) -> None:
    """Passages remixed from real ones: each keeps every sentence of one real passage with
    probability 0.7 (at least one, in order), and a third of them end with 1-2 sentences of another
    real passage; no text twice (a duplicate's tie with its twin would make recall against exact
    search a coin toss). A million of them from 57k real passages is ~17 variants of each, like the
    several passages one web page gives MS MARCO, each about what its source is about: the
    vectors group the way real text does, which random words cannot give an ann index."""
    rng = np.random.default_rng(seed)
    sources_sentences = real_sentences(sources)
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    tmp = path.with_suffix(".tmp")
    seen = set()
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, passages, chunk):
            n = min(chunk, passages - start)
            first = rng.integers(0, len(sources_sentences), n)
            second = rng.integers(0, len(sources_sentences), n)
            extra = rng.integers(0, 3, n) * (rng.random(n) < 0.5)
            texts = []
            while len(texts) < n:
                for a, b, k in zip(first, second, extra):
                    own = sources_sentences[a]
                    kept = [s for s in own if rng.random() < 0.7] or [own[int(rng.integers(len(own)))]]
                    text = " ".join(kept + (sources_sentences[b][: int(k)] if k else []))
                    if text not in seen and len(texts) < n:
                        seen.add(text)
                        texts.append(text)
            ids = pa.array([f"s{i}" for i in range(start, start + n)])
            writer.write_table(pa.Table.from_arrays([ids, pa.array(texts)], schema=schema))
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--collection", type=Path, default=None,
                        help="where the synthetic collection is (written if missing)")
    parser.add_argument("--out", type=Path, default=None, help="index folder (default: beside the collection)")
    parser.add_argument("--kind", default="auto", choices=["auto", "exact", "hnsw", "ivf", "ivf_sq8", "ivf_pq"])
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--topics", type=int, default=1000,
                        help="passages about this many topics (0: random words, no topic structure)")
    parser.add_argument("--real", type=Path, nargs="+", default=None,
                        help="remix the sentences of these real passages (parquet) instead of random words")
    args = parser.parse_args()
    kind = "sentences" if args.real else (f"topics{args.topics}" if args.topics else "")
    collection = args.collection or Path(f"/tmp/twotower-bench/collection-{args.passages}"
                                         f"{f'-{kind}' if kind else ''}.parquet")
    out = args.out or collection.with_name(f"index-{collection.stem.removeprefix('collection-')}-{args.kind}")
    collection.parent.mkdir(parents=True, exist_ok=True)
    if not collection.is_file():
        start = time.perf_counter()
        if args.real:
            write_sentence_collection(collection, args.passages, args.seed, args.real)
        else:
            write_collection(collection, args.passages, args.seed, args.topics)
        print(f"wrote {args.passages:,} passages to {collection} "
              f"({collection.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - start:.0f} s")

    command = [sys.executable, "-m", "twotower.cli", "index", str(collection), "--out", str(out), "--force",
               "--index", args.kind, "--model", args.model, "--device", "cpu", "-q"]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    manifest = json.loads((out / "manifest.json").read_text())
    n, seconds = manifest["passages"], manifest["seconds"]
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"cores {os.cpu_count()}, load average {load:.1f} before the run")
    print(f"indexed {n:,} passages ({args.kind}) in {wall:.0f} s wall: {n / wall:,.0f} passages/s; "
          f"peak RSS {peak_mib:,.0f} MiB; index folder {size / 2**20:,.0f} MiB")
    dense = manifest["dense"]
    recall = (f" ({dense['ivf_nlist']} cells, nprobe {dense['ivf_nprobe']}, recall@10 {dense['recall_at_10']} "
              "against exact on the collection's own vectors)" if "recall_at_10" in dense else "")
    print(f"  embedding {seconds['embed']:.0f} s ({n / seconds['embed']:,.0f} passages/s), "
          f"{dense['kind']} faiss index {seconds['dense_index']:.1f} s{recall}, "
          f"BM25 {seconds['bm25_index']:.0f} s ({n / seconds['bm25_index']:,.0f} passages/s)")


if __name__ == "__main__":
    main()
