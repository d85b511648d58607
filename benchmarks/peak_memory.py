"""Peak memory (max resident set size) and wall time of pipeline stages.

One command, as you would type it in the project root:

    python benchmarks/peak_memory.py -- python -m stages.subsample --params P --out O

Or the six pipeline stages in order, each run with its `cmd` from dvc.yaml in a scratch
folder (its own params.yaml, outputs under it) on a given raw-data folder:

    python benchmarks/peak_memory.py --pipeline --raw /tmp/msmarco-50k --work /tmp/pm
    python benchmarks/peak_memory.py --pipeline --raw data/raw --set train.epochs=1
    python benchmarks/peak_memory.py --pipeline --raw /tmp/msmarco-50k --stages subsample tokenize

Peak RSS comes from the kernel's accounting of each finished child (os.wait4, the same
figure as resource.getrusage(RUSAGE_CHILDREN).ru_maxrss but per child), so it counts
every page the stage touched, memory-mapped files it read included.
"""

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ("subsample", "tokenize", "build_triplets", "train", "embed_corpus", "evaluate")


def measure(cmd: list[str], cwd=None, env=None, log=None) -> tuple[int, float, float]:
    """(exit status, peak RSS in MiB, wall seconds) of `cmd` run to completion."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT if log else None)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_maxrss / 1024, time.perf_counter() - start


def pipeline(args) -> int:
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["raw_dir"] = str(args.raw.resolve())
    for assignment in args.set:
        key, value = assignment.split("=", 1)
        section, name = key.split(".", 1)
        params[section][name] = yaml.safe_load(value)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; raw data {args.raw}; "
          f"work folder {work} (stage logs in *.log)")
    print(f"{'stage':<15} {'peak RSS MiB':>12} {'wall s':>8}")
    for name in args.stages:
        with open(work / f"{name}.log", "w") as log:
            status, rss, wall = measure(shlex.split(stages[name]["cmd"]), cwd=work, env=env, log=log)
        print(f"{name:<15} {rss:>12.0f} {wall:>8.1f}" + ("" if status == 0 else f"  FAILED ({status})"), flush=True)
        if status:
            print((work / f"{name}.log").read_text()[-2000:], file=sys.stderr)
            return status
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", action="store_true", help="run the pipeline stages on --raw")
    parser.add_argument("--raw", type=Path, default=ROOT / "data" / "raw")
    parser.add_argument("--work", type=Path, default=Path("/tmp/twotower-peak-memory"))
    parser.add_argument("--stages", nargs="+", choices=PIPELINE, default=list(PIPELINE))
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.NAME=VALUE",
                        help="override a param, as `dvc exp run -S` does")
    parser.add_argument("command", nargs="*", help="a command to measure (after --)")
    args = parser.parse_args()
    if args.pipeline:
        sys.exit(pipeline(args))
    if not args.command:
        parser.error("give a command after --, or --pipeline")
    status, rss, wall = measure(args.command)
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; peak RSS {rss:.0f} MiB, "
          f"wall {wall:.1f} s, exit status {status}: "
          f"{shlex.join(args.command)}")
    sys.exit(status)


if __name__ == "__main__":
    main()
