"""The teacher encoder (the real packaged all-MiniLM-L6-v2) and the static word vectors made from it."""

import numpy as np
import pytest

from twotower.errors import TwoTowerError
from twotower.distill.static_vectors import compose, pca, sif_weights, teacher_word_vectors
from twotower.distill.teacher import check_teacher_dir, default_teacher_dir, encode_texts, encode_token_pieces, load_teacher


@pytest.fixture(scope="module")
def teacher():
    return load_teacher(default_teacher_dir(), "cpu")


def test_teacher_vectors_are_unit_float16_and_rank_paraphrases_first(teacher):
    texts = ["how long do cats live", "the lifespan of a domestic cat is 12 to 18 years",
             "bake the bread at 220 degrees for thirty minutes"]
    vectors = encode_texts(teacher, texts, batch_size=2)
    assert vectors.dtype == np.float16 and vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors.astype(np.float32), axis=1), 1.0, atol=1e-2)
    scores = vectors[0].astype(np.float32) @ vectors[1:].astype(np.float32).T
    assert scores[0] > scores[1] + 0.2


def test_empty_text_list_gives_an_empty_matrix(teacher):
    assert encode_texts(teacher, [], batch_size=4).shape == (0, 384)


def test_word_pieces_are_encoded_alone_by_id(teacher):
    tokens, vectors = encode_token_pieces(teacher, batch_size=4096)
    assert len(tokens) == len(vectors) > 30000
    assert "[CLS]" not in tokens and "##ing" in tokens
    cat = vectors[tokens.index("cat")].astype(np.float32)
    # "cat" fed as an id is the same input as the text "cat": [CLS] cat [SEP].
    assert np.allclose(cat, encode_texts(teacher, ["cat"], 1)[0].astype(np.float32), atol=2e-3)


def test_a_missing_teacher_directory_is_one_line_naming_it(tmp_path):
    with pytest.raises(TwoTowerError, match=f"teacher model directory unreadable: {tmp_path}.*pip install"):
        load_teacher(tmp_path, "cpu")


def test_a_broken_teacher_directory_is_one_line_naming_it(tmp_path):
    (tmp_path / "modules.json").write_text("not json")
    with pytest.raises(TwoTowerError, match="teacher model directory unreadable"):
        load_teacher(tmp_path, "cpu")


def test_compose_takes_whole_words_then_mean_of_pieces_then_zero():
    words, word_vectors = ["dog", "cat"], np.array([[0.0, 3.0], [1.0, 0.0]], dtype=np.float16)
    pieces, piece_vectors = ["dog", "##gy"], np.array([[0.0, 1.0], [1.0, 1.0]], dtype=np.float16)
    split = {"cat": ["cat"], "doggy": ["dog", "##gy"], "zzz": ["[UNK]"]}
    matrix, whole, composed = compose(["<pad>", "cat", "doggy", "zzz"], words, word_vectors, pieces,
                                      piece_vectors, lambda batch: [split.get(w, []) for w in batch])
    assert (whole, composed) == (1, 1)
    assert np.allclose(matrix, [[0, 0], [1, 0], [0.5, 1.0], [0, 0]])


def test_pca_projects_onto_the_largest_axes_deterministically():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) * np.array([10.0, 5.0, 1.0, 0.1, 0.1, 0.1])
    reduced = pca(x, 2)
    assert reduced.shape == (500, 2) and reduced.dtype == np.float32
    assert np.allclose(reduced.mean(0), 0, atol=1e-4)
    assert reduced[:, 0].var() > reduced[:, 1].var() > 10 * x[:, 2].var()
    assert np.array_equal(reduced, pca(x.copy(), 2))
    assert np.array_equal(pca(x[rng.permutation(500)], 2).var(0).round(3), reduced.var(0).round(3))


def test_sif_weights_fall_with_frequency_rank():
    weights = sif_weights(1000)
    assert np.all(np.diff(weights) > 0) and 0 < weights[0] < weights[-1] < 1


def test_teacher_word_vectors_reduce_weight_and_zero_the_reserved_rows():
    rng = np.random.default_rng(1)
    vocab = ["<pad>", "<unk>"] + [f"w{i}" for i in range(40)] + ["nothing"]
    words, word_vectors = vocab[2:-1], rng.normal(size=(40, 8)).astype(np.float16)
    matrix, counts = teacher_word_vectors(vocab, words, word_vectors, [], np.zeros((0, 8)), lambda b: [[]] * len(b), dim=4)
    assert matrix.shape == (43, 4)
    assert counts == {"whole": 40, "composed": 0, "missing": 1}
    assert not matrix[[0, 1, 42]].any() and matrix[2:42].any(1).all()
    with pytest.raises(TwoTowerError, match=r"tokenize.dim: 9 is not an integer in \[1, 8\]"):
        teacher_word_vectors(vocab, words, word_vectors, [], np.zeros((0, 8)), lambda b: [[]] * len(b), dim=9)


def test_a_teacher_directory_without_tokenizer_json_is_one_line_naming_it(tmp_path):
    (tmp_path / "modules.json").write_text("[]")
    with pytest.raises(TwoTowerError, match=f"^teacher model directory has no tokenizer.json: {tmp_path} \\("):
        check_teacher_dir(tmp_path)
    with pytest.raises(TwoTowerError, match=f"^teacher model directory unreadable: {tmp_path / 'absent'} "):
        check_teacher_dir(tmp_path / "absent")
    check_teacher_dir(default_teacher_dir())
