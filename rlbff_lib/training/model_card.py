"""Model cards: the README.md of a published model folder, from a facts dict (a pure function: facts -> markdown).

:func:`model_card` writes the prompt format, the scoring formula, the base model, the training data (files and item
counts), the parameters, the accuracy with its interval where the stage measured it, and the profile;
:func:`write_model_card` puts it in a folder atomically. The stages collect the facts
(:func:`rlbff_lib.stages.reward_models.write_model_cards`, :func:`rlbff_lib.stages.alignment.write_model_cards`).

Facts (``kind`` and ``name`` required, the rest optional; a missing one is said to be unknown, never invented):

- ``kind``: ``scalar`` | ``bt`` | ``genrm`` | ``policy`` (:data:`KINDS` gives each kind's prompt and formula text);
  ``name``: the title; ``summary``: one paragraph under it;
- ``principle_prompt``: the RLBFF question with its ``{principle}`` slot
  (:data:`rlbff_lib.reward_models.prompt.PRINCIPLE_PROMPT`); ``prompt`` / ``formula``: override the kind's text;
- ``base_model``: folder or hub name; ``profile``: ``smoke`` | ``rehearsal`` | ``full``; ``stage``: who wrote it;
- ``data``: ``[{"file", "items", "role"}]``; ``parameters``: the trainer config (nested dicts allowed; each ``lora``
  block in it, :class:`rlbff_lib.training.lora.LoraSettings`, is also stated under "Base model");
- ``training``: ``{"global_step", "train_loss", "seconds", ...}``;
- ``accuracy``: ``[{"set", "value", "ci": [low, high] | None, "n", "unit", "note"}]`` (the note names the interval);
- ``notes``: extra lines (e.g. where the benchmark numbers are).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlbff_lib.core.preflight import looks_like_hub_name

KINDS: dict[str, dict[str, str]] = {
    "scalar": {
        "what": "scalar principle reward model: answers whether a response satisfies a natural-language principle",
        "pipeline_tag": "text-generation",
        "prompt": ("The base model's chat template over: the conversation, the response as an `assistant` turn, then "
                   "one `user` turn asking the RLBFF question, and the generation prompt (thinking off):\n\n"
                   "    {principle_prompt}\n\n"
                   "A conversation longer than the window loses its oldest turns first (the response and the "
                   "question are kept)."),
        "formula": ("score = logit(\"Yes\") − logit(\"No\") at the first generated position, in nats (one forward "
                    "pass); the answer is Yes when score > 0, and P(Yes) = sigmoid(score)."),
    },
    "bt": {
        "what": "Bradley–Terry reward model (the baseline: trained on preference pairs, it never sees a principle)",
        "pipeline_tag": "text-classification",
        "prompt": ("The base model's chat template over the conversation and the response as an `assistant` turn, "
                   "without a generation prompt. No principle: it is ignored when given."),
        "formula": ("score = the one-output head's reward at the last token; P(A preferred to B) = "
                    "sigmoid(score_A − score_B). A principle question is answered Yes when the reward exceeds a "
                    "threshold fitted on validation items."),
    },
    "genrm": {
        "what": "generative principle reward model (GenRM): reasons, then ends with \"Final Judgement: Yes|No\"",
        "pipeline_tag": "text-generation",
        "prompt": ("The chat template saved in this folder (thinking mode pinned in it) over: the conversation, the "
                   "response as an `assistant` turn, then a message with role `principle` holding the principle, and "
                   "the generation prompt."),
        "formula": ("score = log P(\" Yes\") − log P(\" No\") at the last generated token before end of sequence of the "
                    "greedy completion, in nats; −50 when there is no end of sequence or either answer is outside the "
                    "top-20 tokens there. The answer is Yes when score > 0."),
    },
    "policy": {
        "what": "policy (chat model) of the alignment stage",
        "pipeline_tag": "text-generation",
        "prompt": "The chat template saved in this folder; the generation prompt opens the assistant turn.",
        "formula": "Not a reward model: it writes answers. The reward it was trained with is under Training.",
    },
}

PROFILES = {
    "smoke": "smoke scale: a tiny model trained in minutes on the synthetic world, to check the pipeline; not for use",
    "rehearsal": "rehearsal: the paper-scale code paths with small local stand-ins; not for use",
    "full": "paper scale (RLBFF, arXiv 2509.21319)",
}


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += _flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


def _lora_lines(params: dict) -> list[str]:
    """How the weights were trained, from each ``lora`` block of the parameters (none: nothing said)."""
    flat = dict(_flatten(params))
    out = []
    for key, enabled in flat.items():
        if key != "lora.enabled" and not key.endswith(".lora.enabled"):
            continue
        block = key[:-len("enabled")]  # "lora." or e.g. "grpo.lora."
        stage = f" ({block[:-len('.lora.')]})" if block != "lora." else ""
        if enabled:
            out.append(f"Trained with LoRA{stage}: rank {flat.get(block + 'r')}, alpha {flat.get(block + 'alpha')}, "
                       f"dropout {flat.get(block + 'dropout')}, target modules "
                       f"{_value(flat.get(block + 'target_modules'))}; the adapters are merged into these weights, "
                       "which load as a full-weight model.")
        else:
            out.append(f"Full-weight training{stage} (LoRA off).")
    return ["", *out] if out else []


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list, tuple)) or v is None or isinstance(v, bool):
        return f"`{json.dumps(v, ensure_ascii=False)}`"
    return f"`{v}`" if isinstance(v, str) else str(v)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _number(v: Any, unit: str = "") -> str:
    if v is None:
        return "—"
    return f"{v:.1f}{unit}" if isinstance(v, float) else f"{v}{unit}"


def model_card(facts: dict) -> str:
    """The card of one model as Markdown (Hugging Face front matter, then the sections of the module docstring)."""
    kind, name = facts["kind"], facts["name"]
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {list(KINDS)}, got {kind!r}")
    text = KINDS[kind]
    base = facts.get("base_model")
    profile = facts.get("profile")
    front = ["---", "library_name: transformers", f"pipeline_tag: {text['pipeline_tag']}",
             f"tags: [rlbff, {'reward-model' if kind != 'policy' else 'policy'}, {kind}]"]
    if isinstance(base, str) and looks_like_hub_name(base):
        front.append(f"base_model: {base}")
    front.append("---")
    lines = [*front, "", f"# {name}", ""]
    lines.append(facts.get("summary") or f"A {text['what']}, from the reproduction of RLBFF: Binary Flexible "
                                         "Feedback (arXiv 2509.21319).")
    if facts.get("stage"):
        lines += ["", f"Written by {facts['stage']}."]

    lines += ["", "## Prompt format", ""]
    prompt = facts.get("prompt") or text["prompt"]
    lines.append(prompt.replace("{principle_prompt}", facts.get("principle_prompt") or
                                "(the RLBFF principle question)"))
    lines += ["", "## Score", "", facts.get("formula") or text["formula"]]

    lines += ["", "## Base model", ""]
    if base:
        where = "the Hugging Face hub" if looks_like_hub_name(str(base)) else "a local folder"
        lines.append(f"`{base}` ({where}).")
    else:
        lines.append("Unknown.")
    lines += _lora_lines(facts.get("parameters") or {})

    lines += ["", "## Training data", ""]
    data = facts.get("data") or []
    if data:
        lines += ["| file | items | role |", "|---|---:|---|"]
        lines += [f"| {'`' + _cell(d['file']) + '`' if d.get('file') else '—'} | {_number(d.get('items'))} | "
                  f"{_cell(d.get('role', ''))} |" for d in data]
    else:
        lines.append("Not recorded.")

    training = facts.get("training") or {}
    if training:
        lines += ["", "## Training", ""]
        lines += [f"- {_cell(k)}: {_value(v)}" for k, v in training.items()]

    params = facts.get("parameters") or {}
    lines += ["", "## Parameters", ""]
    if params:
        lines += ["| parameter | value |", "|---|---|"]
        lines += [f"| `{_cell(k)}` | {_cell(_value(v))} |" for k, v in _flatten(params)]
    else:
        lines.append("Not recorded.")

    lines += ["", "## Accuracy", ""]
    accuracy = facts.get("accuracy") or []
    if accuracy:
        lines += ["| set | value | interval | items | note |", "|---|---:|---|---:|---|"]
        for a in accuracy:
            unit = a.get("unit", "")
            ci = a.get("ci")
            interval = f"[{_number(ci[0], unit)}, {_number(ci[1], unit)}]" if ci else "—"
            lines.append(f"| {_cell(a['set'])} | {_number(a.get('value'), unit)} | {interval} | "
                         f"{_number(a.get('n'))} | {_cell(a.get('note', ''))} |")
    else:
        lines.append("Not measured by the stage that wrote this model.")
    for note in facts.get("notes") or []:
        lines += ["", note]

    lines += ["", "## Profile", "", f"`{profile}`: {PROFILES.get(profile, 'unknown profile')}." if profile
              else "Unknown."]
    return "\n".join(lines) + "\n"


def run_facts(model_dir: str | Path) -> dict:
    """What the training run of ``model_dir`` recorded in its ``job.json`` (:class:`rlbff_lib.training.launch.TrainJob`,
    in the folder above or two above: ``run/model``, ``run/grpo/model``): ``base_model``, ``data`` (its train and eval
    files with their item counts) and ``parameters`` (the trainer config). Empty without a job file."""
    for folder in list(Path(model_dir).parents)[:3]:
        if (folder / "job.json").is_file():
            job = json.loads((folder / "job.json").read_text(encoding="utf-8"))
            break
    else:
        return {}
    data = [{"file": job.get(key), "items": _items(job.get(key)), "role": role}
            for key, role in (("train_file", "training"), ("eval_file", "evaluation during training")) if job.get(key)]
    return {"base_model": job.get("model"), "data": data, "parameters": job.get("config") or {}}


def _items(path: str | None) -> int | None:
    """Non-blank lines of a JSONL file (its items); None when it is not there."""
    if not path or not Path(path).is_file():
        return None
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def write_model_card(folder: str | Path, facts: dict) -> Path:
    """Write ``folder/README.md`` (:func:`model_card`) atomically; returns its path."""
    from rlbff_lib.core.io import atomic_write_text

    path = Path(folder) / "README.md"
    atomic_write_text(path, model_card(facts))
    return path
