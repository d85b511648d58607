"""How far can any validation agree with test over a sweep? Ask the test itself.

`validation_correlation.py` correlates validation with test nDCG@10 over a sweep of
configurations. That correlation is capped by how consistently the test ranks the same
runs: if two random halves of the 43 test queries order the runs differently, test's own
order is noise and no validation can reproduce it. This script reads each sweep run's test
run file (`data/runs/twotower.trec` of the experiment `corr-NAME`, from the DVC cache),
scores it per query, and over many random halvings of the queries prints the Spearman
correlation between the two halves' nDCG@10 across runs (split-half reliability), with and
without the runs that fail outright (below `--floor`). With `--validation` it does the same
for the validation queries, scoring each run's kept model (`models/model.pt` from the cache)
on the workspace's validation split, which must be the sweep's (`dvc exp apply corr-default`
first), without feedback as training selects and with the `feedback` params.

    python benchmarks/sweep_reliability.py [--results benchmarks/results/validation_correlation.json]

Run it in the workspace that ran the sweep (its `dvc exp` refs name the runs). The test
queries choose nothing here: this measures the test, not a model.
"""

import argparse
import functools
import json
import subprocess

import numpy as np
import pandas as pd
import yaml

from twotower.data.prepared import load_split
from twotower.data.runs import read_trec_run
from twotower.evaluation.metrics import per_query
from twotower.model.tokenized import load_tokenized
from twotower.model.towers import load_model
from twotower.model.training import validation_run
from twotower.params import load_section
from validation_correlation import spearman  # noqa: E402  (benchmarks/ is the script's folder)


def git(*args) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def experiment_refs(baselines=(), prefix: str = "corr-") -> dict:
    """Newest experiment ref for each name starting with `prefix`, by name without it; only
    experiments of baseline commits starting with one of `baselines` when given."""
    refs = {}
    lines = git("for-each-ref", "--sort=committerdate", "--format=%(refname)", "refs/exps").split()
    for ref in lines:  # oldest first: a newer run of the same name wins
        parts = ref.split("/")  # refs/exps/ab/cdef.../name: the baseline commit is ab + cdef...
        name = parts[-1]
        if len(parts) == 5 and (parts[2] + parts[3]).startswith(tuple(baselines) or "") and name.startswith(prefix):
            refs[name[len(prefix):]] = ref
    return refs


@functools.cache
def lock_file(ref: str) -> dict:
    return yaml.safe_load(git("show", f"{ref}:dvc.lock"))


def cached_file(ref: str, stage: str, path: str, cache: str) -> str:
    md5 = next(o["md5"] for o in lock_file(ref)["stages"][stage]["outs"] if o["path"] == path)
    return f"{cache}/files/md5/{md5[:2]}/{md5[2:]}"


def half_correlations(scores: pd.DataFrame, n_splits: int, seed: int) -> np.ndarray:
    """Spearman between the runs' mean scores over two random halves of the queries
    (`scores`: queries x runs), for `n_splits` halvings."""
    rng = np.random.default_rng(seed)
    values = scores.to_numpy()
    out = []
    for _ in range(n_splits):
        order = rng.permutation(len(values))
        a, b = order[: len(order) // 2], order[len(order) // 2:]
        out.append(spearman(values[a].mean(0), values[b].mean(0)))
    return np.asarray(out)


def validation_scores(model_path: str, split, train, feedback) -> pd.Series:
    """Per-query validation nDCG@10 of one kept model, as training's validation ranks."""
    model, _ = load_model(model_path)
    run = validation_run(model, split, train.val_depth, train.val_batch_size, "cpu", feedback)
    return per_query(run, split.qrels).set_index("qid")["nDCG@10"]


def report(label: str, scores: pd.DataFrame, floor: float, n_splits: int, seed: int) -> None:
    sane = [name for name in scores if scores[name].mean() >= floor]
    print(f"{label}: {len(scores)} queries, {len(scores.columns)} runs ({len(sane)} at or above {floor})")
    for which, frame in (("all runs", scores), (f"runs >= {floor}", scores[sane])):
        rho = half_correlations(frame, n_splits, seed)
        print(f"  {which:>12}: split-half Spearman, mean {rho.mean():.3f} (median {np.median(rho):.3f}, "
              f"10-90% {np.quantile(rho, 0.1):.3f} to {np.quantile(rho, 0.9):.3f})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="benchmarks/results/validation_correlation.json")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--cache", default=None, help="DVC cache folder (default: `dvc cache dir`)")
    parser.add_argument("--validation", action="store_true", help="also the validation queries' reliability")
    parser.add_argument("--tokens", default="data/tokens")
    parser.add_argument("--teacher", default="data/teacher")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--floor", type=float, default=0.3, help="runs under this test nDCG@10 fail outright")
    parser.add_argument("--splits", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", nargs="*", default=[], help="the sweep's baseline commits (prefixes), when "
                        "several sweeps ran in this workspace")
    parser.add_argument("--ref", nargs="*", default=[], metavar="NAME=REV",
                        help="take run NAME from the dvc.lock of git revision REV instead (e.g. default=HEAD)")
    args = parser.parse_args(argv)
    cache = args.cache or subprocess.run(["dvc", "cache", "dir"], capture_output=True, text=True,
                                         check=True).stdout.strip()
    results = json.loads(open(args.results).read())
    refs = {**experiment_refs(args.baseline), **dict(item.split("=", 1) for item in args.ref)}
    missing = [name for name in results if name not in refs]
    if missing:
        raise SystemExit(f"no experiment corr-NAME in this workspace for: {', '.join(missing)}")
    qrels = load_split(args.prepared, "test").qrels
    columns = {}
    for name in results:
        run = read_trec_run(cached_file(refs[name], "evaluate", "data/runs/twotower.trec", cache))
        columns[name] = per_query(run, qrels).set_index("qid")["nDCG@10"]
    report("test", pd.DataFrame(columns).fillna(0.0), args.floor, args.splits, args.seed)
    if args.validation:
        split = load_tokenized(args.prepared, args.tokens, "validation", args.teacher)
        train = load_section("train", args.params)
        for label, feedback in (("validation", None),
                                ("validation with feedback", load_section("feedback", args.params))):
            columns = {name: validation_scores(cached_file(refs[name], "train", "models/model.pt", cache), split,
                                               train, feedback) for name in results}
            report(label, pd.DataFrame(columns).fillna(0.0), args.floor, args.splits, args.seed)


if __name__ == "__main__":
    main()
