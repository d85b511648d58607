"""Static word vectors distilled from a sentence encoder, as Model2Vec makes them.

Each vocabulary word's vector is the teacher's output for that word alone; a word the
teacher stage did not encode whole is the mean of its word pieces' vectors (Model2Vec's own
inference rule). The vectors are then reduced by PCA, which also centres them: raw outputs
of a sentence encoder share a large common direction that would make every bag of them
alike. Finally each row is scaled by the SIF weight a/(a + p(word)) with p from Zipf's law
over the vocabulary's frequency order (Model2Vec's `sif_coefficient`), so frequent words
count for little in a mean.
"""

import numpy as np


def compose(vocab: list[str], words: list[str], word_vectors: np.ndarray, piece_tokens: list[str],
            piece_vectors: np.ndarray, split_pieces) -> tuple[np.ndarray, int, int]:
    """float32 [len(vocab), dim] teacher vectors for `vocab`: whole-word outputs where the
    teacher encoded the word, else the mean of its word pieces' vectors, else zero.
    `split_pieces(list of words)` gives each word's pieces (one tokenizer call for all).

    Returns the matrix and how many rows were whole words and how many composed.
    """
    dim = word_vectors.shape[1]
    whole = {w: i for i, w in enumerate(words)}
    piece = {t: i for i, t in enumerate(piece_tokens)}
    matrix = np.zeros((len(vocab), dim), dtype=np.float32)
    found = [(row, whole[w]) for row, w in enumerate(vocab) if w in whole]
    if found:
        rows, sources = map(np.array, zip(*found))
        matrix[rows] = word_vectors[sources]
    others = [row for row, w in enumerate(vocab) if w not in whole]
    composed = 0
    for row, tokens in zip(others, split_pieces([vocab[row] for row in others])):
        ids = [piece[t] for t in tokens if t in piece]
        if ids:
            matrix[row] = piece_vectors[ids].astype(np.float32).mean(0)
            composed += 1
    return matrix, len(found), composed


def pca(vectors: np.ndarray, dim: int, fit_rows: np.ndarray | None = None) -> np.ndarray:
    """Centre and project onto the top `dim` principal axes (fitted on `fit_rows`, default all).

    Eigen-decomposition of the covariance: deterministic, and each axis' sign is fixed so its
    largest loading is positive, so the same vectors always give the same output bytes.
    """
    fit = vectors if fit_rows is None else vectors[fit_rows]
    fit = fit.astype(np.float64)
    mean = fit.mean(0)
    centred = fit - mean
    values, axes = np.linalg.eigh(centred.T @ centred / max(1, len(fit) - 1))
    axes = axes[:, np.argsort(values)[::-1][:dim]]
    signs = np.sign(axes[np.abs(axes).argmax(0), np.arange(axes.shape[1])])
    axes = axes * np.where(signs == 0, 1, signs)
    return ((vectors.astype(np.float64) - mean) @ axes).astype(np.float32)


def sif_weights(n: int, coefficient: float = 1e-4) -> np.ndarray:
    """a / (a + p(rank)) for ranks 0..n-1, p from Zipf's law (p ~ 1/(rank + 1)), as Model2Vec."""
    inverse_rank = 1.0 / np.arange(1, n + 1)
    probability = inverse_rank / inverse_rank.sum()
    return (coefficient / (coefficient + probability)).astype(np.float32)


def teacher_word_vectors(vocab: list[str], words, word_vectors, piece_tokens, piece_vectors, split_pieces,
                         dim: int, reserved: int = 2) -> tuple[np.ndarray, dict]:
    """The `tokenize.vectors: teacher` embedding matrix for `vocab` (frequency ordered after
    `reserved` special entries, which stay zero) and counts for the log."""
    matrix, found, composed = compose(vocab, words, word_vectors, piece_tokens, piece_vectors, split_pieces)
    if dim > matrix.shape[1]:
        from twotower.errors import TwoTowerError

        raise TwoTowerError(f"tokenize.dim: {dim} is not an integer in [1, {matrix.shape[1]}] "
                            "(the teacher's dimension)")
    known = np.flatnonzero(np.abs(matrix).sum(1) > 0)
    known = known[known >= reserved]
    reduced = pca(matrix, dim, fit_rows=known)
    reduced[reserved:] *= sif_weights(len(vocab) - reserved)[:, None]
    unknown = np.ones(len(vocab), dtype=bool)
    unknown[known] = False
    reduced[unknown] = 0.0
    return reduced, {"whole": found, "composed": composed, "missing": int(unknown[reserved:].sum())}


SIF_A = 1e-3  # SIF's published default (Arora et al. 2017); not tuned here


def teacher_piece_vectors(piece_vectors: np.ndarray, dim: int, reserved: int = 2) -> np.ndarray:
    """The `tokenize.tokenizer: wordpiece` table: the teacher's vector of each of its word
    pieces alone, centred and reduced by PCA to `dim`, after `reserved` zero rows (<pad>,
    <unk>). No frequency weighting here: that is the model's term weights (`sif_weights_from_counts`),
    which training may move."""
    if dim > piece_vectors.shape[1]:
        from twotower.errors import TwoTowerError

        raise TwoTowerError(f"tokenize.dim: {dim} is not an integer in [1, {piece_vectors.shape[1]}] "
                            "(the teacher's dimension)")
    table = np.zeros((len(piece_vectors) + reserved, dim), dtype=np.float32)
    table[reserved:] = pca(piece_vectors.astype(np.float32), dim)
    return table


def sif_weights_from_counts(counts: np.ndarray, a: float = SIF_A, reserved: int = 2) -> np.ndarray:
    """a / (a + p(token)) with p the token's smoothed frequency in `counts` (int [vocab]):
    SIF's weights from real frequencies, since the WordPiece vocabulary is not ordered by
    frequency (a Zipf rank from its order would weigh "the" like a rare piece)."""
    counts = counts.astype(np.float64)
    counts[:reserved] = 0  # padding is no token
    p = (counts + 1) / (counts.sum() + len(counts))
    weights = (a / (a + p)).astype(np.float32)
    weights[:reserved] = 0.0
    return weights


def load_teacher_words(folder) -> tuple[list[str], np.ndarray, list[str], np.ndarray, object]:
    """The teacher stage's word outputs: (words, their vectors, word pieces, their vectors,
    a function splitting a list of words into word pieces with the teacher's tokenizer)."""
    from pathlib import Path

    from twotower.errors import TwoTowerError

    folder = Path(folder)
    try:
        words = (folder / "words.txt").read_text().splitlines()
        pieces = (folder / "pieces.txt").read_text().splitlines()
        word_vectors, piece_vectors = np.load(folder / "words.npy"), np.load(folder / "pieces.npy")
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except FileNotFoundError as exc:
        raise TwoTowerError(f"teacher word vectors missing: {exc.filename} (run `dvc repro teacher`; "
                            "tokenize.vectors: teacher needs them)") from None
    except Exception as exc:  # tokenizers raises its own Exception type for a bad file
        raise TwoTowerError(f"{folder / 'tokenizer.json'}: unreadable ({type(exc).__name__}); "
                            "rerun `dvc repro teacher`") from None

    def split_pieces(batch: list[str]) -> list[list[str]]:
        return [e.tokens for e in tokenizer.encode_batch(batch, add_special_tokens=False)]

    return words, word_vectors, pieces, piece_vectors, split_pieces


def load_teacher_pieces(folder) -> tuple[list[str], np.ndarray, str]:
    """The teacher stage's word pieces, their vectors and its tokenizer.json text."""
    from pathlib import Path

    from twotower.errors import TwoTowerError

    folder = Path(folder)
    try:
        pieces = (folder / "pieces.txt").read_text().splitlines()
        vectors = np.load(folder / "pieces.npy")
        tokenizer_json = (folder / "tokenizer.json").read_text()
    except FileNotFoundError as exc:
        raise TwoTowerError(f"teacher word pieces missing: {exc.filename} (run `dvc repro teacher`; "
                            "tokenize.tokenizer: wordpiece needs them)") from None
    if len(pieces) != len(vectors):
        raise TwoTowerError(f"{folder}: {len(vectors)} piece vectors for {len(pieces)} pieces (rerun `dvc repro teacher`)")
    return pieces, vectors, tokenizer_json
