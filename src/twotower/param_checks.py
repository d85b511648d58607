"""The accepted values of each choice param, and the checks every section's `validate` runs.

Each check fails with one line naming the param, the value and what is accepted, e.g.
`model.rnn_type: 'GRUU' is not one of GRU, LSTM, RNN`.
"""

import math

from twotower.errors import TwoTowerError

RNN_TYPES = ("GRU", "LSTM", "RNN")
LOSSES = ("triplet", "cosine", "infonce")
POOLINGS = ("mean", "max", "last")
NEGATIVES = ("random", "hard", "bm25", "mixed")
LR_SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")
BM25_METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
STEMMERS = ("english", "none")
STOPWORDS = ("english", "none")
FUSIONS = ("rrf", "weighted")
INDEXES = ("exact", "hnsw", "ivf")
WORD_VECTORS = ("glove", "teacher")
DISTILL_LOSSES = ("kl", "margin_mse", "cosine")
OUTPUTS = ("student", "teacher")
PASSAGE_ENCODERS = ("student", "teacher")
TOKENIZERS = ("wordpiece", "word")
VALIDATIONS = ("trec", "msmarco")
CANDIDATES = ("teacher", "bm25")
PASSAGE_TABLES = ("freeze", "train")


def fail(section, name, value, accepted):
    raise TwoTowerError(f"{section}.{name}: {value!r} is not {accepted}")


def check_int(section, name, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, int):
        fail(section, name, value, "an integer")
    if value < low or (high is not None and value > high):
        bound = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        fail(section, name, value, bound)


def check_float(section, name, value, low, high=None, low_open=False, high_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(section, name, value, "a number")
    if isinstance(value, float) and not math.isfinite(value):  # NaN passes every range comparison
        fail(section, name, value, "a finite number")
    too_low = value <= low if low_open else value < low
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left, right = ("(" if low_open else "["), (")" if high_open else "]")
        upper = "inf)" if high is None else f"{high}{right}"
        fail(section, name, value, f"a number in {left}{low}, {upper}")


def check_choice(section, name, value, choices):
    if value not in choices:
        fail(section, name, value, "one of " + ", ".join(choices))


def check_bool(section, name, value):
    if not isinstance(value, bool):
        fail(section, name, value, "true or false")
