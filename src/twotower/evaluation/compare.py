"""Put several systems' runs side by side on one set of qrels, with the same metric code.

Inputs are runs (qid, pid, score[, rank]) keyed by system name. Outputs: a {system: {metric:
value}} table, its markdown, per-query wins of one system over another, and the P@K / R@K
curves of every system as one wide table (k, "<system> P@K", "<system> R@K") for `dvc plots`.
"""

import pandas as pd

from twotower.errors import TwoTowerError
from twotower.evaluation.metrics import evaluate_run, per_query, precision_recall_curve

TABLE_METRICS = ["P@10", "MRR@10", "Recall@100", "nDCG@10", "MAP"]
OFFICIAL_COLUMNS = ["run", "qid", "pid", "rank", "score"]


def official_runs(table: pd.DataFrame, prefix: str = "DL19 ") -> dict:
    """A (run, qid, pid, rank, score) table of published runs -> {prefix + run: run frame}."""
    missing = [c for c in OFFICIAL_COLUMNS if c not in table.columns]
    if missing:
        raise TwoTowerError(f"official runs table is missing column(s) {', '.join(missing)}; "
                            f"expected {', '.join(OFFICIAL_COLUMNS)}")
    table = table.astype({"run": str, "qid": str, "pid": str})
    return {prefix + name: group[["qid", "pid", "rank", "score"]].reset_index(drop=True)
            for name, group in table.groupby("run", sort=True)}


def score_systems(runs: dict, qrels: pd.DataFrame) -> dict:
    """{system: run} -> {system: {metric: value}} with `evaluate_run`, in the order given."""
    return {name: evaluate_run(run, qrels) for name, run in runs.items()}


def results_markdown(scores: dict, metrics=TABLE_METRICS, caption: str = "") -> str:
    """A markdown table, one row per system, best value of each column in bold."""
    best = {m: max(s[m] for s in scores.values()) for m in metrics}
    lines = ["| system | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for name, values in scores.items():
        cells = [f"**{values[m]:.3f}**" if values[m] == best[m] else f"{values[m]:.3f}" for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return (caption + "\n\n" if caption else "") + "\n".join(lines) + "\n"


def per_query_wins(runs: dict, qrels: pd.DataFrame, queries: pd.DataFrame,
                   measure: str = "nDCG@10") -> pd.DataFrame:
    """One row per judged query: its text, `measure` for each of the two runs, the difference
    (first minus second) and the winner's name ("tie" if equal). A run without the query scores 0."""
    if len(runs) != 2:
        raise TwoTowerError(f"per-query comparison takes two runs, got {len(runs)}")
    (name_a, run_a), (name_b, run_b) = runs.items()
    judged = sorted(set(qrels.loc[qrels["selected"], "qid"].astype(str)))
    table = pd.DataFrame({"qid": judged})
    table["query"] = table["qid"].map(dict(zip(queries["qid"].astype(str), queries["text"]))).fillna("")
    for name, run in ((name_a, run_a), (name_b, run_b)):
        values = per_query(run, qrels, measure).set_index("qid")[measure]
        table[name] = table["qid"].map(values).fillna(0.0).astype(float).round(6)
    table["delta"] = (table[name_a] - table[name_b]).round(6)
    table["winner"] = "tie"
    table.loc[table["delta"] > 0, "winner"] = name_a
    table.loc[table["delta"] < 0, "winner"] = name_b
    return table.sort_values(["delta", "qid"], ignore_index=True)


def curves(runs: dict, qrels: pd.DataFrame) -> dict:
    """{system: run} -> {system: (k, precision, recall)}, the mean P@K and R@K curves."""
    return {name: precision_recall_curve(run, qrels) for name, run in runs.items()}


def curves_table(curves_by_system: dict) -> pd.DataFrame:
    """The curves as one wide table, one row per K: k, "<system> P@K", "<system> R@K"."""
    table = None
    for name, curve in curves_by_system.items():
        curve = curve.rename(columns={"precision": f"{name} P@K", "recall": f"{name} R@K"})
        table = curve if table is None else table.merge(curve, on="k")
    return table
