"""Does validation predict test? Run a sweep of configurations and correlate.

Runs `dvc exp run -n NAME -S ...` for each configuration below, one after another in this
workspace (params.yaml is reset to the committed one before each), reads the selected
epoch's validation nDCG@10 (metrics/train.json) and the test nDCG@10 (metrics/eval.json),
and prints both per configuration and Spearman's rank correlation between them. Model
selection is only worth doing on a validation whose ranking of configurations is the
test's; the test queries choose nothing here, they only check the validation.

    python benchmarks/validation_correlation.py [--out benchmarks/results/validation_correlation.json]

Takes ~2-3 min a configuration on 2 cores (teacher outputs come from DVC's run cache).
Afterwards the workspace is the committed one again (`git checkout` + `dvc checkout`); every
run stays in `dvc exp show`.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

# Each a change from the current default (train.lr 0.0005, train.distill_weight 0.9). The
# sweeps before the validation neighbours (benchmarks/results/validation_correlation_before_*.json)
# ran from earlier defaults, so their `lr-0.0005` and `distill-0.9` are today's default.
CONFIGS = {
    "default": [],
    "query-epochs-3": ["train.query_epochs=3"],
    "query-epochs-10": ["train.query_epochs=10"],
    "no-labelled": ["train.epochs=0"],
    "no-real-queries": ["train.query_epochs=0"],
    "gru": ["model.rnn_type=GRU"],
    "lr-0.002": ["train.lr=0.002"],
    "lr-0.005": ["train.lr=0.005"],
    "batch-256": ["train.batch_size=256"],
    "distill-0.5": ["train.distill_weight=0.5"],
    "bm25-candidates": ["train.candidates=bm25"],
    "vector-weight-1": ["model.vector_weight=1"],
    "seed-7": ["train.seed=7"],
    "gru-seed-7": ["model.rnn_type=GRU", "train.seed=7"],
    "bm25-candidates-seed-7": ["train.candidates=bm25", "train.seed=7"],
    "distill-0.5-seed-7": ["train.distill_weight=0.5", "train.seed=7"],
}


def ranks(values) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's rho uses."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    out = np.empty(len(values))
    out[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        same = values == value
        out[same] = out[same].mean()
    return out


def spearman(x, y) -> float:
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def run(cmd) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/validation_correlation.json")
    parser.add_argument("--only", nargs="*", help="run these configurations only")
    args = parser.parse_args(argv)
    dvc = str(Path(sys.executable).with_name("dvc"))
    results = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    try:
        for name, overrides in CONFIGS.items():
            if (args.only and name not in args.only) or name in results:
                continue
            run(["git", "checkout", "--", "params.yaml"])
            run([dvc, "exp", "run", "-n", f"corr-{name}", *(x for o in overrides for x in ("-S", o))])
            val = json.loads(Path("metrics/train.json").read_text())["val/nDCG@10"]
            test = json.loads(Path("metrics/eval.json").read_text())["nDCG@10"]
            results[name] = {"overrides": overrides, "val/nDCG@10": val, "test/nDCG@10": test}
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
            print(f"{name}: validation nDCG@10 {val:.4f}, test nDCG@10 {test:.4f}", flush=True)
    finally:
        run(["git", "checkout", "--", "params.yaml", "dvc.lock", "metrics", "plots"])
        run([dvc, "checkout", "--quiet"])
    names = list(results)
    val = [results[n]["val/nDCG@10"] for n in names]
    test = [results[n]["test/nDCG@10"] for n in names]
    print(f"\n{'configuration':<18} {'val nDCG@10':>11} {'test nDCG@10':>12}")
    for n, v, t in sorted(zip(names, val, test), key=lambda row: -row[1]):
        print(f"{n:<18} {v:11.4f} {t:12.4f}")
    if len(names) >= 3:
        print(f"\nSpearman correlation, validation vs test nDCG@10 over {len(names)} configurations: "
              f"{spearman(val, test):.3f}")


if __name__ == "__main__":
    main()
