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
