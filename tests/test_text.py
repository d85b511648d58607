from collections import Counter

import numpy as np
import pytest

from twotower.text.tokenizers import (PAD, PAD_ID, UNK, UNK_ID, TokenArrays, Tokenizer, build_vocab, count_words,
                           document_frequency, embedding_matrix, encode_to_files, idf_weights,
                           words)

TEXTS = ["The river and the lake.", "the boat on the river", "A fish in the lake"]


def test_words_lowercases_and_drops_punctuation():
    assert words("The River, the LAKE!") == ["the", "river", "the", "lake"]


def test_pad_and_unk_are_reserved_and_the_is_not_padding():
    vocab = build_vocab(TEXTS, pretrained_words=[], min_freq=1, max_vocab=100)
    assert vocab[:2] == [PAD, UNK]
    assert (PAD_ID, UNK_ID) == (0, 1)
    tok = Tokenizer(vocab)
    # "the" is the most frequent word, so it gets the first free id, never padding's.
    assert tok.ids["the"] == 2
    ids, lengths = tok.encode_batch(["the the"], max_len=6)
    assert ids[0].tolist() == [2, 2, 0, 0, 0, 0]
    assert lengths.tolist() == [2]


def test_tokenizer_rejects_vocab_without_reserved_ids():
    with pytest.raises(ValueError):
        Tokenizer(["the", PAD, UNK])


def test_unknown_words_map_to_unk():
    tok = Tokenizer([PAD, UNK, "river", "lake"])
    assert tok.encode("river volcano lake", max_len=10) == [2, UNK_ID, 3]


def test_padding_only_at_the_end():
    tok = Tokenizer([PAD, UNK, "a", "b", "c"])
    ids, lengths = tok.encode_batch(["a b c", "b", "c a"], max_len=4)
    assert ids.dtype == np.int32 and lengths.dtype == np.int32
    assert ids.tolist() == [[2, 3, 4, 0], [3, 0, 0, 0], [4, 2, 0, 0]]
    assert lengths.tolist() == [3, 1, 2]
    for row, n in zip(ids, lengths):
        assert (row[:n] != PAD_ID).all() and (row[n:] == PAD_ID).all()


@pytest.mark.parametrize("text", ["", "   ", "?!...", "-- ; --"])
def test_empty_or_punctuation_only_text_is_one_unk(text):
    tok = Tokenizer([PAD, UNK, "a"])
    assert tok.encode(text, max_len=5) == [UNK_ID]
    ids, lengths = tok.encode_batch([text], max_len=5)
    assert ids.tolist() == [[UNK_ID, 0, 0, 0, 0]] and lengths.tolist() == [1]


def test_truncates_to_max_len():
    tok = Tokenizer([PAD, UNK, "a", "b", "c"])
    assert tok.encode("a b c a b c", max_len=4) == [2, 3, 4, 2]
    ids, lengths = tok.encode_batch(["a b c a b c", "c"], max_len=3)
    assert ids.shape == (2, 3)
    assert ids[0].tolist() == [2, 3, 4] and lengths.tolist() == [3, 1]


def test_build_vocab_orders_by_frequency_then_alphabet_then_pretrained():
    # counts: the 5, lake 2, river 2, and 1, boat 1, on 1, a 1, fish 1, in 1
    vocab = build_vocab(TEXTS, pretrained_words=["the", "ocean", "river", "sea"], min_freq=2,
                        max_vocab=100)
    assert vocab == [PAD, UNK, "the", "lake", "river", "ocean", "sea"]


def test_build_vocab_min_freq_one_keeps_every_training_word():
    vocab = build_vocab(TEXTS, pretrained_words=[], min_freq=1, max_vocab=100)
    assert vocab[2:5] == ["the", "lake", "river"]
    assert sorted(vocab[5:]) == vocab[5:] == ["a", "and", "boat", "fish", "in", "on"]


def test_build_vocab_max_vocab_counts_reserved_entries():
    vocab = build_vocab(TEXTS, pretrained_words=["ocean", "sea"], min_freq=1, max_vocab=4)
    assert vocab == [PAD, UNK, "the", "lake"]
    assert build_vocab(TEXTS, ["ocean"], min_freq=6, max_vocab=10) == [PAD, UNK, "ocean"]


def test_embedding_matrix_uses_pretrained_rows_and_zero_pad():
    pretrained_words = ["sea", "the", "river"]
    pretrained = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    vocab = [PAD, UNK, "the", "lake", "river"]
    matrix, found = embedding_matrix(vocab, pretrained_words, pretrained, seed=0)
    assert matrix.shape == (5, 4) and matrix.dtype == np.float32
    assert found == 2
    assert (matrix[PAD_ID] == 0).all()
    np.testing.assert_array_equal(matrix[2], pretrained[1])
    np.testing.assert_array_equal(matrix[4], pretrained[2])
    # Words without a pretrained vector get small noise, the same for the same seed.
    assert 0 < np.abs(matrix[3]).max() < 1
    again, _ = embedding_matrix(vocab, pretrained_words, pretrained, seed=0)
    other, _ = embedding_matrix(vocab, pretrained_words, pretrained, seed=1)
    np.testing.assert_array_equal(matrix, again)
    assert not np.array_equal(matrix[3], other[3])


def test_count_words_streams_in_chunks_with_the_counts_of_words():
    texts = ["The river, the LAKE!", "ΟΔΟΣ ΣΟΦΟΣ", "Σ", "naïve İstanbul", "", "a_b c-d"]
    expected = Counter(w for t in texts for w in words(t))
    for chunk in (1, 2, 4096):
        assert count_words(iter(texts), chunk=chunk) == expected


def test_document_frequency_counts_each_id_once_per_row():
    ids = np.array([[2, 3, 2, 0], [3, 3, 3, 3], [4, 0, 0, 0]], dtype=np.int32)
    assert document_frequency(ids, 6).tolist() == [2, 0, 1, 2, 1, 0]
    idf = idf_weights(document_frequency(ids, 6), len(ids))
    assert idf.dtype == np.float32 and idf[PAD_ID] == 0
    np.testing.assert_allclose(idf[1:], np.log(4 / np.array([1, 2, 3, 2, 1])), rtol=1e-6)


def texts_with_empty_and_unknown(n):
    rng = np.random.default_rng(0)
    pool = ["river", "lake", "boat", "volcano", "THE", "fish.", "", "?!"]
    return [" ".join(rng.choice(pool, size=rng.integers(0, 12))) for _ in range(n)]


def test_encode_to_files_does_not_depend_on_batch_size(tmp_path):
    texts = texts_with_empty_and_unknown(50)
    tok = Tokenizer(build_vocab(texts, ["ocean"], min_freq=1, max_vocab=100))
    ids, lengths = tok.encode_batch(texts, max_len=6)
    TokenArrays(ids, lengths).save(tmp_path / "whole", "passages")
    for size in (1, 7, 50):
        df = np.zeros(len(tok), dtype=np.int64)
        batches = [texts[i:i + size] for i in range(0, len(texts), size)]
        counts = encode_to_files(tok, batches, len(texts), 6, tmp_path / str(size), "passages", df)
        for name in ("passages_ids.npy", "passages_lengths.npy"):
            assert (tmp_path / str(size) / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
        np.testing.assert_array_equal(df, document_frequency(ids, len(tok)))
        assert (counts.rows, counts.tokens, counts.unknown) == (50, lengths.sum(), (ids == UNK_ID).sum())


def test_encode_to_files_with_too_few_texts_leaves_no_file(tmp_path):
    tok = Tokenizer([PAD, UNK, "a"])
    with pytest.raises(ValueError, match="1 rows written, 2 expected"):
        encode_to_files(tok, [["a"]], 2, 4, tmp_path, "queries")
    assert list(tmp_path.iterdir()) == []
