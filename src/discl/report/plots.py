"""Matplotlib figures of a run, each returned as PNG bytes."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display: figures are rendered to files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def plain(text) -> str:
    """Text as matplotlib shows it literally: a "$" would otherwise start mathtext (and an unpaired one
    fails the whole figure), so names from the data are escaped."""
    return str(text).replace("$", r"\$")


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def similarity_histograms(scores: pd.DataFrame, thresholds: dict[str, float]) -> bytes:
    """One panel per similarity; one outline histogram per image-guidance level."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    levels = sorted(scores["image_guidance"].unique())
    colors = plt.cm.viridis(np.linspace(0, 1, max(2, len(levels))))
    for ax, column, title in zip(axes, ("text_sim", "image_sim"), ("image-text similarity", "image-image similarity")):
        values = scores[column].to_numpy()
        bins = np.linspace(values.min() - 1e-6, values.max() + 1e-6, 25) if len(values) else 10
        for color, level in zip(colors, levels):
            ax.hist(scores.loc[scores.image_guidance == level, column], bins=bins, histtype="step", color=color, label=f"λ={level}")
        if column in thresholds:
            ax.axvline(thresholds[column], color="crimson", linestyle="--", label="threshold")
        ax.set_title(title)
        ax.set_xlabel("cosine similarity")
    axes[1].legend(fontsize=7, ncol=2)
    return _png(fig)


def kept_per_class(summary: pd.DataFrame) -> bytes:
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(summary)), 3))
    x = np.arange(len(summary))
    ax.bar(x, summary["kept"], color="seagreen", label="kept")
    ax.bar(x, summary["dropped"], bottom=summary["kept"], color="indianred", label="dropped")
    ax.set_xticks(x, [plain(n) for n in summary["class_name"]], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("synthetic images")
    ax.legend()
    return _png(fig)


def curriculum_timeline(logs: pd.DataFrame) -> bytes:
    """Image guidance of the synthetic data per epoch; real-only epochs drawn at 'real'."""
    fig, ax = plt.subplots(figsize=(8, 3))
    for method, log in logs.groupby("method", sort=False):
        level = log["level"].where(log["level"] >= 0, 110)
        ax.step(log["epoch"], level, where="post", label=plain(method), linewidth=2, alpha=0.8)
    ax.set_yticks([0, 25, 50, 75, 100, 110], ["0", "25", "50", "75", "100", "real only"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("image guidance λ")
    ax.legend(fontsize=8)
    return _png(fig)


def training_curves(logs: pd.DataFrame) -> bytes:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for method, log in logs.groupby("method", sort=False):
        axes[0].plot(log["epoch"], log["train_loss"], label=plain(method))
        axes[1].plot(log["epoch"], 100 * log["val_acc"], label=plain(method))
    axes[0].set_title("training loss")
    axes[1].set_title("validation top-1 (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[1].legend(fontsize=8)
    return _png(fig)


def progress_per_level(curriculum: pd.DataFrame) -> bytes:
    """Adaptive curricula: each level's score (mean progress, after smoothing) at each stage end;
    filled markers are the levels chosen for the next stage."""
    fig, ax = plt.subplots(figsize=(8, 3))
    for level, rows in curriculum.groupby("level"):
        line, = ax.plot(rows["stage"], rows["smoothed"], marker="o", fillstyle="none", label=f"λ={level}")
        chosen = rows[rows["chosen"]] if "chosen" in rows else rows.iloc[:0]
        ax.plot(chosen["stage"], chosen["smoothed"], "o", color=line.get_color())
    ax.set_xlabel("stage")
    ax.set_ylabel("mean progress")
    ax.legend(fontsize=8, ncol=2)
    return _png(fig)
