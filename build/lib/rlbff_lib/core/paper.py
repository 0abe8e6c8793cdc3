"""The paper's numbers, once: every table, figure and metric that shows "paper" reads them here.

Copied from the project's reference (``../shared/reference/rlbff.md``, Wang et al., arXiv 2509.21319);
percent unless a key says otherwise. Keys missing from a row are numbers the paper does not give.
"""

from __future__ import annotations

from typing import Any

PAPER: dict[str, Any] = {
    "citation": "Wang et al., RLBFF: Binary Flexible Feedback, arXiv 2509.21319 (NVIDIA, 2025)",
    # §3 filters: share of principles each filter removes, in the paper's order
    "funnel_removed": {"evidence": 0.022, "helpfulness": 0.045, "partially": 0.138},
    "principles_extracted": 1_200_000,       # "about 1.2 M principles"
    "items_after_consensus": 33_000,         # "about 33k principle items" (released config: 33,905)
    "released_items": 33_905,
    "labels_after_partially": {"yes": 0.646, "no": 0.354},
    "principles_per_feedback": {"mean": 1.27, "std": 0.54},
    "unique_principles_at_least": 1000,     # "over 1,000 unique principles"
    "human_check": {"agreement": 88.9, "items": 126, "fleiss_kappa": 0.447},
    # §3 ablation of the consensus threshold (scalar RM; RM-Bench / JudgeBench, percent)
    "threshold": {0.7: {"items": 95_000, "rmbench": 82.8, "judgebench": 72.3},
                  0.8: {"items": 33_000, "rmbench": 83.6, "judgebench": 76.3},
                  0.9: {"items": 11_000, "rmbench": 81.9, "judgebench": 73.7}},
    # §5 reward models (percent). Keys missing in a row are not given in the paper.
    "reward_models": {
        "scalar": {"label": "Flexible-principles scalar RM (RLBFF)",
                   "rmbench": {"chat": 85.3, "math": 81.9, "code": 70.4, "safety": 96.9, "easy": 85.5,
                               "normal": 84.9, "hard": 80.5, "overall": 83.6},
                   "judgebench": {"knowledge": 74.0, "reasoning": 74.5, "math": 82.1, "code": 81.0,
                                  "overall": 76.3},
                   "principlebench": 91.6},
        "bt": {"label": "Bradley–Terry, same data", "rmbench": {"overall": 78.5},
               "judgebench": {"overall": 68.9}, "principlebench": 89.5},
        "genrm": {"label": "Flexible-principles GenRM (RLBFF)",
                  "rmbench": {"chat": 80.4, "math": 92.0, "code": 77.0, "safety": 95.5, "easy": 88.9,
                              "normal": 86.4, "hard": 83.4, "overall": 86.2},
                  "judgebench": {"knowledge": 74.6, "reasoning": 85.7, "math": 85.7, "code": 90.5,
                                 "overall": 81.4},
                  "principlebench": 83.8},
        "nemotron_70b_reward": {"label": "Llama-3.3-Nemotron-70B-Reward", "rmbench": {"overall": 79.9},
                                "judgebench": {"overall": 73.7}, "principlebench": 89.7},
        "nemotron_49b_genrm": {"label": "Llama-3.3-Nemotron-Super-49B-GenRM", "rmbench": {"overall": 82.7},
                               "judgebench": {"overall": 75.1}, "principlebench": 82.1},
        "rm_r1_32b": {"label": "RM-R1-DeepSeek-Distilled-Qwen-32B", "rmbench": {"overall": 83.9},
                      "judgebench": {"overall": 66.0}, "principlebench": 73.9},
        "r3_qwen3_14b": {"label": "R3-Qwen3-14B-LoRA-4K", "rmbench": {"overall": 84.9},
                         "judgebench": {"overall": 60.9}, "principlebench": 67.2},
    },
    "reward_models_scale": "Llama-3.3-70B scalar RM / BT (4K context), Qwen3-32B GenRM (8K); "
                           "RM-Bench 1,327 prompts, JudgeBench 350 pairs (GPT-4o split)",
    # §6 alignment: Qwen3-32B policy, GRPO with the principle GenRM; the judges of its table
    "alignment_judges": {"mt_bench": "GPT-4-Turbo", "arena_hard": "the official Arena-Hard v2 judge",
                         "wildbench": "WildBench's official WB-Score/WB-Reward"},
    "alignment": [
        {"key": "rlbff", "label": "Qwen3-32B + RLBFF", "mt_bench": 9.50, "arena_hard": 55.6,
         "arena_ci": (-1.6, 1.4), "wildbench": 70.33, "cost": "1×"},
        {"key": "base", "label": "Qwen3-32B", "mt_bench": 9.38, "arena_hard": 44.0, "wildbench": 67.57,
         "cost": "1×"},
        {"key": "bt", "label": "Qwen3-32B + BT baseline", "mt_bench": 9.45, "arena_hard": 47.5,
         "wildbench": 67.38, "cost": "1×"},
        {"key": "o3-mini", "label": "o3-mini", "mt_bench": 9.26, "arena_hard": 50.0, "wildbench": 71.64,
         "cost": "61×"},
        {"key": "deepseek-r1", "label": "DeepSeek R1", "mt_bench": 9.49, "arena_hard": 57.4, "wildbench": 64.24,
         "cost": "25×"},
    ],
}


def sweep_items(threshold: float | str) -> int | None:
    """Items the paper keeps at a consensus threshold (0.7 / 0.8 / 0.9), else None."""
    row = PAPER["threshold"].get(round(float(threshold), 2))
    return row["items"] if row else None


def rm_row(kind: str) -> dict:
    """One reward-model row of the paper's §5 table, labelled as the paper's:
    "X (RLBFF)" -> "X (RLBFF, paper)", "X" -> "X (paper)"."""
    row = PAPER["reward_models"][kind]
    label = row["label"]
    return {**row, "label": label[:-1] + ", paper)" if label.endswith(")") else label + " (paper)"}


# items kept per consensus threshold, keyed as the principles metrics key them ("0.7", ...)
SWEEP_ITEMS: dict[str, int] = {f"{t:g}": row["items"] for t, row in PAPER["threshold"].items()}
