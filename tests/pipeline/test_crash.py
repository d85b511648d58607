"""Crash safety end to end: SIGKILL a real `dvc repro` while the train stage runs, then check
that no output was half written and that a plain `dvc repro` finishes the job.

A SIGKILL skips every `finally`, so the killed stage cannot tidy up; what makes this safe
is that stages only ever write into `.{name}.{pid}-*.tmp` siblings and rename at the end
(`twotower.files.atomic_path`), and the next write of the same output deletes temporaries
whose process is gone. DVC 3 itself drops the killed process from `.dvc/tmp/rwlock`
("had been killed. Auto removed it from the lock file"); with an older DVC that says the
repo is locked by a dead PID, delete `.dvc/tmp/rwlock` by hand, as its message suggests.
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.pipeline.project import ENV, make_project, run
from twotower.files import _process_exists

pytestmark = pytest.mark.slow

TEMPORARY = re.compile(r"^\..+\.(?P<pid>\d+)-[^/]*\.tmp$")
# The train stage's own temporaries: plots/train's lives through the whole training. Other
# stages' (the teacher's metrics/teacher.json) must not count: one caught in the instant
# before its rename made the test kill dvc before training and then find nothing.
TRAIN_TEMPORARIES = ("models/.model.pt.*.tmp", "models/checkpoints/.*.tmp", "plots/.train.*.tmp",
                     "metrics/.train.json.*.tmp")


def temporaries(repo: Path) -> list[Path]:
    return [p for p in repo.rglob("*.tmp") if not {".git", ".dvc", "raw"} & set(p.relative_to(repo).parts)]


def training_temporaries(repo: Path) -> list[Path]:
    return [p for pattern in TRAIN_TEMPORARIES for p in repo.glob(pattern)]


def test_sigkill_during_train_leaves_no_partial_output_and_repro_recovers(tmp_path, dvc_cache):
    # The session's shared cache (so later projects reuse these runs), never read here: with
    # `--no-run-cache` every stage really runs, train included, and the recovery trains again.
    repo = make_project(tmp_path / "project", cache=dvc_cache)
    log = tmp_path / "repro.log"
    with open(log, "w") as out:
        repro = subprocess.Popen(["dvc", "repro", "--no-run-cache"], cwd=repo, env=ENV, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        in_training = []
        while not in_training and repro.poll() is None and time.monotonic() < deadline:
            in_training = training_temporaries(repo)  # kept as seen: it may be renamed a moment later
            if not in_training:
                time.sleep(0.05)
    finally:
        os.killpg(repro.pid, signal.SIGKILL)  # dvc and the stage it runs: one process group
        repro.wait()
    assert in_training, f"never caught the train stage writing:\n{log.read_text()[-3000:]}"
    assert "Running stage 'train'" in log.read_text()

    leftovers = {p: TEMPORARY.match(p.name) for p in temporaries(repo)}
    assert all(leftovers.values()), f"unexpected temporaries: {list(leftovers)}"
    owners = {int(found["pid"]) for found in leftovers.values()}
    deadline = time.monotonic() + 60  # the stage is dvc's child: dvc's exit does not wait for its teardown
    while any(map(_process_exists, owners)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_process_exists, owners)), f"writers {owners} outlived the SIGKILL"
    for output in ("models/model.pt", "metrics/train.json", "plots/train", "data/index", "metrics/eval.json"):
        assert not (repo / output).exists(), f"{output} exists after the kill"

    out = run(["dvc", "repro", "--no-run-cache"], repo)
    assert "Running stage 'train'" in out
    assert "Running stage 'subsample'" not in out  # finished stages were locked in before the kill
    assert (repo / "models" / "model.pt").is_file() and (repo / "metrics" / "eval.json").is_file()
    assert temporaries(repo) == []
    assert "Data and pipelines are up to date" in run(["dvc", "status"], repo)
