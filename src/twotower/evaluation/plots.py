"""Matplotlib charts saved as PNG next to the CSVs that `dvc plots` draws."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_precision_recall(curves: dict, path) -> None:
    """Precision@K and Recall@K against K, one line per system."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, curve in curves.items():
        left.plot(curve["k"], curve["precision"], marker="o", label=name)
        right.plot(curve["k"], curve["recall"], marker="o", label=name)
    for ax, title in ((left, "Precision@K"), (right, "Recall@K")):
        ax.set_xscale("log")
        ax.set_xlabel("K")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_per_query_delta(table, name_a: str, name_b: str, path, measure: str = "nDCG@10") -> None:
    """One horizontal bar per query: `measure` of system a minus system b, labelled by query text."""
    table = table.sort_values("delta")
    colors = ["tab:blue" if d > 0 else "tab:orange" if d < 0 else "tab:gray" for d in table["delta"]]
    labels = [q if len(q) <= 45 else q[:44] + "…" for q in table["query"].fillna(table["qid"])]
    fig, ax = plt.subplots(figsize=(9, 0.22 * len(table) + 1.5))
    ax.barh(range(len(table)), table["delta"], color=colors)
    ax.set_yticks(range(len(table)), labels, fontsize=7)
    ax.axvline(0, color="black", linewidth=0.8)
    wins_a, wins_b = int((table["delta"] > 0).sum()), int((table["delta"] < 0).sum())
    ax.set_title(f"Per-query {measure}, {name_a} minus {name_b}: {name_a} wins {wins_a}, "
                 f"{name_b} wins {wins_b}, ties {len(table) - wins_a - wins_b}", fontsize=9)
    ax.set_xlabel(f"{measure} difference")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
