"""The ``data`` stage (back-end of ``notebooks/data.ipynb``): load the configured source, write it, summarize it.

The loaders and the record schema live in :mod:`rlbff_lib.data.sources`; this module holds the
stage's config and what the notebook calls: :func:`write_source`, :func:`summarize` (``outputs/details/data.json``)
and :func:`headline_metrics` (``metrics/data.json``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rlbff_lib.core.io import write_jsonl
from rlbff_lib.data.sources import HelpSteer3Config
from rlbff_lib.synthetic.world import WorldConfig

SOURCE_FILES = ("feedback", "principle", "truth")


@dataclass
class DataConfig:
    """The ``data`` stage: which source (``synthetic`` world, ``helpsteer3`` feedback, or the released
    ``helpsteer3-principle`` config), and the settings of each."""

    source: Literal["synthetic", "helpsteer3", "helpsteer3-principle"] = "synthetic"
    world: WorldConfig = field(default_factory=WorldConfig)
    helpsteer3: HelpSteer3Config = field(default_factory=HelpSteer3Config)

    def __post_init__(self):
        if self.source != "synthetic" and self.helpsteer3.path is not None and not Path(self.helpsteer3.path).exists():
            raise ValueError(f"helpsteer3.path: {self.helpsteer3.path} does not exist")
        pref = self.helpsteer3.preference_path
        if self.source != "synthetic" and pref is not None and not Path(pref).exists():
            raise ValueError(f"helpsteer3.preference_path: {pref} does not exist")


def write_source(source: dict, out_dir: str | Path) -> dict[str, int]:
    """Write ``{feedback, principle, truth}`` as ``out_dir/<name>.jsonl`` (every file, empty ones too, so
    no stale file of another source survives); returns rows per file."""
    out = {}
    for name in SOURCE_FILES:
        rows = source.get(name, [])
        write_jsonl(Path(out_dir) / f"{name}.jsonl", rows)
        out[name] = len(rows)
    return out


def summarize(source: dict) -> dict:
    """Counts for ``outputs/details/data.json``: records per domain, properties, label balance."""
    fb = source["feedback"]
    out: dict = {
        "records": len(fb),
        "records_per_domain": dict(sorted(Counter(r["domain"] for r in fb).items())),
        "feedback_texts": sum(len(r.get("feedback1", [])) + len(r.get("feedback2", [])) for r in fb),
        "principle_records": len(source["principle"]),
    }
    prefs = [r["overall_preference"] for r in fb if r.get("overall_preference") is not None]
    if prefs:
        out["preference"] = {
            "labelled": len(prefs),
            "response1_better": sum(p < 0 for p in prefs) / len(prefs),
            "tie": sum(p == 0 for p in prefs) / len(prefs),
            "response2_better": sum(p > 0 for p in prefs) / len(prefs),
            "histogram": {str(k): v for k, v in sorted(Counter(prefs).items())},
        }
    if source["principle"]:
        ful = Counter(r["fulfilment"] for r in source["principle"])
        out["principle_yes_share"] = ful["Yes"] / len(source["principle"])
    if source["truth"]:
        props: dict[str, dict] = {}
        for t in source["truth"]:
            for name, value in t["properties"].items():
                p = props.setdefault(name, {"responses": 0, "yes": 0, "domains": Counter()})
                p["responses"] += 1
                p["yes"] += bool(value)
                p["domains"][t["domain"]] += 1
        out["properties"] = {
            name: {"responses": p["responses"], "yes_share": p["yes"] / p["responses"],
                   "domains": dict(sorted(p["domains"].items()))}
            for name, p in sorted(props.items())
        }
        yes = sum(p["yes"] for p in props.values())
        total = sum(p["responses"] for p in props.values())
        out["property_label_balance"] = {"yes_share": yes / total, "labels": total}
    return out


def headline_metrics(summary: dict) -> dict:
    """``metrics/data.json`` from :func:`summarize`'s counts: records (in all and per domain), feedback texts,
    released principle records, records with a preference label."""
    return {"records": summary.get("records"), "records_per_domain": dict(summary.get("records_per_domain") or {}),
            "feedback_texts": summary.get("feedback_texts"), "principle_records": summary.get("principle_records"),
            "preferences_labelled": (summary.get("preference") or {}).get("labelled")}
