"""A tiny, learnable MS MARCO look-alike in the Hugging Face `ms_marco` v1.1 row schema.

Ten topics, each with a handful of common English words that GloVe knows. A query is 2-4
words of its topic; its positive passages use many words of that topic, its negatives come
from other topics, and (train and test only) one "related" passage per query mixes a couple
of the topic's words into another topic's text and is graded relevance 1.

train and test rows carry `passage_id` and graded `relevance` (0-3) like TREC-DL rows, with
`is_selected = relevance >= 2`; validation rows have neither, exactly like HF v1.1, and
reuse a small pool of negative passages so the same text appears under several queries.
On request, `queries.parquet` holds unlabelled real queries of the same topics, in the
columns of the project's data/raw/queries.parquet (query_id, query, source).
"""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TOPICS = {
    "river": "river water fish boat lake shore swim",
    "money": "money bank loan credit interest cash pay",
    "health": "doctor hospital patient medicine nurse health disease",
    "music": "music song band guitar piano concert singer",
    "football": "football game team player coach season score",
    "computer": "computer software data network internet program code",
    "food": "food cook kitchen recipe bread cheese dinner",
    "car": "car engine road drive truck wheel fuel",
    "school": "school student teacher class exam study lesson",
    "weather": "weather rain snow wind storm cloud cold",
}
TOPIC_WORDS = {name: words.split() for name, words in TOPICS.items()}
FILLER = "the a of and in is to for with on this that it are".split()

PASSAGE_FIELDS = [
    ("is_selected", pa.int32()),
    ("passage_text", pa.string()),
    ("url", pa.string()),
]
GRADED_FIELDS = [("passage_id", pa.string()), ("relevance", pa.int64())]


def passages_type(graded: bool) -> pa.StructType:
    """The struct of lists HF uses for `passages`; graded rows add passage_id and relevance."""
    fields = PASSAGE_FIELDS + (GRADED_FIELDS if graded else [])
    return pa.struct([pa.field(name, pa.list_(t)) for name, t in fields])


def msmarco_schema(graded: bool) -> pa.Schema:
    return pa.schema([
        pa.field("answers", pa.list_(pa.string())),
        pa.field("passages", passages_type(graded)),
        pa.field("query", pa.string()),
        pa.field("query_id", pa.int64()),
        pa.field("query_type", pa.string()),
        pa.field("wellFormedAnswers", pa.list_(pa.string())),
    ])


def msmarco_table(rows: list[dict], graded: bool) -> pa.Table:
    """Rows as dicts ({query_id, query, passages: {field: list}, ...}) -> an exactly typed table.

    Missing optional columns get harmless defaults, so tests can write only what they need.
    """
    full = [{"answers": [], "query_type": "DESCRIPTION", "wellFormedAnswers": [], **row} for row in rows]
    return pa.Table.from_pylist(full, schema=msmarco_schema(graded))


class _Writer:
    """Generates unique passage texts and ids across all splits of one dataset."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.seen_texts: set[str] = set()
        self.next_pid = 1_000_000

    def _words(self, pool: list[str], n: int) -> list[str]:
        return [pool[i] for i in self.rng.integers(len(pool), size=n)]

    def _unique(self, make) -> str:
        while True:
            text = make()
            if text not in self.seen_texts:
                self.seen_texts.add(text)
                return text

    def _sentence(self, words: list[str]) -> str:
        order = self.rng.permutation(len(words))
        text = " ".join(words[i] for i in order)
        return text[0].upper() + text[1:] + "."

    def passage(self, topic: str, must: list[str] = (), extra_topic: str | None = None) -> str:
        """Topic words (including `must`) mixed with filler; `extra_topic` adds two of its words."""
        def make():
            chosen = list(must) + self._words(TOPIC_WORDS[topic], int(self.rng.integers(5, 8)))
            if extra_topic is not None:
                chosen += self._words(TOPIC_WORDS[extra_topic], 2)
            return self._sentence(chosen + self._words(FILLER, int(self.rng.integers(3, 6))))
        return self._unique(make)

    def query(self, topic: str, used: set[str]) -> list[str]:
        while True:
            n = int(self.rng.integers(2, 5))
            picked = [TOPIC_WORDS[topic][i] for i in self.rng.choice(len(TOPIC_WORDS[topic]), n, replace=False)]
            if " ".join(picked) not in used:
                used.add(" ".join(picked))
                return picked

    def pid(self) -> str:
        self.next_pid += 1
        return str(self.next_pid)

    def other_topic(self, topic: str) -> str:
        others = [t for t in TOPICS if t != topic]
        return others[int(self.rng.integers(len(others)))]


def _split_rows(w: _Writer, n: int, first_qid: int, passages_per_query: int, graded: bool,
                shared_negatives: list[tuple[str, str]] | None = None) -> list[dict]:
    topics = list(TOPICS)
    used_queries: set[str] = set()
    rows = []
    for i in range(n):
        topic = topics[i % len(topics)]
        query = w.query(topic, used_queries)
        n_pos = 1 + int(w.rng.integers(2))
        slots = [(w.passage(topic, must=query), 3 - j) for j in range(n_pos)]
        if graded:
            slots.append((w.passage(w.other_topic(topic), extra_topic=topic), 1))
        n_neg = passages_per_query - len(slots)
        if shared_negatives is not None:
            candidates = [text for t, text in shared_negatives if t != topic]
            slots += [(candidates[j], 0) for j in w.rng.choice(len(candidates), n_neg, replace=False)]
        else:
            slots += [(w.passage(w.other_topic(topic)), 0) for _ in range(n_neg)]
        slots = [slots[j] for j in w.rng.permutation(len(slots))]
        texts = [text for text, _ in slots]
        relevance = [rel for _, rel in slots]
        passages = {
            "is_selected": [int(rel >= 2) for rel in relevance],
            "passage_text": texts,
            "url": [f"http://example.com/{first_qid + i}/{j}" for j in range(len(texts))],
        }
        if graded:
            passages["passage_id"] = [w.pid() for _ in texts]
            passages["relevance"] = relevance
        rows.append({
            "query_id": first_qid + i,
            "query": " ".join(query),
            "query_type": "DESCRIPTION",
            "passages": passages,
            "answers": [f"about {topic}"],
            "wellFormedAnswers": [],
        })
    return rows


def make_tiny_msmarco(folder, seed: int = 0, n_train: int = 24, n_validation: int = 12,
                      n_test: int = 10, passages_per_query: int = 8, n_real: int = 0) -> Path:
    """Write train/validation/test.parquet and collection.parquet into `folder`; return it.

    Every query gets exactly `passages_per_query` passages: up to two positives, one
    relevance-1 passage (train, test) and negatives for the rest. With `n_real` > 0, also
    queries.parquet: that many unlabelled queries, 2-4 words of a topic each (a few may
    repeat a labelled query's text, as real ones do; subsample drops those).
    """
    if not 4 <= passages_per_query <= 18:
        raise ValueError("passages_per_query must be in [4, 18]: room for positives and negatives")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    w = _Writer(seed)
    train = _split_rows(w, n_train, 1, passages_per_query, graded=True)
    shared = [(t, w.passage(t)) for t in TOPICS for _ in range(2)]
    validation = _split_rows(w, n_validation, 10_001, passages_per_query, graded=False,
                             shared_negatives=shared)
    test = _split_rows(w, n_test, 20_001, passages_per_query, graded=True)
    pq.write_table(msmarco_table(train, graded=True), folder / "train.parquet")
    pq.write_table(msmarco_table(validation, graded=False), folder / "validation.parquet")
    pq.write_table(msmarco_table(test, graded=True), folder / "test.parquet")

    topics = list(TOPICS)
    collection = [(w.pid(), w.passage(topics[i % len(topics)])) for i in range(50)]
    pq.write_table(pa.table({"passage_id": pa.array([p for p, _ in collection], pa.string()),
                             "passage_text": pa.array([t for _, t in collection], pa.string())}),
                   folder / "collection.parquet")
    if n_real:
        used: set[str] = set()
        texts = [" ".join(w.query(topics[i % len(topics)], used)) for i in range(n_real)]
        pq.write_table(pa.table({"query_id": pa.array(range(30_001, 30_001 + n_real), pa.int64()),
                                 "query": pa.array(texts, pa.string()),
                                 "source": pa.array(["tiny"] * n_real, pa.string())}),
                       folder / "queries.parquet")
    return folder
