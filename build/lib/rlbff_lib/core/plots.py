"""Figures: one function per figure, each returning a matplotlib Figure; :func:`show` writes and shows it.

Figures are written atomically (temporary file, then rename) as PNG, and also as
SVG when asked, so a crash never leaves a half-drawn figure that DVC would trust.
In a notebook, :func:`show` also displays the saved PNG, embedded, so the executed
notebook shows it wherever it is opened (and the Markdown export links the file).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402

DOMAIN_COLORS = {"general": "#4C72B0", "stem": "#DD8452", "code": "#55A868", "multilingual": "#C44E52"}


def save(fig, path: str | Path, svg: bool = False, dpi: int = 120) -> None:
    """Save ``fig`` to ``path`` (PNG) atomically, plus ``path`` with .svg when ``svg``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, fmt in [(path, "png")] + ([(path.with_suffix(".svg"), "svg")] if svg else []):
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=f".{fmt}")
        os.close(fd)
        os.chmod(tmp, 0o644)
        try:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata={"Software": None} if fmt == "png" else None)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    plt.close(fig)


def show(fig, path: str | Path, caption: str | None = None, svg: bool = False, dpi: int = 120) -> None:
    """:func:`save` ``fig`` to ``path``, then :func:`show_file` it."""
    save(fig, path, svg=svg, dpi=dpi)
    show_file(path, caption)


def show_file(path: str | Path, caption: str | None = None) -> None:
    """Display a saved PNG in the running notebook (nothing outside IPython), embedded, with output
    metadata ``{"rlbff": {"figure": path, "caption": caption}}`` (``path`` relative to the current folder,
    the repository root in a stage) from which the Markdown export writes a link instead."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    if get_ipython() is None:
        return
    from IPython.display import Image, display

    path = Path(path)
    try:
        rel = str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        rel = str(path.resolve())
    display(Image(filename=str(path)), metadata={"rlbff": {"figure": rel, "caption": caption or path.stem}})


def property_prevalence(summary: dict):
    """Bar chart: share of responses satisfying each property (ground truth), with counts."""
    props = summary.get("properties", {})
    names = list(props)
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names) + 2), 3.6))
    shares = [props[n]["yes_share"] for n in names]
    bars = ax.bar(names, shares, color="#4C72B0")
    for b, n in zip(bars, names):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 0.01, str(props[n]["responses"]),
                ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of responses satisfying it")
    ax.set_title("Synthetic world: ground-truth property prevalence (labels: responses where it applies)")
    ax.tick_params(axis="x", rotation=45)
    for t in ax.get_xticklabels():
        t.set_ha("right")
    return fig


def preference_histogram(summary: dict, records_per_domain: dict | None = None):
    """Histogram of ``overall_preference`` (−3..3) and records per domain."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    hist = summary.get("preference", {}).get("histogram", {})
    xs = list(range(-3, 4))
    axes[0].bar(xs, [hist.get(str(x), 0) for x in xs], color="#55A868")
    axes[0].set_xlabel("overall_preference (negative: response 1 better)")
    axes[0].set_ylabel("records")
    axes[0].set_title("Preference labels")
    dom = records_per_domain or summary.get("records_per_domain", {})
    axes[1].bar(list(dom), list(dom.values()), color=[DOMAIN_COLORS.get(d, "gray") for d in dom])
    axes[1].set_title("Records per domain")
    return fig


def loss_curves(curves: dict[str, list[dict]], title: str, ylabel: str = "loss (nats/token)", key: str = "loss"):
    """Line plot of several ``[{step, <key>}]`` curves, one line each."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, curve in curves.items():
        if curve:
            ax.plot([c["step"] for c in curve], [c[key] for c in curve], marker=".", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if any(curves.values()):
        ax.legend()
    return fig


# ---------------------------------------------------------------- stage `principles`

def principles_funnel(metrics: dict):
    """Bars: principles left after each filter, with our removal share beside the paper's."""
    funnel = metrics.get("funnel") or {}
    if not funnel and "released" in metrics:
        funnel = {"0_released records": {"count": metrics["released"]["records"]},
                  "1_items": {"count": metrics["released"]["items"]}}
    keys = sorted(funnel)
    labels = [k.split("_", 1)[1] for k in keys]
    counts = [funnel[k]["count"] for k in keys]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(keys) + 1.4))
    bars = ax.barh(labels[::-1], counts[::-1], color="#4C72B0")
    for b, k in zip(bars, keys[::-1]):
        row = funnel[k]
        note = f"{row['count']:,}"
        if row.get("removed_share_of_step") is not None:
            note += f"  (-{100 * row['removed_share_of_step']:.1f}%"
            if "paper_removed_share" in row:
                note += f"; paper -{100 * row['paper_removed_share']:.1f}%"
            note += ")"
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2, " " + note, va="center", fontsize=8)
    ax.set_xlim(0, max(counts or [1]) * 1.6)
    ax.set_xlabel("principles left (items: merged per response and principle)")
    ax.set_title("Principle funnel: removal share of each step's input, ours vs paper")
    return fig


def principles_top(top: dict, title: str = "Most frequent principles after consensus"):
    """Horizontal stacked bars (Yes / No) of the most frequent principles: ``{principle: {items, yes_share}}``."""
    names = list(top)[::-1]
    yes = [top[n]["items"] * top[n]["yes_share"] for n in names]
    no = [top[n]["items"] - y for n, y in zip(names, yes)]
    fig, ax = plt.subplots(figsize=(7.5, 0.3 * len(names) + 1.2))
    ax.barh(names, yes, color="#55A868", label="Yes")
    ax.barh(names, no, left=yes, color="#C44E52", label="No")
    ax.set_xlabel("items")
    ax.set_title(title)
    if names:
        ax.legend(loc="lower right")
    return fig


def principles_threshold(sweep: dict, curve: dict | None = None, chosen: float | None = None,
                         paper_items: dict | None = None, accuracy_before: float | None = None):
    """Consensus threshold: items kept (left) and synthetic accuracy (right), the params sweep as
    markers over a fine grid; the paper's item counts relative to its 0.8 count, beside ours."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for data, style, label in ((curve or {}, "-", "grid"), (sweep, "o", "params sweep")):
        ts = sorted(data, key=float)
        if not ts:
            continue
        ax1.plot([float(t) for t in ts], [data[t]["items"] for t in ts], style, color="#4C72B0",
                 label=f"items kept ({label})", ms=7)
        acc = [(float(t), data[t].get("accuracy")) for t in ts if data[t].get("accuracy") is not None]
        if acc:
            ax2.plot(*zip(*acc), style, color="#DD8452", label=f"synthetic accuracy ({label})", ms=7)
    if paper_items and "0.8" in sweep and sweep["0.8"]["items"]:
        base = sweep["0.8"]["items"] / paper_items["0.8"]
        ts = sorted(paper_items, key=float)
        ax1.plot([float(t) for t in ts], [paper_items[t] * base for t in ts], "s--", color="gray",
                 label="paper, scaled to our 0.8 count")
    if accuracy_before is not None:
        ax2.axhline(accuracy_before, color="gray", ls=":", label="without consensus")
    for ax in (ax1, ax2):
        if chosen is not None:
            ax.axvline(chosen, color="k", lw=0.8, alpha=0.5)
        ax.set_xlabel("consensus threshold (cosine)")
        ax.legend(fontsize=7)
    ax1.set_ylabel("items (response, principle)")
    ax2.set_ylabel("share of items matching the truth")
    ax1.set_title("Items kept")
    ax2.set_title("Synthetic accuracy")
    return fig


def principles_properties(before: dict, after: dict):
    """Per world property: precision and recall of the items, before and after consensus."""
    import numpy as np

    names = list(after)
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, key in zip(axes, ("precision", "recall")):
        for off, data, label, color in ((-0.2, before, "before consensus", "#8C8C8C"),
                                        (0.2, after, "after consensus", "#4C72B0")):
            ax.bar(x + off, [data[n][key] or 0 for n in names], 0.4, label=label, color=color)
        ax.set_xticks(x, names, rotation=45, ha="right")
        ax.set_title(key)
        ax.set_ylim(0, 1.05)
    axes[1].legend(fontsize=8, loc="upper right", bbox_to_anchor=(1.0, 0.9))
    fig.suptitle("Synthetic world: per-property precision and recall (vs salient remarks)")
    return fig


# ---------------------------------------------------------------- bars



def bar_labels(ax, bars, values, fmt="{:.0f}", fontsize=6):
    for b, v in zip(bars, values):
        if v is not None:
            ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 1, fmt.format(v), ha="center", va="bottom",
                    fontsize=fontsize, rotation=90)


# ---------------------------------------------------------------- stage `reward_models`

def rm_training_curves(logs: dict):
    """Left: training loss of each trainer (scalar RM, BT, GenRM SFT); right: GenRM GRPO reward.

    ``logs``: name -> training log (``train`` = [{step, loss, ...}]; the GenRM's has ``stages``).
    """
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, rec in logs.items():
        stages = rec.get("stages") or {name: rec}
        for stage, r in stages.items():
            pts = [p for p in r.get("train", []) if "loss" in p]
            label = name if stage == name else f"{name} {stage}"
            if pts and stage != "grpo":
                ax.plot([p["step"] for p in pts], [p["loss"] for p in pts], marker=".", label=label)
            if stage == "grpo":
                pts = [p for p in r.get("train", []) if "reward" in p]
                ax2.plot([p["step"] for p in pts], [p["reward"] for p in pts], marker=".", label="mean reward")
                acc = [p for p in pts if "accuracy" in p]
                if acc:
                    ax2b = ax2.twinx()
                    ax2b.plot([p["step"] for p in acc], [p["accuracy"] for p in acc], color="#C44E52", marker=".",
                              label="accuracy (reward > 0)")
                    ax2b.set_ylim(0, 1)
                    ax2b.set_ylabel("accuracy")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats)")
    ax.set_title("Reward-model training")
    ax.legend(fontsize=8)
    ax2.set_xlabel("GRPO step")
    ax2.set_ylabel("reward: log P(label) - log P(other)")
    ax2.set_title("GenRM GRPO")
    return fig


def calibration_plot(calibrations: dict):
    """Reliability diagram: observed Yes rate against P(Yes) = sigmoid(score), one line per model."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="perfect calibration")
    for name, cal in calibrations.items():
        b = cal["bins"]
        ax.plot([r["predicted"] for r in b], [r["observed"] for r in b], marker="o",
                label=f"{name} (ECE {cal['ece']:.3f})")
    ax.set_xlabel("predicted P(Yes) = sigmoid(score)")
    ax.set_ylabel("observed share of Yes labels")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("Calibration on validation + PrincipleBench")
    ax.legend(fontsize=8)
    return fig


def grouped_accuracy(groups: dict, title: str, baseline: dict | None = None, ylabel: str = "accuracy",
                     baseline_label: str = "majority baseline"):
    """Grouped bars: ``groups`` = model -> {category: share in [0, 1]}; optional per-category baseline."""
    import numpy as np

    cats = sorted({c for g in groups.values() for c in g})
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(cats) + 2), 3.6))
    width = 0.8 / max(1, len(groups))
    x = np.arange(len(cats))
    for k, (name, g) in enumerate(groups.items()):
        ax.bar(x + k * width - 0.4 + width / 2, [g.get(c, float("nan")) for c in cats], width, label=name)
    if baseline:
        ax.scatter(x, [baseline.get(c, float("nan")) for c in cats], color="black", marker="_", s=300, zorder=3,
                   label=baseline_label)
    ax.set_xticks(x, cats, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------- stage `alignment`

def grpo_curves(curves: dict):
    """GRPO runs side by side: mean reward, KL to the reference policy and completion length per step.

    ``curves``: run name -> ``[{step, reward, kl, completion_length}]`` (missing keys skipped).
    Runs sharing a reward (``"<reward> s<seed>"``) share a colour.
    """
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    groups = list(dict.fromkeys(name.rsplit(" s", 1)[0] for name in curves))
    colors = {g: f"C{i}" for i, g in enumerate(groups)}
    labelled = set()
    for name, pts in curves.items():
        group = name.rsplit(" s", 1)[0]
        for ax, key in zip(axes, ("reward", "kl", "completion_length")):
            xy = [(p["step"], p[key]) for p in pts if p.get(key) is not None]
            if xy:
                ax.plot(*zip(*xy), marker=".", color=colors[group], alpha=0.8,
                        label=None if (group, key) in labelled else group)
                labelled.add((group, key))
    for ax, ylabel in zip(axes, ("mean reward (RM score)", "KL to the SFT policy (nats/token)",
                                  "completion length (tokens)")):
        ax.set_xlabel("GRPO step")
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=8)
    fig.suptitle("GRPO of the smoke policy, one line per seed")
    fig.tight_layout()
    return fig

