"""Do validation's collection distractors change what it measures?

Scores the workspace's model (models/model.pt, a student-mode one: it embeds the validation
passages itself; a teacher-mode model ranks the teacher's vectors of them) on the validation
queries twice: over the whole validation pool (the judged TREC-DL 2020/21 passages plus
`data.val_distractors` collection passages) and over the judged passages alone, each without
and with the feedback of params.yaml. Run it after `dvc exp apply NAME` for each run to compare.

    python benchmarks/validation_distractors.py [--model models/model.pt] [--params params.yaml]
"""

import argparse
from dataclasses import replace

import numpy as np

from twotower.evaluation.metrics import evaluate_run
from twotower.model.tokenized import load_tokenized
from twotower.model.towers import load_model
from twotower.params import FeedbackParams, load_section
from twotower.retrieval.dense import embed, rank


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--tokens", default="data/tokens")
    parser.add_argument("--teacher", default="data/teacher")
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)

    model, _ = load_model(args.model)
    feedback = load_section("feedback", args.params)
    split = load_tokenized(args.prepared, args.tokens, "validation", args.teacher if model.teacher_passages else None)
    passages = (split.teacher_passages.astype(np.float32) if model.teacher_passages else
                embed(model.encode_passages, split.passages.ids, split.passages.lengths, 512, "cpu",
                      desc="passages"))
    judged = np.isin(split.pids.astype(str), split.qrels["pid"].astype(str).unique())
    print(f"validation: {len(split.qids)} queries; {len(split.pids)} passages, {int(judged.sum())} of them judged")
    print(f"{'pool':<16} {'nDCG@10':>8} {'with feedback':>14}")
    for name, keep in (("all", np.ones(len(judged), dtype=bool)), ("judged only", judged)):
        pool = replace(split, pids=split.pids[keep])  # rank reads the pids and the vectors given here
        figures = [evaluate_run(rank(model, pool, depth=100, batch_size=512, device="cpu",
                                     passage_vectors=passages[keep], feedback=setting),
                                split.qrels, ["nDCG@10"])["nDCG@10"]
                   for setting in (FeedbackParams(depth=0), feedback)]
        print(f"{name:<16} {figures[0]:8.4f} {figures[1]:14.4f}")


if __name__ == "__main__":
    main()
