"""IR metrics with ir-measures (trec_eval underneath), the field's reference implementation.

Binary measures (P, MRR, Recall, MAP) count a passage as relevant when qrels mark it
`selected` (for TREC-DL that is graded relevance >= 2, the track's convention); nDCG@10
uses the graded `relevance` as gain. Runs are (qid, pid, score) frames; like trec_eval,
ranks are taken from scores, ties broken by pid.
"""

import ir_measures
import pandas as pd
from ir_measures import AP, P, R, RR, nDCG

BINARY_MEASURES = {
    "P@1": P @ 1,
    "P@5": P @ 5,
    "P@10": P @ 10,
    "MRR@10": RR @ 10,
    "Recall@10": R @ 10,
    "Recall@100": R @ 100,
    "MAP": AP,
}
GRADED_MEASURES = {"nDCG@10": nDCG @ 10}
METRIC_NAMES = list(BINARY_MEASURES) + list(GRADED_MEASURES)


def _qrels(qrels: pd.DataFrame, binary: bool) -> pd.DataFrame:
    rel = qrels["selected"].astype(int) if binary else qrels["relevance"].astype(int)
    return pd.DataFrame({"query_id": qrels["qid"].astype(str), "doc_id": qrels["pid"].astype(str),
                         "relevance": rel})


def _run(run: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"query_id": run["qid"].astype(str), "doc_id": run["pid"].astype(str),
                         "score": run["score"].astype(float)})


def _aggregate(measures: dict, qrels, run) -> dict:
    if not measures:
        return {}
    found = ir_measures.calc_aggregate(list(measures.values()), qrels, run)
    return {name: float(found.get(m, 0.0)) for name, m in measures.items()}


def evaluate_run(run: pd.DataFrame, qrels: pd.DataFrame, names=None) -> dict:
    """Mean of each measure over the queries that have relevant passages in `qrels`.

    A judged query missing from the run counts as 0 (ir-measures does this, like
    trec_eval's `-c`), so a system can't score higher by answering fewer queries.
    """
    names = names or METRIC_NAMES
    qrels = qrels[qrels["qid"].isin(set(qrels.loc[qrels["selected"], "qid"]))]
    run = _run(run)
    binary = _aggregate({n: m for n, m in BINARY_MEASURES.items() if n in names}, _qrels(qrels, True), run)
    graded = _aggregate({n: m for n, m in GRADED_MEASURES.items() if n in names}, _qrels(qrels, False), run)
    scores = {**binary, **graded}
    return {n: round(scores[n], 6) for n in names}


def per_query(run: pd.DataFrame, qrels: pd.DataFrame, name: str = "nDCG@10") -> pd.DataFrame:
    """(qid, value) of one measure for every query in the run."""
    measure = {**BINARY_MEASURES, **GRADED_MEASURES}[name]
    rows = [(m.query_id, m.value) for m in ir_measures.iter_calc([measure], _qrels(qrels, name in BINARY_MEASURES), _run(run))]
    return pd.DataFrame(rows, columns=["qid", name])


def precision_recall_curve(run: pd.DataFrame, qrels: pd.DataFrame, ks=(1, 2, 3, 5, 10, 20, 30, 50, 100)) -> pd.DataFrame:
    """Mean Precision@K and Recall@K for each K: the data behind the P@K/R@K plot."""
    measures = {f"P@{k}": P @ k for k in ks} | {f"R@{k}": R @ k for k in ks}
    qrels = qrels[qrels["qid"].isin(set(qrels.loc[qrels["selected"], "qid"]))]
    found = _aggregate(measures, _qrels(qrels, True), _run(run))
    return pd.DataFrame({"k": list(ks), "precision": [round(found[f"P@{k}"], 6) for k in ks],
                         "recall": [round(found[f"R@{k}"], 6) for k in ks]})


def save_run_and_metrics(run: pd.DataFrame, qrels: pd.DataFrame, run_path, metrics_path, tag: str) -> dict:
    """Write the TREC run and its measures, and print them: every ranking stage ends this
    way, so a run file and its metrics JSON always come from the same ranking."""
    from twotower.files import write_json
    from twotower.data.runs import write_trec_run

    write_trec_run(run, run_path, tag=tag)
    metrics = evaluate_run(run, qrels)
    write_json(metrics, metrics_path)
    print(", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return metrics
