import hashlib
import json

import numpy as np
import pandas as pd
import pytest

import twotower.distill.teacher_index as teacher_index
from twotower.errors import TwoTowerError
from twotower.distill.teacher_index import encode_resumable, load_teacher_index

DIM = 4
TEXTS = [f"passage number {i}" for i in range(7)]
PIDS = np.array([f"p{i}" for i in range(7)], dtype=object)


def vector_of(text: str) -> np.ndarray:
    """A unit vector that only `text` gives (from its hash)."""
    raw = np.frombuffer(hashlib.sha256(text.encode()).digest()[:DIM], dtype=np.uint8) - 127.5
    return raw / np.linalg.norm(raw)


class FakeTeacher:
    max_seq_length = 256

    def __init__(self):
        self.calls = []

    def get_embedding_dimension(self):
        return DIM

    def encode(self, texts, batch_size, normalize_embeddings, convert_to_numpy, show_progress_bar):
        assert normalize_embeddings and convert_to_numpy
        self.calls.append(list(texts))
        return np.stack([vector_of(t) for t in texts])

    @property
    def encoded(self):
        return [t for call in self.calls for t in call]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(teacher_index, "CHUNK", 3)


def expected(texts):
    return np.stack([vector_of(t) for t in texts]).astype(np.float32)


def test_vectors_in_order_one_encode_per_chunk(tmp_path):
    teacher = FakeTeacher()
    out = encode_resumable(teacher, "fake:4", PIDS, TEXTS, 2, tmp_path / "parts")
    assert out.dtype == np.float32 and out.shape == (7, DIM)
    np.testing.assert_array_equal(out, expected(TEXTS))
    assert teacher.calls == [TEXTS[0:3], TEXTS[3:6], TEXTS[6:7]]
    parts = sorted(p.name for p in (tmp_path / "parts").iterdir())
    assert [p[:10] for p in parts] == ["part-00000", "part-00001", "part-00002"]


def test_a_rerun_reuses_every_part(tmp_path):
    encode_resumable(FakeTeacher(), "fake:4", PIDS, TEXTS, 2, tmp_path)
    again = FakeTeacher()
    out = encode_resumable(again, "fake:4", PIDS, TEXTS, 2, tmp_path)
    assert again.calls == []
    np.testing.assert_array_equal(out, expected(TEXTS))


def test_a_deleted_part_is_the_only_one_encoded_again(tmp_path):
    encode_resumable(FakeTeacher(), "fake:4", PIDS, TEXTS, 2, tmp_path)
    (part,) = tmp_path.glob("part-00001-*.npy")
    part.unlink()
    again = FakeTeacher()
    out = encode_resumable(again, "fake:4", PIDS, TEXTS, 2, tmp_path)
    assert again.calls == [TEXTS[3:6]]
    np.testing.assert_array_equal(out, expected(TEXTS))
    assert len(list(tmp_path.glob("part-00001-*.npy"))) == 1


def test_a_changed_text_reencodes_only_its_chunk(tmp_path):
    encode_resumable(FakeTeacher(), "fake:4", PIDS, TEXTS, 2, tmp_path)
    changed = [*TEXTS]
    changed[4] = "a different passage"
    again = FakeTeacher()
    out = encode_resumable(again, "fake:4", PIDS, changed, 2, tmp_path)
    assert again.calls == [changed[3:6]]
    np.testing.assert_array_equal(out, expected(changed))
    assert not np.array_equal(out[4], expected(TEXTS)[4])


def test_a_changed_pid_reencodes_only_its_chunk(tmp_path):
    encode_resumable(FakeTeacher(), "fake:4", PIDS, TEXTS, 2, tmp_path)
    pids = PIDS.copy()
    pids[6] = "other"
    again = FakeTeacher()
    encode_resumable(again, "fake:4", pids, TEXTS, 2, tmp_path)
    assert again.calls == [TEXTS[6:7]]


def test_another_space_or_length_reuses_nothing(tmp_path):
    encode_resumable(FakeTeacher(), "fake:4", PIDS, TEXTS, 2, tmp_path)
    other_space = FakeTeacher()
    encode_resumable(other_space, "other:4", PIDS, TEXTS, 2, tmp_path)
    assert other_space.encoded == TEXTS
    shorter = FakeTeacher()
    shorter.max_seq_length = 128
    encode_resumable(shorter, "fake:4", PIDS, TEXTS, 2, tmp_path)
    assert shorter.encoded == TEXTS


def test_no_texts_is_an_empty_matrix(tmp_path):
    teacher = FakeTeacher()
    out = encode_resumable(teacher, "fake:4", PIDS[:0], [], 2, tmp_path)
    assert out.shape == (0, DIM) and out.dtype == np.float32
    assert teacher.calls == []


INDEX_VECTORS = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0.6, 0.8]], dtype=np.float16)
INDEX_PIDS = ["d1", "d2", "d3"]


def make_index(folder, manifest=None, pids=INDEX_PIDS):
    folder.mkdir(exist_ok=True)
    np.save(folder / "embeddings.npy", INDEX_VECTORS)
    pd.DataFrame({"pid": pids}).to_parquet(folder / "pids.parquet", index=False)
    if manifest is not None:
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


TEACHER_MANIFEST = {"encoder": "teacher", "space": "minilm:384"}


def test_load_teacher_index_returns_the_vectors(tmp_path):
    folder = make_index(tmp_path / "idx", TEACHER_MANIFEST)
    vectors = load_teacher_index(folder, "minilm:384", np.array(INDEX_PIDS, dtype=object))
    np.testing.assert_array_equal(np.asarray(vectors), INDEX_VECTORS)
    assert vectors.dtype == np.float16


def check_one_line_error(folder, space, pids, *needles):
    with pytest.raises(TwoTowerError) as info:
        load_teacher_index(folder, space, pids)
    message = str(info.value)
    assert "\n" not in message
    assert str(folder) in message
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize("manifest", [{"encoder": "student", "space": "minilm:384"}, {"space": "minilm:384"}])
def test_load_teacher_index_refuses_student_vectors(tmp_path, manifest):
    folder = make_index(tmp_path / "idx", manifest)
    check_one_line_error(folder, "minilm:384", INDEX_PIDS, "no teacher vectors", "dvc repro teacher_passages")


def test_load_teacher_index_refuses_another_space(tmp_path):
    folder = make_index(tmp_path / "idx", {"encoder": "teacher", "space": "other:768"})
    check_one_line_error(folder, "minilm:384", INDEX_PIDS, "'other:768'", "'minilm:384'")


@pytest.mark.parametrize("pids", [["d1", "d3", "d2"], ["d1", "d2"], ["d1", "d2", "d3", "d4"], ["d1", "d2", "x"]])
def test_load_teacher_index_refuses_other_passages(tmp_path, pids):
    folder = make_index(tmp_path / "idx", TEACHER_MANIFEST)
    check_one_line_error(folder, "minilm:384", np.array(pids, dtype=object), "not the split's",
                         "dvc repro teacher_passages")


def test_load_teacher_index_without_manifest(tmp_path):
    folder = make_index(tmp_path / "idx")
    with pytest.raises(TwoTowerError, match="dvc repro teacher_passages") as info:
        load_teacher_index(folder, "minilm:384", INDEX_PIDS)
    assert "manifest.json not found" in str(info.value)


def test_load_teacher_index_with_a_broken_manifest(tmp_path):
    folder = make_index(tmp_path / "idx")
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(TwoTowerError, match="not valid JSON"):
        load_teacher_index(folder, "minilm:384", INDEX_PIDS)
