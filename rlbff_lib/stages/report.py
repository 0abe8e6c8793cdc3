"""The final report: the paper's tables and figures from every stage's metrics, ours beside the paper's.

Inputs (each optional: a stage not run yet gives "not available" in its figure or table, and
:func:`load_inputs` lists it as missing)::

    outputs/details/data.json  assets.json  principles.json  reward_models.json  rm_eval.json  alignment.json
    metrics/rm_eval.md
    metrics/secrets_ablation.json   (not a stage's: :mod:`rlbff_lib.reward_models.secrets`; :func:`secrets_table`)

(``outputs/details/NAME.json``: all that stage NAME measured; its ``metrics/NAME.json`` holds only the headline
numbers, :func:`rlbff_lib.core.stage.write_metrics`.)

Every builder takes plain metrics dicts and returns a matplotlib Figure (figures) or a Markdown
string (tables); nothing here reads files except :func:`load_inputs`. The paper's numbers are in
:data:`PAPER`, copied once from the project's reference (``../shared/reference/rlbff.md``).

Shapes read (tolerant: a key that is absent gives "—", never an error):

- ``rm_eval.json``: ``models[name] = {label, kind, model: {parameters}, samples,
  rmbench: {chat, math, code, safety, easy, normal, hard, overall}`` (or the per-domain scores
  under ``groups[d].score``), ``judgebench: {knowledge, reasoning, math, code, overall}`` (or
  ``groups[g].accuracy``), ``principlebench: number | {accuracy, majority}}``; percent; and
  ``principlebench_paired[key] = {a, b, n, difference, ci, p_value}`` (:func:`principlebench_paired_text`).
- ``alignment.json``: ``policies`` (or ``models``) ``[name] = {label, mt_bench, arena_hard, wildbench}``,
  or top-level ``mt_bench`` / ``arena_hard`` / ``wildbench`` (one result, or name -> result). An
  MT-Bench result is a number, ``{overall}`` or ``{scores: {overall}}`` (1-10); an Arena-Hard v2
  result a number or ``{win_rate, ci: [lo, hi]}`` (percent; the official default category,
  hard_prompt against o3-mini), optionally with ``categories[c] = {win_rate, ci, baseline}``,
  ``skipped[c]`` (why a category was not scored) and ``pooled`` (ours); a WildBench result a number
  or ``{wb_score: {task_macro}}`` (WB-Score), optionally with ``wb_reward_mix: {task_macro}`` and
  ``missing_references``. ``fulfilment``:
  ``{before, after, gain: {mean, std, ci?, p_value?}, seeds}`` where before/after are a share, ``{rates: {property:
  share}, rates_ci?, trained, held_out}`` or ``{property: share}``, and ``seeds`` a count or a list of
  ``{seed, before, after, gain}``. ``curves``: ``[{step, reward, kl, completion_length}]`` or name
  -> such a list (also ``runs[name].curves``); ``length_reward``: optional ``[{length, reward}]``.
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from rlbff_lib.core.io import DataError
from rlbff_lib.core.paper import PAPER

# ------------------------------------------------------------------ configuration


@dataclass
class ReportConfig:
    """The ``report`` stage.

    svg: also write every figure as SVG beside its PNG. dpi: PNG resolution (dots per inch).
    top_principles: principles shown in the frequency figure (most frequent first).
    """

    svg: bool = True
    dpi: int = 120
    top_principles: int = 20

    def __post_init__(self):
        if not 50 <= self.dpi <= 600:
            raise ValueError(f"dpi: must be in [50, 600], got {self.dpi}")
        if self.top_principles < 1:
            raise ValueError(f"top_principles: must be >= 1, got {self.top_principles}")


INPUTS: dict[str, str] = {  # name -> file, relative to the repository root
    "data": "outputs/details/data.json",
    "assets": "outputs/details/assets.json",
    "principles": "outputs/details/principles.json",
    "reward_models": "outputs/details/reward_models.json",
    "rm_eval": "outputs/details/rm_eval.json",
    "rm_eval_md": "metrics/rm_eval.md",
    "alignment": "outputs/details/alignment.json",
    "secrets": "metrics/secrets_ablation.json",  # optional: python -m rlbff_lib.reward_models.secrets (not a stage)
}
FUNNEL_STEPS = ("evidence", "helpfulness", "partially", "consensus")
RMBENCH_COLS = ("chat", "math", "code", "safety", "easy", "normal", "hard", "overall")
JUDGEBENCH_COLS = ("knowledge", "reasoning", "math", "code", "overall")
NA = "—"
COLORS = {"ours": "#4C72B0", "paper": "#8C8C8C", "accent": "#DD8452", "green": "#55A868", "red": "#C44E52"}


# ------------------------------------------------------------------ inputs


def load_inputs(root: str | os.PathLike = ".") -> tuple[dict[str, Any], list[str]]:
    """Every input of :data:`INPUTS` that exists under ``root`` (the repository): (name -> parsed JSON or
    Markdown text, missing names).

    A file that exists but is not valid JSON raises :class:`~rlbff_lib.core.io.DataError` naming it
    (a broken metrics file is a bug to fix, not a stage to skip).
    """
    root = Path(root)
    found: dict[str, Any] = {}
    missing: list[str] = []
    for name, filename in INPUTS.items():
        path = root / filename
        if not path.exists():
            missing.append(name)
            continue
        text = path.read_text(encoding="utf-8")
        if filename.endswith(".md"):
            found[name] = text
            continue
        try:
            found[name] = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, f"invalid JSON ({e.msg})", line=e.lineno) from None
    return found, missing


def missing_note(name: str) -> str:
    """Why a figure or table is empty: which metrics file, from which stage."""
    return f"not available: {INPUTS[name]} is missing (stage `{name.removesuffix('_md')}` not run yet)"


def _get(d: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(d, Mapping) or key not in d:
            return default
        d = d[key]
    return d


def _num(v: Any) -> float | None:
    """A finite number, else ``None`` (booleans are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def fmt(v: Any, digits: int = 1, suffix: str = "") -> str:
    x = _num(v)
    return NA if x is None else f"{x:.{digits}f}{suffix}"


# ------------------------------------------------------------------ scale of the run


def machine() -> dict:
    """The machine running this process: CPU model, logical cores, GPU (name or ``None``)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f"{torch.cuda.device_count()}× {torch.cuda.get_device_name(0)}"
    except ImportError:  # pragma: no cover
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu}


def _model_text(info: Mapping) -> str:
    params = _num(info.get("parameters"))
    name = str(info.get("name_or_path", "?"))
    size = f"{params / 1e9:.1f}B" if params and params >= 1e9 else f"{params / 1e6:.1f}M" if params else "?"
    built = name.startswith("models/") or name == "config"
    return f"{size}-parameter {'Qwen3 built from a config' if built else name}"


def scale_text(inputs: Mapping[str, Any], profile: str, host: Mapping | None = None) -> str:
    """One plain sentence on the scale of this run: profile, models, data, hardware.

    E.g. ``smoke profile: 1.3M-parameter Qwen3 built from a config (reward and policy) on a
    synthetic feedback world of 2,000 prompts (12,000 feedback texts); CPU (…, 2 cores)``.
    """
    host = host or machine()
    models = _get(inputs, "assets", "models") or {}
    texts = {role: _model_text(info) for role, info in models.items() if isinstance(info, Mapping)}
    if texts and len(set(texts.values())) == 1:
        model = f"{next(iter(texts.values()))} ({' and '.join(texts)})"
    elif texts:
        model = "; ".join(f"{role}: {t}" for role, t in texts.items())
    else:
        model = "models unknown (outputs/details/assets.json missing)"
    data = inputs.get("data")
    if not isinstance(data, Mapping):
        source = "data unknown (outputs/details/data.json missing)"
    elif data.get("properties"):
        source = (f"a synthetic feedback world of {data.get('records', 0):,} prompts "
                  f"({data.get('feedback_texts', 0):,} feedback texts)")
    else:
        source = f"HelpSteer3, {data.get('records', 0):,} records ({data.get('feedback_texts', 0):,} feedback texts)"
    hw = f"GPU: {host['gpu']}" if host.get("gpu") else f"CPU only ({host.get('cpu')}, {host.get('cores')} cores)"
    return f"{profile} profile: {model} on {source}; {hw}"


# ------------------------------------------------------------------ figures: helpers


def _plt():
    from rlbff_lib.core import plots  # noqa: F401  (sets the headless backend)
    import matplotlib.pyplot as plt

    return plt


def unavailable_figure(title: str, reason: str):
    """A small figure that says what is missing instead of a plot."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, reason, ha="center", va="center", fontsize=9, wrap=True, color="#444444")
    return fig


def table_figure(header: Sequence[str], rows: Sequence[Sequence[str]], title: str, note: str | None = None,
                 highlight: Sequence[int] = ()):
    """A table drawn as a figure (rows of strings); rows in ``highlight`` are ours (tinted)."""
    plt = _plt()
    width = max(6.0, 0.95 * len(header) + 2.0)
    fig, ax = plt.subplots(figsize=(width, 0.2 * (len(rows) + 1) + 0.7))
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    table = ax.table(cellText=[list(r) for r in rows], colLabels=list(header), loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.auto_set_column_width(list(range(len(header))))
    table.scale(1, 1.25)
    for (r, _), cell in table.get_celld().items():
        if r == 0:
            cell.set_facecolor("#E8E8E8")
        elif r - 1 in highlight:
            cell.set_facecolor("#E6EEF8")
    if note:
        fig.text(0.01, -0.02, note, fontsize=7, color="#444444", wrap=True)
    return fig


# ------------------------------------------------------------------ principles (§2-§3)


def funnel_rows(principles: Mapping) -> list[dict]:
    """Per filter step: ``{step, count, removed_share (of the step's input), paper_removed_share}``.

    Reads ``funnel`` of ``outputs/details/principles.json`` (keys ``<n>_<step>``); the paper's shares come
    from :data:`PAPER` (none for consensus: the paper gives only its result, ~33k items).
    """
    funnel = principles.get("funnel") or {}
    by_step = {k.split("_", 1)[-1]: v for k, v in funnel.items() if isinstance(v, Mapping)}
    rows = []
    for step in FUNNEL_STEPS:
        row = by_step.get(step)
        if row is None:
            continue
        rows.append({"step": step, "count": row.get("count"), "removed_share": _num(row.get("removed_share_of_step")),
                     "paper_removed_share": PAPER["funnel_removed"].get(step)})
    return rows


def funnel_figure(principles: Mapping | None):
    """Left: principles left after each step (ours). Right: share each step removes, ours vs paper;
    and the share of extracted principles that end as items, ours vs the paper's ~33k / ~1.2M."""
    if not principles:
        return unavailable_figure("Principle funnel", missing_note("principles"))
    rows = funnel_rows(principles)
    funnel = principles.get("funnel") or {}
    if not rows:
        return unavailable_figure("Principle funnel", "not available: outputs/details/principles.json has no funnel "
                                                      "(released principles were read, no extraction)")
    import numpy as np

    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1, 1.4]})
    first = next((v for k, v in sorted(funnel.items()) if k.split("_", 1)[-1] == "extracted"), None)
    items = next((v for k, v in sorted(funnel.items()) if k.split("_", 1)[-1] == "items"), None)
    labels = (["extracted"] if first else []) + [r["step"] for r in rows] + (["items"] if items else [])
    counts = ([first["count"]] if first else []) + [r["count"] for r in rows] + ([items["count"]] if items else [])
    bars = ax1.barh(labels[::-1], counts[::-1], color=COLORS["ours"])
    for b, c in zip(bars, counts[::-1]):
        ax1.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {c:,}", va="center", fontsize=8)
    ax1.set_xlim(0, max(counts) * 1.3)
    ax1.set_xlabel("principles left after the step (ours)")
    ax1.set_title("Ours: principles left")
    x = np.arange(len(rows) + 1)
    ours = [100 * (r["removed_share"] or 0) for r in rows]
    paper = [100 * r["paper_removed_share"] if r["paper_removed_share"] is not None else None for r in rows]
    share_items = _num((items or {}).get("share_of_extracted"))
    ours.append(100 * share_items if share_items is not None else 0)
    paper.append(100 * PAPER["items_after_consensus"] / PAPER["principles_extracted"])
    ax2.bar(x - 0.2, ours, 0.4, color=COLORS["ours"], label="ours")
    ax2.bar(x + 0.2, [p if p is not None else 0 for p in paper], 0.4, color=COLORS["paper"], label="paper")
    for xi, o, p in zip(x, ours, paper):
        ax2.text(xi - 0.2, o, f"{o:.1f}", ha="center", va="bottom", fontsize=7)
        ax2.text(xi + 0.2, p if p is not None else 0, f"{p:.1f}" if p is not None else "n/a", ha="center",
                 va="bottom", fontsize=7)
    ax2.set_xticks(x, [f"{r['step']}\n(removed)" for r in rows] + ["kept as items\n(of extracted)"], fontsize=8)
    ax2.set_ylabel("percent")
    ax2.set_title("Removed by each step (share of its input) and kept overall")
    ax2.legend(fontsize=8)
    fig.suptitle("Principle funnel, ours vs paper (paper: ~1.2M principles -> ~33k items)")
    fig.tight_layout()
    return fig


def principle_frequency_figure(principles: Mapping | None, top: int = 20):
    """Most frequent principles: items after consensus (stacked Yes / No), and principles after the
    Partially filter; the number of distinct principles beside the paper's "over 1,000"."""
    if not principles:
        return unavailable_figure("Principle frequencies", missing_note("principles"))
    after = _get(principles, "top_principles", "after_consensus") or {}
    before = _get(principles, "top_principles", "after_partially") or {}
    if not after and not before:
        return unavailable_figure("Principle frequencies",
                                  f"not available: no top_principles in {INPUTS['principles']}")
    plt = _plt()
    n = max(len(after), len(before), 1)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.28 * min(n, top) + 1.8))
    names = sorted(after, key=lambda k: -after[k]["items"])[:top][::-1]
    yes = [after[k]["items"] * after[k]["yes_share"] for k in names]
    no = [after[k]["items"] - y for k, y in zip(names, yes)]
    axes[0].barh(names, yes, color=COLORS["green"], label="Yes")
    axes[0].barh(names, no, left=yes, color=COLORS["red"], label="No")
    axes[0].set_xlabel("items after consensus")
    axes[0].legend(fontsize=8, loc="lower right")
    distinct = _get(principles, "consensus", "distinct_principles")
    axes[0].set_title(f"After consensus ({distinct if distinct is not None else len(after)} distinct; "
                      f"paper: over {PAPER['unique_principles_at_least']:,})", fontsize=9)
    names_b = sorted(before, key=lambda k: -before[k])[:top][::-1]
    axes[1].barh(names_b, [before[k] for k in names_b], color=COLORS["ours"])
    axes[1].set_xlabel("principles after the Partially filter")
    axes[1].set_title("Before consensus", fontsize=9)
    fig.suptitle("Principle frequencies (ours)")
    fig.tight_layout()
    return fig


def threshold_rows(principles: Mapping | None) -> list[dict]:
    """Per consensus threshold: ours (items, synthetic item accuracy %) and the paper's
    (items, RM-Bench, JudgeBench). Thresholds of either side; ``None`` where one side has none."""
    sweep = _get(principles, "consensus", "sweep") or {}
    ours = {round(float(t), 4): v for t, v in sweep.items()}
    rows = []
    for t in sorted(set(ours) | set(PAPER["threshold"])):
        o, p = ours.get(t, {}), PAPER["threshold"].get(t, {})
        acc = _num(o.get("accuracy"))
        rows.append({"threshold": t, "items": o.get("items"), "accuracy": 100 * acc if acc is not None else None,
                     "paper_items": p.get("items"), "paper_rmbench": p.get("rmbench"),
                     "paper_judgebench": p.get("judgebench")})
    return rows


def threshold_figure(principles: Mapping | None):
    """Consensus-threshold ablation: items kept (ours, left axis; paper, right axis), our synthetic
    item accuracy, and the paper's scalar-RM RM-Bench / JudgeBench per threshold."""
    rows = threshold_rows(principles)
    plt = _plt()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.6))
    ours = [r for r in rows if r["items"] is not None]
    if ours:
        ax1.plot([r["threshold"] for r in ours], [r["items"] for r in ours], "o-", color=COLORS["ours"],
                 label="ours (left axis)")
        ax2.plot([r["threshold"] for r in ours if r["accuracy"] is not None],
                 [r["accuracy"] for r in ours if r["accuracy"] is not None], "o-", color=COLORS["ours"],
                 label="ours: items matching the world's truth")
    else:
        for ax in (ax1, ax2):
            ax.text(0.5, 0.5, missing_note("principles") if not principles else "not available: no consensus sweep",
                    ha="center", va="center", fontsize=7, transform=ax.transAxes, wrap=True)
    paper = [r for r in rows if r["paper_items"] is not None]
    twin = ax1.twinx()
    twin.plot([r["threshold"] for r in paper], [r["paper_items"] / 1000 for r in paper], "s--", color=COLORS["paper"],
              label="paper (right axis, thousands)")
    twin.set_ylabel("paper: items (thousands)")
    ax1.set_ylabel("ours: items")
    ax1.set_title("Items kept")
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, fontsize=7)
    ax2.set_ylabel("percent")
    ax2.set_title("Ours: synthetic accuracy of the items")
    if ours:
        ax2.legend(fontsize=7)
    ax3.plot([r["threshold"] for r in paper], [r["paper_rmbench"] for r in paper], "s--", color=COLORS["paper"],
             label="paper: RM-Bench")
    ax3.plot([r["threshold"] for r in paper], [r["paper_judgebench"] for r in paper], "^--", color=COLORS["accent"],
             label="paper: JudgeBench")
    ax3.set_ylabel("scalar RM accuracy (percent)")
    ax3.set_title("Paper: scalar RM trained on each set")
    ax3.legend(fontsize=7)
    for ax in (ax1, ax2, ax3):
        ax.set_xlabel("consensus threshold (cosine)")
    fig.suptitle("Consensus threshold ablation (ours: a known-truth synthetic world; paper: HelpSteer3, RM accuracy)")
    fig.tight_layout()
    return fig


def threshold_table(principles: Mapping | None) -> str:
    lines = ["| threshold | ours: items | ours: synthetic accuracy (%) | paper: items | paper: RM-Bench | "
             "paper: JudgeBench |", "|---:|---:|---:|---:|---:|---:|"]
    for r in threshold_rows(principles):
        lines.append(f"| {r['threshold']:g} | {r['items'] if r['items'] is not None else NA} | {fmt(r['accuracy'])} | "
                     f"{'~{:,}'.format(r['paper_items']) if r['paper_items'] else NA} | {fmt(r['paper_rmbench'])} | "
                     f"{fmt(r['paper_judgebench'])} |")
    return "\n".join(lines)


def principles_summary_table(principles: Mapping | None) -> str:
    """Funnel shares, label balance and principles per feedback, ours beside the paper's."""
    if not principles:
        return missing_note("principles")
    lines = ["| quantity | ours | paper |", "|---|---:|---:|"]
    for r in funnel_rows(principles):
        paper = fmt(100 * r["paper_removed_share"], 1, "%") if r["paper_removed_share"] is not None else NA
        ours = fmt(100 * r["removed_share"], 1, "%") if r["removed_share"] is not None else NA
        lines.append(f"| removed by `{r['step']}` (share of the step's input) | {ours} | {paper} |")
    items = next((v for k, v in (principles.get("funnel") or {}).items() if k.endswith("_items")), {})
    lines.append(f"| items after consensus | {items.get('count', NA)} | ~{PAPER['items_after_consensus']:,} "
                 f"(released: {PAPER['released_items']:,}) |")
    share = _num(items.get("share_of_extracted"))
    lines.append(f"| items / extracted principles | {fmt(100 * share if share is not None else None, 2, '%')} | "
                 f"{100 * PAPER['items_after_consensus'] / PAPER['principles_extracted']:.2f}% |")
    yes = _get(principles, "labels", "after_partially", "yes_share")
    lines.append(f"| Yes share after the Partially filter | {fmt(100 * yes if _num(yes) is not None else None, 1, '%')} | "
                 f"{100 * PAPER['labels_after_partially']['yes']:.1f}% |")
    ppf = _get(principles, "principles_per_feedback", "after_consensus", "texts_with_one_or_more") or {}
    p = PAPER["principles_per_feedback"]
    lines.append(f"| principles per feedback (texts with one or more) | {fmt(ppf.get('mean'), 2)} ± "
                 f"{fmt(ppf.get('std'), 2)} | {p['mean']} ± {p['std']} |")
    acc = _get(principles, "synthetic", "accuracy_after_consensus")
    h = PAPER["human_check"]
    lines.append(f"| items that are right (ours: against the world's truth; paper: human agreement on "
                 f"{h['items']} items) | {fmt(100 * acc if _num(acc) is not None else None, 1, '%')} | "
                 f"{h['agreement']}% (κ {h['fleiss_kappa']}) |")
    return "\n".join(lines)


# ------------------------------------------------------------------ reward models (§5)


def _bench_value(part: Any, key: str) -> float | None:
    if not isinstance(part, Mapping):
        return None
    if _num(part.get(key)) is not None:
        return _num(part.get(key))
    group = _get(part, "groups", key)
    if isinstance(group, Mapping):
        return _num(group.get("score", group.get("accuracy")))
    return _num(group)


def rm_cells(result: Mapping) -> dict[str, float | None]:
    """One model's numbers as ``{"rmbench.chat": x, ..., "judgebench.overall": x, "principlebench": x}``."""
    cells = {f"rmbench.{c}": _bench_value(result.get("rmbench"), c) for c in RMBENCH_COLS}
    cells.update({f"judgebench.{c}": _bench_value(result.get("judgebench"), c) for c in JUDGEBENCH_COLS})
    pb = result.get("principlebench")
    cells["principlebench"] = _num(pb) if not isinstance(pb, Mapping) else _num(pb.get("accuracy"))
    return cells


RM_COLUMNS = [f"rmbench.{c}" for c in RMBENCH_COLS] + [f"judgebench.{c}" for c in JUDGEBENCH_COLS] + ["principlebench"]


def _rm_header() -> list[str]:
    return (["model"] + [f"RMB {c}" for c in RMBENCH_COLS] + [f"JB {c}" for c in JUDGEBENCH_COLS]
            + ["PrincipleBench (items)"])


def _model_label(name: str, result: Mapping) -> str:
    label = str(result.get("label") or name)
    params = _num(_get(result, "model", "parameters"))
    if params:
        label += f" [{params / 1e9:.1f}B]" if params >= 1e9 else f" [{params / 1e6:.1f}M]"
    return f"ours: {label}"


def rm_rows(rm_eval: Mapping | None) -> tuple[list[list[str]], list[int]]:
    """Table rows (strings): each of our models followed by the paper's row of the same kind, then
    the paper's other rows. Returns (rows, indices of our rows)."""
    rows: list[list[str]] = []
    ours_idx = []
    shown = set()
    models = (rm_eval or {}).get("models") or {}
    for name, result in models.items():
        if not isinstance(result, Mapping):
            continue
        ours_idx.append(len(rows))
        cells = rm_cells(result)
        rows.append([_model_label(name, result)] + [fmt(cells[c]) for c in RM_COLUMNS])
        kind = result.get("kind", name)
        if kind in PAPER["reward_models"] and kind not in shown:
            shown.add(kind)
            rows.append(_paper_rm_row(kind))
    for kind in PAPER["reward_models"]:
        if kind not in shown:
            rows.append(_paper_rm_row(kind))
    return rows, ours_idx


def _paper_rm_row(kind: str) -> list[str]:
    p = PAPER["reward_models"][kind]
    cells = {f"rmbench.{k}": v for k, v in p.get("rmbench", {}).items()}
    cells.update({f"judgebench.{k}": v for k, v in p.get("judgebench", {}).items()})
    cells["principlebench"] = p.get("principlebench")
    return [f"paper: {p['label']}"] + [fmt(cells.get(c)) for c in RM_COLUMNS]


def rm_table(rm_eval: Mapping | None) -> str:
    """Markdown: the paper's reward-model table, our rows beside the paper's (percent)."""
    rows, _ = rm_rows(rm_eval)
    header = _rm_header()
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if not rm_eval:
        lines.append("")
        lines.append(f"Our rows: {missing_note('rm_eval')}.")
    paired = principlebench_paired_text(rm_eval)
    if paired:
        lines += ["", paired]
    return "\n".join(lines)


def principlebench_paired_text(rm_eval: Mapping | None) -> str:
    """Markdown: our models compared on the PrincipleBench items both scored (``rm_eval.json``'s
    ``principlebench_paired[key] = {a, b, n, only_a, only_b, difference, ci, p_value}``, percent points), beside each
    model's own accuracy with its 95% Wilson interval; an order is claimed when the paired interval excludes 0.
    "" without paired results. Pairs in the models' order (``rm_eval.json``'s ``order``; its keys are sorted)."""
    paired = (rm_eval or {}).get("principlebench_paired") or {}
    models = (rm_eval or {}).get("models") or {}
    order = [*((rm_eval or {}).get("order") or []), *models]
    rank = {m: order.index(m) for m in order}
    out = []
    for r in sorted(paired.values(), key=lambda r: tuple(rank.get(r.get(k), len(order)) for k in ("a", "b"))):
        diff, ci, p = _num(r.get("difference")), r.get("ci"), _num(r.get("p_value"))
        if diff is None or not (isinstance(ci, (list, tuple)) and len(ci) == 2) or p is None:
            continue
        names = [str(_get(models, m, "label") or m) for m in (r.get("a"), r.get("b"))]
        pbs = [_get(models, m, "principlebench") for m in (r.get("a"), r.get("b"))]
        alone = " vs ".join(f"{name} {_acc_ci(pb) if isinstance(pb, Mapping) else fmt(pb)}"
                            + (f" on {fmt(_get(pb, 'n'), 0)} items" if _num(_get(pb, "n")) is not None else "")
                            for name, pb in zip(names, pbs))
        text = (f"- {names[0]} − {names[1]}: {diff:+.1f} points [{ci[0]:+.1f}, {ci[1]:+.1f}] on {r.get('n')} common "
                f"items, McNemar exact p = {p:.3g}")
        if ci[0] > 0 or ci[1] < 0:
            ahead, behind = names if diff > 0 else names[::-1]
            text += f": **{ahead} ranks above {behind}**"
            cis = [_get(pb, "ci") for pb in pbs]
            known = all(isinstance(c, (list, tuple)) and len(c) == 2 for c in cis)
            text += ", although their Wilson intervals overlap" if known and not _intervals_apart(*cis) else ""
            text += " (the exact test alone would not say so at 5%)" if p >= 0.05 else ""
        else:
            text += ": the paired interval includes 0, no order is claimed"
        out.append(f"{text}. Alone (Wilson 95%): {alone}.")
    if not out:
        return ""
    return ("PrincipleBench items, paired: the models score the same items, so each pair is compared on the items "
            "both scored (the GenRM's smaller sample lies inside the others'): the difference of accuracies in points "
            "with its 95% percentile-bootstrap interval over items, and the exact McNemar test on the items only one "
            "of the two gets right. An order is claimed when that interval excludes 0.\n\n" + "\n".join(out))


def rm_table_figure(rm_eval: Mapping | None, scale: str):
    rows, ours = rm_rows(rm_eval)
    note = f"Ours ({scale}); paper: {PAPER['reward_models_scale']}. Percent; {NA}: not measured / not given."
    if not rm_eval:
        note = missing_note("rm_eval") + ". " + note
    return table_figure(_rm_header(), rows, "Reward models on RM-Bench (RMB), JudgeBench (JB), PrincipleBench",
                        note, highlight=ours)


def rm_bars_figure(rm_eval: Mapping | None):
    """Headline numbers (RM-Bench, JudgeBench, PrincipleBench): our models (solid) beside the
    paper's row of the same kind (hatched); chance (50) dotted."""
    models = (rm_eval or {}).get("models") or {}
    if not models:
        return unavailable_figure("Reward models: headline numbers", missing_note("rm_eval") if not rm_eval
                                  else "not available: outputs/details/rm_eval.json has no models")
    import numpy as np

    plt = _plt()
    cols = [("rmbench.overall", "RM-Bench"), ("judgebench.overall", "JudgeBench"), ("principlebench", "PrincipleBench")]
    series = []
    palette = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3"]
    for k, (name, result) in enumerate(models.items()):
        color = palette[k % len(palette)]
        series.append((_model_label(name, result), rm_cells(result), color, None))
        kind = result.get("kind", name)
        if kind in PAPER["reward_models"]:
            p = PAPER["reward_models"][kind]
            cells = {"rmbench.overall": _get(p, "rmbench", "overall"), "judgebench.overall": _get(p, "judgebench", "overall"),
                     "principlebench": p.get("principlebench")}
            series.append((f"paper: {p['label']}", cells, color, "//"))
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(series)
    x = np.arange(len(cols))
    for k, (label, cells, color, hatch) in enumerate(series):
        vals = [cells.get(c) for c, _ in cols]
        pos = x - 0.4 + width * (k + 0.5)
        ax.bar(pos, [v or 0 for v in vals], width, color=color if hatch is None else "white", edgecolor=color,
               hatch=hatch, label=label)
        for xi, v in zip(pos, vals):
            ax.text(xi, (v or 0) + 1, f"{v:.0f}" if v is not None else NA, ha="center", va="bottom", fontsize=7)
    ax.axhline(50, color="gray", ls=":", lw=0.8)
    ax.set_xticks(x, [t for _, t in cols])
    ax.set_ylim(0, 115)
    ax.set_ylabel("accuracy (percent)")
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    ax.set_title("Reward models: ours (solid) vs the paper (hatched); dotted: chance")
    return fig


def reward_models_table(reward_models: Mapping | None) -> str:
    """Markdown: validation accuracy (percent, 95% Wilson interval) measured by the ``reward_models``
    stage itself, a training diagnostic; PrincipleBench is the ``rm_eval`` stage's (:func:`rm_table`)."""
    if not reward_models:
        return missing_note("reward_models")
    val = _get(reward_models, "validation", "accuracy") or {}
    ci = _get(reward_models, "validation", "ci") or {}
    n = _get(reward_models, "validation", "n") or {}
    lines = ["| model | validation accuracy (%) | 95% interval | items |", "|---|---:|---:|---:|"]
    for name in val:
        lo_hi = ci.get(name)
        interval = f"[{lo_hi[0]:.1f}, {lo_hi[1]:.1f}]" if isinstance(lo_hi, (list, tuple)) and len(lo_hi) == 2 else NA
        lines.append(f"| {name} | {fmt(val.get(name))} | {interval} | {fmt(n.get(name), 0)} |")
    lines.append(f"| majority label | {fmt(_num(_get(reward_models, 'validation', 'majority_baseline')))} | {NA} | {NA} |")
    return "\n".join(lines)


SECRETS_COMMAND = ("python -m rlbff_lib.reward_models.secrets --principles-dir data/principles "
                   "--base-model models/assets/base_reward --work /tmp/secrets --out metrics/secrets_ablation.json")
SECRETS_COLS = (("validation_pairs", "validation pairs, recorded labels"),
                ("validation_pairs_clean", "validation pairs, labels without mistakes"),
                ("principlebench", "PrincipleBench items"), ("principlebench_pairs", "PrincipleBench pairs"))


def _acc_ci(r: Any) -> str:
    """``acc [lo, hi]`` of a ``{accuracy, ci}`` result (percent), "—" without one."""
    acc, ci = _num(_get(r, "accuracy")), _get(r, "ci")
    if acc is None:
        return NA
    return f"{acc:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else f"{acc:.1f}"


def secrets_table(secrets: Mapping | None) -> str:
    """Markdown: the Secrets-of-RLHF-II ablation (``metrics/secrets_ablation.json``, written by
    :mod:`rlbff_lib.reward_models.secrets`, not by a pipeline stage): how well each preference strength finds the
    world's mistaken pairs, and each BT option's accuracies, all with 95% intervals; "not run" without the file."""
    if not secrets:
        return f"Secrets of RLHF II ablation: not run (metrics/secrets_ablation.json is missing; `{SECRETS_COMMAND}`)."
    setup = secrets.get("setup") or {}
    world, bt = setup.get("world") or {}, setup.get("bt") or {}
    pairs, wrong = setup.get("pairs") or {}, setup.get("mistaken_pairs") or {}
    lines = [f"World of {world.get('n_prompts', NA)} prompts (seed {world.get('seed', NA)}), each annotator mixing up "
             f"the two responses with probability {world.get('preference_mistake_rate', NA)}: "
             + ", ".join(f"{s} {pairs[s]} pairs ({wrong.get(s, NA)} mistaken)" for s in pairs)
             + f". Every BT: {fmt(bt.get('num_train_epochs'), 1)} epoch(s); ensemble of {bt.get('ensemble_size', NA)}.",
             "", "| preference strength | AUROC, mistakes (95% DeLong) | mistakes in the weakest 20% (%) | "
                 "mistakes overall (%) |", "|---|---:|---:|---:|"]
    for name, r in (secrets.get("strength") or {}).items():
        au = _get(r, "auroc") or {}
        ci = au.get("ci")
        area = (f"{au['auroc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if _num(au.get("auroc")) is not None and ci
                else fmt(au.get("auroc"), 3))
        lines.append(f"| {name} | {area} | {_acc_ci(r.get('mistakes_in_weakest'))} | "
                     f"{_acc_ci(r.get('mistakes_overall'))} |")
    lines += ["", "| BT variant | " + " | ".join(t + " (%)" for _, t in SECRETS_COLS) + " | flipped (mistakes) |",
              "|---|" + "---:|" * (len(SECRETS_COLS) + 1)]
    variants = secrets.get("variants") or {}
    listed = [v for v in secrets.get("order") or [] if v in variants]
    order = listed + sorted(set(variants) - set(listed), key=lambda v: (v != "plain", v))
    for name in order:
        r = variants[name]
        flipped = (f"{r.get('n_flipped')} ({r['flipped_that_were_mistakes']})"
                   if _num(r.get("flipped_that_were_mistakes")) is not None else NA)
        lines.append(f"| {r.get('label', name)} | " + " | ".join(_acc_ci(r.get(k)) for k, _ in SECRETS_COLS)
                     + f" | {flipped} |")
    plain = variants.get("plain")
    if plain:
        apart = [f"{variants[v].get('label', v)} on {t}" for v in order if v != "plain" for k, t in SECRETS_COLS
                 if _intervals_apart(_get(variants[v], k, "ci"), _get(plain, k, "ci"))]
        lines += ["", "Intervals: Wilson 95%. " + ("Apart from the plain BT's: " + "; ".join(apart) + "."
                                                   if apart else "Every variant's interval overlaps the plain BT's: "
                                                   "no ordering is claimed.")]
        near = _get(plain, "principlebench", "near_optimal_range")
        if isinstance(near, (list, tuple)) and len(near) == 2:
            lines.append(f"PrincipleBench items of the plain BT over the thresholds within 2 validation items of the "
                         f"fitted one: {near[0]:.1f} to {near[1]:.1f} (a principle-blind model's item number rests on "
                         "the argmax of a nearly flat validation curve).")
    check = secrets.get("thread_check")
    if check:
        one, two = check.get("one_thread") or {}, check.get("two_threads") or {}
        lines.append(f"The plain BT trained again with 2 torch threads instead of 1: {check.get('tensors_differing')} of "
                     f"{check.get('tensors')} weight tensors differ (largest difference "
                     f"{_sci(check.get('largest_weight_difference'))}); "
                     + ", ".join(f"{t} {fmt(one.get(k))} → {fmt(two.get(k))}" for k, t in SECRETS_COLS) + ".")
    return "\n".join(lines)


def _sci(v: Any) -> str:
    x = _num(v)
    return NA if x is None else f"{x:.1e}"


def _intervals_apart(a: Any, b: Any) -> bool:
    """Two ``[lo, hi]`` intervals that do not overlap."""
    ok = all(isinstance(x, (list, tuple)) and len(x) == 2 for x in (a, b))
    return ok and (a[0] > b[1] or b[0] > a[1])


# ------------------------------------------------------------------ alignment (§6)


def _mt_bench(v: Any) -> float | None:
    if isinstance(v, Mapping):
        return _num(v.get("overall")) if "overall" in v else _num(_get(v, "scores", "overall"))
    return _num(v)


def _arena(v: Any) -> tuple[float | None, tuple[float, float] | None]:
    """(win rate %, (minus, plus)) of an Arena-Hard v2 result."""
    if isinstance(v, Mapping):
        rate = _num(v.get("win_rate", v.get("score")))
        ci = v.get("ci")
        if rate is not None and isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_num(c) is not None for c in ci):
            return rate, (ci[0] - rate, ci[1] - rate)
        return rate, None
    return _num(v), None


def _wildbench(v: Any) -> float | None:
    """WB-Score (the leaderboard's ``WB_score.task_macro``) of a WildBench result."""
    if isinstance(v, Mapping):
        return _num(_get(v, "wb_score", "task_macro")) if "wb_score" in v else _num(v.get("task_macro"))
    return _num(v)


def _is_result(v: Any) -> bool:
    return _num(v) is not None or (isinstance(v, Mapping) and any(
        k in v for k in ("overall", "scores", "win_rate", "score", "wb_score", "task_macro")))


BENCHES = (("mt_bench", "mt"), ("arena_hard", "arena"), ("wildbench", "wb"))


def alignment_rows(alignment: Mapping | None) -> list[dict]:
    """Our policies: ``[{name, label, mt_bench, arena_hard, arena_ci, wildbench, arena, wb}]`` (the
    last two: the raw results; see the module docstring)."""
    if not alignment:
        return []
    per: dict[str, dict] = {}
    table = alignment.get("policies") or alignment.get("models")
    if isinstance(table, Mapping):
        for name, r in table.items():
            if isinstance(r, Mapping):
                per[name] = {"label": r.get("label", name), **{f: r.get(k) for k, f in BENCHES}}
    for key, field in BENCHES:
        v = alignment.get(key)
        if v is None:
            continue
        if _is_result(v):
            per.setdefault("policy", {"label": "policy"})[field] = v
        elif isinstance(v, Mapping):
            for name, r in v.items():
                if r is not None:
                    per.setdefault(name, {"label": name})[field] = r
    rows = []
    for name, r in per.items():
        rate, ci = _arena(r.get("arena"))
        rows.append({"name": name, "label": r.get("label", name), "mt_bench": _mt_bench(r.get("mt")),
                     "arena_hard": rate, "arena_ci": ci, "wildbench": _wildbench(r.get("wb")),
                     "arena": r.get("arena"), "wb": r.get("wb")})
    return rows


def _ci_text(rate: float | None, ci: tuple[float, float] | None) -> str:
    if rate is None:
        return NA
    return f"{rate:.1f}" + (f" ({ci[0]:+.1f}/{ci[1]:+.1f})" if ci else "")


def alignment_table_rows(alignment: Mapping | None) -> tuple[list[list[str]], list[int]]:
    rows, ours = [], []
    for r in alignment_rows(alignment):
        ours.append(len(rows))
        rows.append([f"ours: {r['label']}", fmt(r["mt_bench"], 2), _ci_text(r["arena_hard"], r["arena_ci"]),
                     fmt(r["wildbench"], 2), NA])
    for p in PAPER["alignment"]:
        rows.append([f"paper: {p['label']}", fmt(p["mt_bench"], 2), _ci_text(p["arena_hard"], p.get("arena_ci")),
                     fmt(p["wildbench"], 2), p["cost"]])
    return rows, ours


ALIGNMENT_HEADER = ["model", "MT-Bench (1-10)", "Arena Hard v2 (%, 5-95% bootstrap)", "WildBench",
                    "relative inference cost"]
PAPER_JUDGES = "{mt_bench} (MT-Bench), {arena_hard}, {wildbench}".format(**PAPER["alignment_judges"])


def alignment_details(alignment: Mapping | None) -> list[str]:
    """One line per policy: Arena-Hard v2 per category with its baseline (official), the pooled
    number (ours), skipped categories; WildBench WB-Score, WB-Reward mix or the missing references."""
    lines = []
    for r in alignment_rows(alignment):
        parts = []
        arena, wb = r["arena"], r["wb"]
        if isinstance(arena, Mapping) and isinstance(arena.get("categories"), Mapping):
            for c, res in arena["categories"].items():
                rate, ci = _arena(res)
                parts.append(f"Arena-Hard {c} vs {res.get('baseline', '?')}: {_ci_text(rate, ci)}")
            for c, why in (arena.get("skipped") or {}).items():
                parts.append(f"Arena-Hard {c}: {why}")
            if isinstance(arena.get("pooled"), Mapping):
                rate, ci = _arena(arena["pooled"])
                parts.append(f"Arena-Hard {arena['pooled'].get('label', 'ours (pooled)')}: {_ci_text(rate, ci)}")
        if isinstance(wb, Mapping) and isinstance(wb.get("wb_score"), Mapping):
            score = wb["wb_score"]
            parts.append(f"WildBench WB-Score {fmt(_num(score.get('task_macro')), 2)} (task macro; "
                         f"mean-based {fmt(_num(score.get('score')), 2)}, n={score.get('n')})")
            mix = wb.get("wb_reward_mix")
            if isinstance(mix, Mapping):
                parts.append(f"WB-Reward {fmt(_num(mix.get('task_macro')), 2)} (task macro, mean of "
                             f"{len(mix.get('references') or [])} references)")
            for m, why in (wb.get("missing_references") or {}).items():
                parts.append(f"WB-Reward vs {m}: not available ({why})")
        if parts:
            lines.append(f"- {r['label']}: " + "; ".join(parts) + ".")
    return lines


def alignment_table(alignment: Mapping | None) -> str:
    rows, _ = alignment_table_rows(alignment)
    lines = ["| " + " | ".join(ALIGNMENT_HEADER) + " |", "|---|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if not alignment:
        lines += ["", f"Our rows: {missing_note('alignment')}."]
    elif not alignment_rows(alignment):
        lines += ["", f"Our rows: not available: {INPUTS['alignment']} has no MT-Bench / Arena-Hard / WildBench results."]
    else:
        lines += ["", "Arena Hard v2: the official default category (hard prompts, against o3-mini) with the 5% / "
                      "95% bootstrap quantiles; WildBench: WB-Score (the leaderboard's task-macro score)."]
        if alignment.get("judge"):
            lines += [f"Judge of our rows: {alignment['judge']}; the paper's rows: {PAPER_JUDGES}."]
        details = alignment_details(alignment)
        if details:
            lines += [""] + details
    return "\n".join(lines)


def alignment_table_figure(alignment: Mapping | None, scale: str):
    rows, ours = alignment_table_rows(alignment)
    judge = f", judged by {alignment['judge']}" if alignment and alignment.get("judge") else ""
    note = (f"Ours ({scale}{judge}). Arena Hard v2: hard prompts vs o3-mini; WildBench: WB-Score. Paper: Qwen3-32B "
            f"policies, {PAPER['alignment_judges']['mt_bench']} (MT-Bench) / official judges. {NA}: not measured / "
            "not given.")
    if not alignment:
        note = missing_note("alignment") + ". " + note
    return table_figure(ALIGNMENT_HEADER, rows, "Alignment: MT-Bench, Arena Hard v2 and WildBench", note,
                        highlight=ours)


def alignment_curves(alignment: Mapping | None) -> dict[str, list[dict]]:
    """name -> curve points ``{step, reward, kl, completion_length}`` (see the module docstring)."""
    if not alignment:
        return {}
    curves = alignment.get("curves")
    if isinstance(curves, list):
        return {"policy": [p for p in curves if isinstance(p, Mapping)]}
    out = {}
    if isinstance(curves, Mapping):
        out.update({k: v for k, v in curves.items() if isinstance(v, list)})
    for name, run in (alignment.get("runs") or {}).items():
        if isinstance(run, Mapping) and isinstance(run.get("curves"), list):
            out.setdefault(name, run["curves"])
    return out


def _series(points: Sequence[Mapping], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for p in points:
        v = _num(p.get(key))
        if v is None and key == "completion_length":
            v = _num(p.get("length"))
        if v is not None and _num(p.get("step")) is not None:
            xs.append(p["step"])
            ys.append(v)
    return xs, ys


def curves_figure(alignment: Mapping | None):
    """GRPO of the policy: mean reward, KL to the reference and completion length per step."""
    curves = alignment_curves(alignment)
    if not curves:
        return unavailable_figure("Policy GRPO: reward and KL", missing_note("alignment") if not alignment
                                  else "not available: outputs/details/alignment.json has no curves")
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for name, pts in curves.items():
        for ax, key in zip(axes, ("reward", "kl", "completion_length")):
            xs, ys = _series(pts, key)
            if xs:
                ax.plot(xs, ys, marker=".", label=name)
    for ax, title, ylabel in zip(axes, ("Reward", "KL to the reference policy", "Completion length"),
                                 ("mean reward (RM units)", "KL (nats/token)", "tokens")):
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
        ax.set_ylabel(ylabel)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, fontsize=8)
    fig.suptitle("Policy GRPO curves (ours; the paper gives none)")
    fig.tight_layout()
    return fig


def _rates(v: Any) -> tuple[dict[str, float], float | None]:
    """(per-property shares, overall share) of a fulfilment measurement."""
    if _num(v) is not None:
        return {}, _num(v)
    if not isinstance(v, Mapping):
        return {}, None
    rates = v.get("rates") if isinstance(v.get("rates"), Mapping) else {
        k: x for k, x in v.items() if _num(x) is not None and k not in ("trained", "held_out", "mean", "std")}
    rates = {k: _num(x) for k, x in rates.items() if _num(x) is not None}
    overall = _num(v.get("trained", v.get("mean")))
    if overall is None and rates:
        overall = sum(rates.values()) / len(rates)
    return rates, overall


def fulfilment_summary(alignment: Mapping | None) -> dict | None:
    """``{before, after, gain_mean, gain_std, gain_ci, gain_p, above_noise, seeds, per_property: {p: (before,
    after)}, per_property_ci: {p: (ci_before, ci_after)}}`` or ``None`` (an absent interval is None)."""
    ful = (alignment or {}).get("fulfilment")
    if not isinstance(ful, Mapping):
        return None
    rb, before = _rates(ful.get("before"))
    ra, after = _rates(ful.get("after"))
    seeds = ful.get("seeds")
    n_seeds = len(seeds) if isinstance(seeds, list) else _num(seeds)
    gain_ci = _get(ful, "gain", "ci")
    gain_ci = [float(x) for x in gain_ci] if isinstance(gain_ci, list) and len(gain_ci) == 2 else None
    ci_of = lambda block, p: _get(block, "rates_ci", p) if isinstance(block, Mapping) else None
    props = list(dict.fromkeys([*rb, *ra]))
    return {"before": before, "after": after, "gain_mean": _num(_get(ful, "gain", "mean")),
            "gain_std": _num(_get(ful, "gain", "std")), "gain_ci": gain_ci, "gain_p": _num(_get(ful, "gain", "p_value")),
            "above_noise": bool(gain_ci and gain_ci[0] > 0),
            "seeds": int(n_seeds) if n_seeds is not None else None,
            "per_seed": seeds if isinstance(seeds, list) else [],
            "per_property": {p: (rb.get(p), ra.get(p)) for p in props},
            "per_property_ci": {p: (ci_of(ful.get("before"), p), ci_of(ful.get("after"), p)) for p in props}}


def fulfilment_sentence(s: Mapping) -> str:
    """The report's sentence on fulfilment (``s``: :func:`fulfilment_summary`): before, after, and the gain with its
    95% interval (Welch, over seeds); an improvement is claimed only when that interval excludes 0."""
    pct = lambda v: fmt(100 * v if v is not None else None)
    text = (f"Fulfilment (checker-measured share of responses satisfying the principle): before {pct(s['before'])}%, "
            f"after {pct(s['after'])}%; gain {pct(s['gain_mean'])} points")
    ci = s.get("gain_ci")
    if ci is None:
        spread = f" ± {pct(s['gain_std'])} (seed std)" if s.get("gain_std") is not None else ""
        return text + f"{spread} over {s['seeds']} seeds; no interval (fewer than two seeds): no ordering claimed."
    p = f", Welch p = {s['gain_p']:.3g}" if s.get("gain_p") is not None else ""
    verdict = ("above noise: the interval lies above 0" if ci[0] > 0 else
               "a loss beyond noise: the interval lies below 0" if ci[1] < 0 else
               "within noise: the interval includes 0, so no ordering of before and after is claimed")
    return text + f" (95% interval [{pct(ci[0])}, {pct(ci[1])}]{p}) over {s['seeds']} seeds; {verdict}."


def fulfilment_figure(alignment: Mapping | None):
    """Checker-measured fulfilment of the principles before and after GRPO (per property when
    given, with their 95% Wilson intervals when the metrics carry them), and the gain over seeds (mean with its 95%
    Welch interval; ± the seed std when there is no interval)."""
    s = fulfilment_summary(alignment)
    if s is None:
        return unavailable_figure("Fulfilment before / after GRPO", missing_note("alignment") if not alignment
                                  else "not available: outputs/details/alignment.json has no fulfilment")
    import numpy as np

    plt = _plt()
    props = list(s["per_property"]) or ["overall"]
    pairs = [s["per_property"][p] for p in props] if s["per_property"] else [(s["before"], s["after"])]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2.2, 1]})
    x = np.arange(len(props))
    cis = [s["per_property_ci"].get(p, (None, None)) for p in props] if s["per_property"] else [(None, None)]

    def err(values, intervals):  # asymmetric error bars from [lower, upper] shares; None without intervals
        if not all(isinstance(c, list) and len(c) == 2 for c in intervals):
            return None
        return [[100 * max(0.0, (v or 0) - c[0]) for v, c in zip(values, intervals)],
                [100 * max(0.0, c[1] - (v or 0)) for v, c in zip(values, intervals)]]

    before_v, after_v = [b for b, _ in pairs], [a for _, a in pairs]
    ax1.bar(x - 0.2, [100 * (b or 0) for b in before_v], 0.4, color=COLORS["paper"], label="before GRPO",
            yerr=err(before_v, [c[0] for c in cis]), capsize=2)
    ax1.bar(x + 0.2, [100 * (a or 0) for a in after_v], 0.4, color=COLORS["ours"], label="after GRPO",
            yerr=err(after_v, [c[1] for c in cis]), capsize=2)
    ax1.set_xticks(x, props, rotation=30, ha="right")
    ax1.set_ylabel("responses satisfying the principle (%)")
    ax1.set_ylim(0, 105)
    ax1.legend(fontsize=8)
    ax1.set_title("Fulfilment, measured by the world's checkers")
    seeds = [p for p in s["per_seed"] if isinstance(p, Mapping) and _num(p.get("gain")) is not None]
    if seeds:
        ax2.plot(range(len(seeds)), [100 * p["gain"] for p in seeds], "o", color=COLORS["ours"], label="per seed")
    if s["gain_mean"] is not None:
        m, ci = 100 * s["gain_mean"], s["gain_ci"]
        yerr, label = ([[m - 100 * ci[0]], [100 * ci[1] - m]], "mean, 95% interval (Welch)") if ci else \
            ([100 * (s["gain_std"] or 0.0)], "mean ± seed std (no interval)")
        ax2.errorbar([len(seeds) if seeds else 0], [m], yerr=yerr, fmt="s", color=COLORS["accent"], capsize=4,
                     label=f"{label} ({s['seeds'] or '?'} seeds)")
    ax2.axhline(0, color="gray", lw=0.8)
    ax2.set_ylabel("gain (percentage points)")
    ax2.set_title("Gain over seeds")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=7)
    else:
        ax2.text(0.5, 0.5, "no gain recorded", ha="center", va="center", transform=ax2.transAxes, fontsize=8)
    fig.suptitle("Principle fulfilment before / after GRPO (ours; the paper gives none)")
    fig.tight_layout()
    return fig


def length_reward_points(alignment: Mapping | None) -> list[tuple[float, float, float | None]]:
    """(length in tokens, reward, step or None): ``length_reward`` when given, else the curves."""
    pts = []
    for p in (alignment or {}).get("length_reward") or []:
        if isinstance(p, Mapping) and _num(p.get("length")) is not None and _num(p.get("reward")) is not None:
            pts.append((p["length"], p["reward"], _num(p.get("step"))))
    if pts:
        return pts
    for curve in alignment_curves(alignment).values():
        for p in curve:
            length = _num(p.get("completion_length", p.get("length")))
            reward = _num(p.get("reward"))
            if length is not None and reward is not None:
                pts.append((length, reward, _num(p.get("step"))))
    return pts


def length_reward_figure(alignment: Mapping | None):
    """Completion length against reward (one point per logging step, coloured by step): does the
    reward grow by making answers longer? The Pearson correlation is in the title."""
    pts = length_reward_points(alignment)
    if len(pts) < 2:
        return unavailable_figure("Length against reward", missing_note("alignment") if not alignment
                                  else f"not available: fewer than 2 (length, reward) points in {INPUTS['alignment']}")
    import numpy as np

    plt = _plt()
    lengths, rewards = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
    steps = [p[2] for p in pts]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    sc = ax.scatter(lengths, rewards, c=[s if s is not None else 0 for s in steps], cmap="viridis", s=18)
    if any(s is not None for s in steps):
        fig.colorbar(sc, ax=ax, label="GRPO step")
    r = length_reward_correlation(alignment)
    ax.set_xlabel("mean completion length (tokens)")
    ax.set_ylabel("mean reward")
    ax.set_title(f"Length against reward (Pearson r = {fmt(r, 2)}, n = {len(pts)})")
    return fig


def length_reward_correlation(alignment: Mapping | None) -> float | None:
    import numpy as np

    pts = length_reward_points(alignment)
    if len(pts) < 2:
        return None
    a, b = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else None


# ------------------------------------------------------------------ the whole report


FIGURES = ("funnel", "principles", "threshold", "rm_table", "rm_bars", "alignment_table", "curves",
           "fulfilment", "length_reward")


def build_figures(inputs: Mapping[str, Any], scale: str, top_principles: int = 20) -> dict[str, Any]:
    """Every report figure: name -> matplotlib Figure (``figures/report_<name>.png``)."""
    pr, rm, al = inputs.get("principles"), inputs.get("rm_eval"), inputs.get("alignment")
    return {
        "funnel": funnel_figure(pr),
        "principles": principle_frequency_figure(pr, top_principles),
        "threshold": threshold_figure(pr),
        "rm_table": rm_table_figure(rm, scale),
        "rm_bars": rm_bars_figure(rm),
        "alignment_table": alignment_table_figure(al, scale),
        "curves": curves_figure(al),
        "fulfilment": fulfilment_figure(al),
        "length_reward": length_reward_figure(al),
    }


def save_figures(figures: Mapping[str, Any], folder: str | os.PathLike = "figures", svg: bool = True,
                 dpi: int = 120) -> list[str]:
    """Write ``<folder>/report_<name>.png`` (and ``.svg``) for each figure; returns the PNG paths."""
    from rlbff_lib.core.plots import save

    paths = []
    for name, fig in figures.items():
        path = Path(folder) / f"report_{name}.png"
        save(fig, path, svg=svg, dpi=dpi)
        paths.append(str(path))
    return paths


def demote_headings(markdown: str, levels: int = 2) -> str:
    """Markdown with every ATX heading pushed down ``levels`` (to embed a document in a section)."""
    out = []
    fence = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        if not fence and line.startswith("#"):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def report_metrics(inputs: Mapping[str, Any], missing: Sequence[str], scale: str, figures: Sequence[str]) -> dict:
    """``outputs/details/report.json``: which inputs were present or missing, the scale line, the figures
    written, and the headline numbers shown (ours and the paper's)."""
    headline: dict[str, Any] = {}
    pr = inputs.get("principles")
    if pr:
        items = next((v for k, v in (pr.get("funnel") or {}).items() if k.endswith("_items")), {})
        headline["principles"] = {"items": items.get("count"), "share_of_extracted": _num(items.get("share_of_extracted")),
                                  "paper_items": PAPER["items_after_consensus"]}
    rm_models = (inputs.get("rm_eval") or {}).get("models") or {}
    if rm_models:
        headline["reward_models"] = {}
        for name, result in rm_models.items():
            if isinstance(result, Mapping):
                c = rm_cells(result)
                kind = result.get("kind", name)
                p = PAPER["reward_models"].get(kind, {})
                headline["reward_models"][name] = {
                    "rmbench": c["rmbench.overall"], "judgebench": c["judgebench.overall"],
                    "principlebench": c["principlebench"], "paper_rmbench": _get(p, "rmbench", "overall"),
                    "paper_judgebench": _get(p, "judgebench", "overall"), "paper_principlebench": p.get("principlebench")}
    rows = alignment_rows(inputs.get("alignment"))
    if rows:
        headline["alignment"] = {r["name"]: {"mt_bench": r["mt_bench"], "arena_hard": r["arena_hard"],
                                             "wildbench": r["wildbench"]} for r in rows}
    ful = fulfilment_summary(inputs.get("alignment"))
    if ful:
        headline["fulfilment"] = {k: ful[k] for k in ("before", "after", "gain_mean", "gain_std", "gain_ci", "gain_p",
                                                      "above_noise", "seeds")}
    return {"inputs": {name: name not in missing for name in INPUTS}, "missing": list(missing), "scale": scale,
            "figures": list(figures), "headline": headline}


def headline_metrics(details: dict) -> dict:
    """``metrics/report.json`` from :func:`report_metrics`: how many inputs were present and missing, how many
    figures were written (each stage's own headline numbers are in its ``metrics/NAME.json``)."""
    inputs = details.get("inputs") or {}
    return {"inputs_present": sum(bool(v) for v in inputs.values()), "inputs_missing": len(details.get("missing") or []),
            "figures": len(details.get("figures") or [])}
