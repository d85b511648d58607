import numpy as np
import pandas as pd
import pytest

from twotower.files import atomic_path, npy_writer, read_json, save_npy, write_json, write_parquet


def test_atomic_path_replaces_file_only_on_success(tmp_path):
    target = tmp_path / "out" / "table.txt"
    with atomic_path(target) as tmp:
        assert tmp != target and tmp.parent.parent == target.parent
        tmp.write_text("first")
    assert target.read_text() == "first"

    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["table.txt"]  # no temporary left


def test_atomic_path_replaces_a_directory(tmp_path):
    target = tmp_path / "prepared"
    target.mkdir()
    (target / "stale.parquet").write_text("old")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "fresh.parquet").write_text("new")
    assert [p.name for p in target.iterdir()] == ["fresh.parquet"]


def test_writers_round_trip(tmp_path):
    df = pd.DataFrame({"qid": ["1", "2"], "text": ["lake", "bank"]})
    write_parquet(df, tmp_path / "q.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "q.parquet"), df)
    write_json({"b": 1, "a": [1.5]}, tmp_path / "m.json")
    assert read_json(tmp_path / "m.json") == {"a": [1.5], "b": 1}
    array = np.arange(6, dtype=np.int32).reshape(2, 3)
    save_npy(array, tmp_path / "ids.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "ids.npy"), array)


def test_temporaries_of_killed_writers_are_cleared(tmp_path):
    """A SIGKILLed stage leaves `.{name}.{pid}-*.tmp`; the next write of that output removes it."""
    import os
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(gone.stdout)
    stale = tmp_path / f".model.pt.{dead_pid}-abc.tmp"
    (stale / "model.pt").mkdir(parents=True)
    live = tmp_path / f".model.pt.{os.getppid()}-def.tmp"  # a process that is still running
    live.mkdir()
    other = tmp_path / f".model.pt.x.{dead_pid}-ghi.tmp"  # another output's temporary
    other.mkdir()
    with atomic_path(tmp_path / "model.pt") as tmp:
        tmp.write_text("weights")
    assert not stale.exists() and live.exists() and other.exists()
    assert (tmp_path / "model.pt").read_text() == "weights"


def test_npy_writer_writes_what_np_save_writes_block_by_block(tmp_path):
    array = np.arange(30, dtype=np.int32).reshape(10, 3)
    np.save(tmp_path / "expected.npy", array)
    with npy_writer(tmp_path / "ids.npy", array.shape, np.int32) as write:
        for block in (array[:4], array[4:9], array[9:]):
            write(block)
    assert (tmp_path / "ids.npy").read_bytes() == (tmp_path / "expected.npy").read_bytes()


@pytest.mark.parametrize("block", [np.zeros((2, 3), np.int64),    # wrong dtype
                                   np.zeros((2, 4), np.int32),    # wrong width
                                   np.zeros((4, 3), np.int32)])   # too many rows
def test_npy_writer_refuses_a_block_that_does_not_fit_and_leaves_no_file(tmp_path, block):
    with pytest.raises(ValueError, match="does not fit"):
        with npy_writer(tmp_path / "ids.npy", (3, 3), np.int32) as write:
            write(block)
    assert list(tmp_path.iterdir()) == []
