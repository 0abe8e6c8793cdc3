"""Reward-model and alignment benchmarks: locate, load and validate them.

Local copies live in one folder (``benchmarks_dir``), laid out as in
``shared/benchmarks``::

    rm-bench/{chat,code,safety-refuse,safety-response}_filtered.json
    judgebench/dataset=judgebench,response_model=<model>.jsonl   (+ outputs/)
    mt-bench/{question,reference_answer_gpt-4,judge_prompts}.jsonl
    arena-hard-v2/question.jsonl + <baseline model>.jsonl (o3-mini-2025-01-31, gemini-2.0-flash-001)
    wildbench/test.jsonl + model_outputs/<reference model>.jsonl   (optional: hub schema)

When a file is not there, RM-Bench, JudgeBench, RewardBench and WildBench fall back to the
Hugging Face hub (``datasets.load_dataset``); the hub code is kept apart in the
``load_*_hub`` functions. A hub failure raises :class:`HubUnavailable`; RM-Bench
catches it and reports the domains it could not get (``RMBenchData.missing``) so
the caller can score the rest and say what is missing.

Every record is validated before anything else happens; a bad one raises
:class:`~rlbff_lib.core.io.DataError` naming the file, the line (JSONL) or the record
index (JSON arrays and hub splits, 0-based, in the message) and the field.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from rlbff_lib.core.io import DataError, iter_jsonl

ENV_VAR = "RLBFF_BENCHMARKS_DIR"

RMBENCH_HUB = "THU-KEG/RM-Bench"
RMBENCH_DOMAINS = ("chat", "code", "math", "safety-refuse", "safety-response")
RMBENCH_LOCAL_DOMAINS = ("chat", "code", "safety-refuse", "safety-response")  # math is hub-only
RMBENCH_STYLES = ("concise", "detailed_plain", "detailed_markdown")  # order of chosen[i] / rejected[i]

JUDGEBENCH_HUB = "ScalerLab/JudgeBench"
JUDGEBENCH_SPLITS = {
    "gpt": "dataset=judgebench,response_model=gpt-4o-2024-05-13.jsonl",
    "claude": "dataset=judgebench,response_model=claude-3-5-sonnet-20240620.jsonl",
}
JUDGEBENCH_LABELS = ("A>B", "B>A")
JUDGEBENCH_GROUPS = ("knowledge", "reasoning", "math", "code")

REWARDBENCH_HUB = "allenai/reward-bench"
REWARDBENCH_SPLIT = "filtered"

MTBENCH_NEED_REF_CATEGORIES = ("math", "reasoning", "coding")  # FastChat's NEED_REF_CATS
# Arena-Hard v2 category -> its official baseline (lmarena/arena-hard-auto @ 196f6b8 utils/judge_utils.py
# JUDGE_SETTINGS); the answers are read from ``arena-hard-v2/<model>.jsonl``.
ARENA_BASELINES = {"hard_prompt": "o3-mini-2025-01-31", "creative_writing": "gemini-2.0-flash-001"}
ARENA_HUB = "lmarena-ai/arena-hard-auto (data/arena-hard-v2.0/model_answer/)"

# WildBench v2 (allenai/WildBench @ d6b8dca src/eval.py): tasks from the hub config v2 (split test),
# the reference models' outputs from WildBench-V2-Model-Outputs (config = model name, split train).
WILDBENCH_HUB, WILDBENCH_CONFIG, WILDBENCH_SPLIT = "allenai/WildBench", "v2", "test"
WILDBENCH_OUTPUTS_HUB, WILDBENCH_OUTPUTS_SPLIT = "allenai/WildBench-V2-Model-Outputs", "train"
WILDBENCH_REFERENCES = ("gpt-4-turbo-2024-04-09", "claude-3-haiku-20240307", "Llama-2-70b-chat-hf")
# a task's tags -> the five merged task groups (leaderboard/data_dir/_create_tables.py task_group_new)
WILDBENCH_TASK_GROUPS = {
    "Information seeking": "Information/Advice seeking", "Creative Writing": "Creative Tasks",
    "Coding & Debugging": "Coding & Debugging", "Reasoning": "Planning & Reasoning", "Editing": "Creative Tasks",
    "Math": "Math & Data Analysis", "Planning": "Planning & Reasoning", "Brainstorming": "Creative Tasks",
    "Role playing": "Creative Tasks", "Advice seeking": "Information/Advice seeking",
    "Data Analysis": "Math & Data Analysis", "Others": "Creative Tasks",
}


class HubUnavailable(RuntimeError):
    """The Hugging Face hub could not provide a dataset (offline, missing, renamed)."""


# ------------------------------------------------------------------ location

def repo_root() -> Path:
    """The repository root (the folder holding ``rlbff_lib/``)."""
    return Path(__file__).resolve().parents[2]


def benchmarks_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The local benchmark folder, or ``None`` (then loaders use the hub).

    Order: ``explicit``, then the environment variable ``RLBFF_BENCHMARKS_DIR``,
    then ``<repo root>/../shared/benchmarks`` if it exists. An explicit folder or
    environment value that does not exist is an error, never silently skipped.
    """
    if explicit is not None:
        return _existing_dir(Path(explicit), "the benchmarks folder given")
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return _existing_dir(Path(env), f"${ENV_VAR}")
    conventional = repo_root().parent / "shared" / "benchmarks"
    return conventional.resolve() if conventional.is_dir() else None


def _existing_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(path, f"{what} is not an existing folder")
    return path.resolve()


# ---------------------------------------------------------------- validation

@dataclass(frozen=True)
class Where:
    """Where a record sits: a file, its 1-based ``line`` (JSONL) or 0-based ``index`` (JSON array, hub split)."""

    path: str
    line: int | None = None
    index: int | None = None

    def error(self, message: str, field_name: str | None = None) -> DataError:
        if self.index is not None:
            message = f"record {self.index}: {message}"
        return DataError(self.path, message, line=self.line, field=field_name)


def _get(rec: dict, name: str, where: Where) -> Any:
    if name not in rec:
        raise where.error("missing required field", name)
    return rec[name]


def req_str(rec: dict, name: str, where: Where, allow_empty: bool = False) -> str:
    """``rec[name]`` as a string (non-empty unless ``allow_empty``)."""
    value = _get(rec, name, where)
    if not isinstance(value, str):
        raise where.error(f"must be a string, got {type(value).__name__}", name)
    if not allow_empty and not value.strip():
        raise where.error("must not be empty", name)
    return value


def req_int(rec: dict, name: str, where: Where, allow_none: bool = False) -> int | None:
    """``rec[name]`` as an integer (``None`` allowed when ``allow_none``)."""
    value = _get(rec, name, where)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.error(f"must be an integer, got {type(value).__name__}", name)
    return value


def req_id(rec: dict, name: str, where: Where) -> int | str:
    """An identifier: an integer or a non-empty string."""
    value = _get(rec, name, where)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise where.error(f"must be an integer or a non-empty string, got {value!r}", name)
    return value


def req_number(rec: dict, name: str, where: Where) -> float:
    """``rec[name]`` as a finite float (ints accepted, booleans refused)."""
    return as_number(_get(rec, name, where), name, where)


def as_number(value: Any, name: str, where: Where) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise where.error(f"must be a finite number, got {value!r}", name)
    return float(value)


def req_str_list(rec: dict, name: str, where: Where, length: int | None = None) -> list[str]:
    """``rec[name]`` as a list of strings, of exactly ``length`` items when given."""
    value = _get(rec, name, where)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise where.error("must be a list of strings", name)
    if length is not None and len(value) != length:
        raise where.error(f"must hold exactly {length} items, got {len(value)}", name)
    return value


def req_number_list(rec: dict, name: str, where: Where, length: int) -> list[float]:
    """``rec[name]`` as a list of exactly ``length`` finite numbers."""
    value = _get(rec, name, where)
    if not isinstance(value, list):
        raise where.error(f"must be a list of {length} numbers", name)
    if len(value) != length:
        raise where.error(f"must hold exactly {length} numbers, got {len(value)}", name)
    return [as_number(v, name, where) for v in value]


def _check_unique(key, seen: dict, where: Where, name: str) -> None:
    if key in seen:
        raise where.error(f"duplicate {name} {key!r} (first at {seen[key]})", name)
    seen[key] = f"line {where.line}" if where.line is not None else f"record {where.index}"


# ------------------------------------------------------------------ reading

def read_json_array(path: str | os.PathLike) -> list[dict]:
    """A JSON file holding a list of objects; a non-object item is reported by index."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, list):
        raise DataError(path, f"expected a JSON array of records, got {type(data).__name__}")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise Where(str(path), index=i).error(f"expected a JSON object, got {type(rec).__name__}")
    return data


def read_records(path: str | os.PathLike) -> list[tuple[dict, Where]]:
    """Records of a ``.jsonl`` / ``.jsonl.gz`` (by line) or ``.json`` array (by index) file."""
    path = Path(path)
    if path.suffix == ".json":
        return [(rec, Where(str(path), index=i)) for i, rec in enumerate(read_json_array(path))]
    lines: list[int] = []  # iter_jsonl calls the validator with each record's line just before yielding it
    records = iter_jsonl(path, validate=lambda rec, line: lines.append(line))
    return [(rec, Where(str(path), line=lines[-1])) for rec in records]


def subsample(records: Sequence[dict], limit: int | None, seed: int = 0) -> list[dict]:
    """``limit`` records drawn without replacement with ``seed``, in their original order.

    ``limit=None`` (or ``>= len``) keeps everything; smoke runs pass a small limit.
    """
    if limit is None or limit >= len(records):
        return list(records)
    if limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    keep = sorted(random.Random(seed).sample(range(len(records)), limit))
    return [records[i] for i in keep]


def _hub_rows(repo_id: str, split: str, name: str | None = None) -> list[dict]:
    """All rows of one hub split (of config ``name``) as plain dicts; any failure becomes :class:`HubUnavailable`."""
    try:
        from datasets import load_dataset

        dataset = load_dataset(repo_id, name, split=split) if name else load_dataset(repo_id, split=split)
        return [dict(row) for row in dataset]
    except Exception as e:  # network, auth, renamed split: all mean "not available here"
        config = f", config {name!r}" if name else ""
        raise HubUnavailable(f"could not load {repo_id} (split {split!r}{config}) from the hub: "
                             f"{type(e).__name__}: {e}") from e


def _hub_where(repo_id: str, split: str, index: int) -> Where:
    return Where(f"hf://datasets/{repo_id} (split {split})", index=index)


# ------------------------------------------------------------------- RM-Bench

@dataclass
class RMBenchData:
    """Loaded RM-Bench: ``records`` (normalized), the domains that could not be
    loaded with the reason (``missing``), and where each loaded domain came from."""

    records: list[dict]
    missing: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def domains(self) -> list[str]:
        return [d for d in RMBENCH_DOMAINS if d in self.sources]


def rmbench_folder(path: str | os.PathLike) -> Path:
    """The folder holding ``*_filtered.json``: ``path`` itself or its ``rm-bench/`` child."""
    path = Path(path)
    return path / "rm-bench" if (path / "rm-bench").is_dir() else path


def validate_rmbench_record(rec: dict, where: Where, domain: str | None = None) -> dict:
    """One RM-Bench record -> ``{domain, id, prompt, chosen[3], rejected[3]}``.

    ``domain`` comes from the file name for local files, from the record's own
    ``domain`` field for the hub's total set.
    """
    if domain is None:
        domain = req_str(rec, "domain", where)
        if domain not in RMBENCH_DOMAINS:
            raise where.error(f"unknown domain {domain!r}; expected one of {list(RMBENCH_DOMAINS)}", "domain")
    return {
        "domain": domain,
        "id": req_id(rec, "id", where),
        "prompt": req_str(rec, "prompt", where),
        "chosen": req_str_list(rec, "chosen", where, length=len(RMBENCH_STYLES)),
        "rejected": req_str_list(rec, "rejected", where, length=len(RMBENCH_STYLES)),
    }


def load_rmbench_file(path: str | os.PathLike, domain: str) -> list[dict]:
    """One local ``<domain>_filtered.json``, validated; ids must be unique in the file."""
    if domain not in RMBENCH_DOMAINS:
        raise ValueError(f"unknown RM-Bench domain {domain!r}")
    seen: dict = {}
    out = []
    for rec, where in read_records(path):
        row = validate_rmbench_record(rec, where, domain)
        _check_unique(row["id"], seen, where, "id")
        out.append(row)
    return out


def load_rmbench_hub(domains: Iterable[str], split: str = "train") -> list[dict]:
    """The requested domains from the hub's total set (``THU-KEG/RM-Bench``).

    Raises :class:`HubUnavailable` when the hub cannot be reached.
    """
    wanted = set(domains)
    seen: dict = {}
    out = []
    for i, rec in enumerate(_hub_rows(RMBENCH_HUB, split)):
        where = _hub_where(RMBENCH_HUB, split, i)
        row = validate_rmbench_record(rec, where)
        if row["domain"] in wanted:
            _check_unique((row["domain"], row["id"]), seen, where, "id")
            out.append(row)
    return out


def load_rmbench(
    root: str | os.PathLike | None = None,
    domains: Sequence[str] = RMBENCH_DOMAINS,
    use_hub: bool = True,
    limit: int | None = None,
    seed: int = 0,
) -> RMBenchData:
    """RM-Bench records for ``domains``: local files first, the hub for the rest.

    root: benchmarks folder (or the ``rm-bench`` folder); ``None`` -> :func:`benchmarks_dir`.
    limit: keep at most ``limit`` prompts per domain (seeded subsample, for smoke runs).
    A domain neither file nor hub can give is listed in ``missing`` with the reason.
    """
    unknown = [d for d in domains if d not in RMBENCH_DOMAINS]
    if unknown:
        raise ValueError(f"unknown RM-Bench domains {unknown}; expected some of {list(RMBENCH_DOMAINS)}")
    root = benchmarks_dir(root)
    data = RMBenchData(records=[])
    by_domain: dict[str, list[dict]] = {}
    for domain in domains:
        path = rmbench_folder(root) / f"{domain}_filtered.json" if root is not None else None
        if path is not None and path.exists():
            by_domain[domain] = load_rmbench_file(path, domain)
            data.sources[domain] = str(path)
    rest = [d for d in domains if d not in by_domain]
    if rest and use_hub:
        try:
            for row in load_rmbench_hub(rest):
                by_domain.setdefault(row["domain"], []).append(row)
            data.sources.update({d: f"hf://datasets/{RMBENCH_HUB}" for d in rest if d in by_domain})
        except HubUnavailable as e:
            data.missing.update({d: str(e) for d in rest})
    for d in rest:
        if d not in by_domain and d not in data.missing:
            data.missing[d] = "no local file" + ("; not in the hub set" if use_hub else " (hub disabled)")
    for domain in domains:
        data.records.extend(subsample(by_domain.get(domain, []), limit, seed))
    return data


# ----------------------------------------------------------------- JudgeBench

def judgebench_group(source: str) -> str:
    """Source -> group: ``mmlu-pro-*`` knowledge, ``livebench-reasoning`` reasoning,
    ``livebench-math`` math, ``livecodebench`` code. Unknown sources raise ``ValueError``."""
    if source.startswith("mmlu-pro"):
        return "knowledge"
    groups = {"livebench-reasoning": "reasoning", "livebench-math": "math", "livecodebench": "code"}
    if source not in groups:
        raise ValueError(f"unknown JudgeBench source {source!r}")
    return groups[source]


def validate_judgebench_pair(rec: dict, where: Where) -> dict:
    """One pair -> ``{pair_id, original_id, source, question, response_model, response_A, response_B, label}``."""
    source = req_str(rec, "source", where)
    try:
        judgebench_group(source)
    except ValueError as e:
        raise where.error(str(e), "source") from None
    label = req_str(rec, "label", where)
    if label not in JUDGEBENCH_LABELS:
        raise where.error(f"must be one of {list(JUDGEBENCH_LABELS)}, got {label!r}", "label")
    return {
        "pair_id": req_str(rec, "pair_id", where),
        "original_id": req_id(rec, "original_id", where) if _get(rec, "original_id", where) is not None else None,
        "source": source,
        "question": req_str(rec, "question", where),
        "response_model": req_str(rec, "response_model", where),
        "response_A": req_str(rec, "response_A", where, allow_empty=True),
        "response_B": req_str(rec, "response_B", where, allow_empty=True),
        "label": label,
    }


def _judgebench_rows(items: Iterable[tuple[dict, Where]], validate=validate_judgebench_pair) -> list[dict]:
    seen: dict = {}
    out = []
    for rec, where in items:
        row = validate(rec, where)
        _check_unique(row["pair_id"], seen, where, "pair_id")
        out.append(row)
    return out


def load_judgebench_file(path: str | os.PathLike) -> list[dict]:
    """A local JudgeBench pairs file (JSONL), validated; ``pair_id`` must be unique."""
    return _judgebench_rows(read_records(path))


def load_judgebench_hub(split: str = "gpt") -> list[dict]:
    """A JudgeBench split (``gpt`` or ``claude``) from the hub (``ScalerLab/JudgeBench``)."""
    rows = _hub_rows(JUDGEBENCH_HUB, split)
    return _judgebench_rows((rec, _hub_where(JUDGEBENCH_HUB, split, i)) for i, rec in enumerate(rows))


def load_judgebench(
    split: str = "gpt",
    root: str | os.PathLike | None = None,
    use_hub: bool = True,
    limit: int | None = None,
    seed: int = 0,
) -> list[dict]:
    """JudgeBench pairs of ``split`` (``gpt``: 350 pairs by GPT-4o, ``claude``: 270).

    Local file under ``<root>/judgebench/`` first, then the hub (which may raise
    :class:`HubUnavailable`). ``limit``: seeded subsample for smoke runs.
    """
    if split not in JUDGEBENCH_SPLITS:
        raise ValueError(f"unknown JudgeBench split {split!r}; expected one of {list(JUDGEBENCH_SPLITS)}")
    root = benchmarks_dir(root)
    path = root / "judgebench" / JUDGEBENCH_SPLITS[split] if root is not None else None
    if path is not None and path.exists():
        pairs = load_judgebench_file(path)
    elif use_hub:
        pairs = load_judgebench_hub(split)
    else:
        raise DataError(path or "judgebench", "no local JudgeBench file and the hub is disabled")
    return subsample(pairs, limit, seed)


def validate_judgebench_output(rec: dict, where: Where) -> dict:
    """A published judge run's record: the pair plus ``judgments``.

    ``judgments`` holds one game (single-game runs) or two (original order, then
    swapped); each is ``None`` (the judge failed) or has a ``decision`` (string or
    ``None``, in that game's own order) and optionally ``judgment.scores`` =
    ``[score_of_first, score_of_second]``. Normalized to
    ``judgments: [{"decision": str|None, "scores": [f, f]|None} | None, ...]``.
    """
    row = validate_judgebench_pair(rec, where)
    games = _get(rec, "judgments", where)
    if not isinstance(games, list) or len(games) not in (1, 2):
        raise where.error("must be a list of 1 or 2 games", "judgments")
    row["judgments"] = [_validate_game(g, k, where) for k, g in enumerate(games)]
    return row


def _validate_game(game: Any, k: int, where: Where) -> dict | None:
    name = f"judgments[{k}]"
    if game is None:
        return None
    if not isinstance(game, dict):
        raise where.error("must be an object or null", name)
    decision = game.get("decision")
    if decision is not None and not isinstance(decision, str):
        raise where.error(f"must be a string or null, got {decision!r}", f"{name}.decision")
    scores = None
    inner = game.get("judgment")
    if isinstance(inner, dict) and inner.get("scores") is not None:
        scores = req_number_list(inner, "scores", where, 2)
    return {"decision": decision, "scores": scores}


def load_judgebench_outputs(path: str | os.PathLike) -> list[dict]:
    """A published JudgeBench output file (``judgebench/outputs/*.jsonl``), validated."""
    return _judgebench_rows(read_records(path), validate=validate_judgebench_output)


# ---------------------------------------------------------------- RewardBench

def validate_rewardbench_record(rec: dict, where: Where) -> dict:
    """One RewardBench pair -> ``{id, subset, prompt, chosen, rejected, chosen_model, rejected_model}``."""
    row = {
        "id": req_id(rec, "id", where),
        "subset": req_str(rec, "subset", where),
        "prompt": req_str(rec, "prompt", where),
        "chosen": req_str(rec, "chosen", where, allow_empty=True),
        "rejected": req_str(rec, "rejected", where, allow_empty=True),
    }
    for name in ("chosen_model", "rejected_model"):
        row[name] = req_str(rec, name, where, allow_empty=True) if rec.get(name) is not None else None
    return row


def _rewardbench_rows(items: Iterable[tuple[dict, Where]]) -> list[dict]:
    seen: dict = {}
    out = []
    for rec, where in items:
        row = validate_rewardbench_record(rec, where)
        _check_unique(row["id"], seen, where, "id")
        out.append(row)
    return out


def load_rewardbench_hub(split: str = REWARDBENCH_SPLIT) -> list[dict]:
    """RewardBench from the hub (``allenai/reward-bench``, split ``filtered``: 2985 pairs)."""
    rows = _hub_rows(REWARDBENCH_HUB, split)
    return _rewardbench_rows((rec, _hub_where(REWARDBENCH_HUB, split, i)) for i, rec in enumerate(rows))


def load_rewardbench(
    path: str | os.PathLike | None = None,
    use_hub: bool = True,
    limit: int | None = None,
    seed: int = 0,
) -> list[dict]:
    """RewardBench pairs from a local ``.jsonl``/``.json`` file in the hub schema, or the hub.

    ``id`` must be unique. ``limit``: seeded subsample for smoke runs.
    """
    if path is not None:
        rows = _rewardbench_rows(read_records(path))
    elif use_hub:
        rows = load_rewardbench_hub()
    else:
        raise DataError("reward-bench", "no local RewardBench file given and the hub is disabled")
    return subsample(rows, limit, seed)


# ------------------------------------------------------------------- MT-Bench

@dataclass
class MTBench:
    """MT-Bench: ``questions`` (80, two turns each), GPT-4 ``references`` by question id
    (turn texts), and the official ``judge_prompts`` by name."""

    questions: list[dict]
    references: dict[int, list[str]]
    judge_prompts: dict[str, dict]


def _validate_mt_question(rec: dict, where: Where) -> dict:
    row = {
        "question_id": req_int(rec, "question_id", where),
        "category": req_str(rec, "category", where),
        "turns": req_str_list(rec, "turns", where),
    }
    if not row["turns"]:
        raise where.error("must hold at least one turn", "turns")
    if rec.get("reference") is not None:
        row["reference"] = req_str_list(rec, "reference", where)
    return row


def _validate_mt_reference(rec: dict, where: Where) -> tuple[int, list[str]]:
    qid = req_int(rec, "question_id", where)
    choices = _get(rec, "choices", where)
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise where.error("must be a non-empty list of objects", "choices")
    return qid, req_str_list(choices[0], "turns", where)


def _validate_judge_prompt(rec: dict, where: Where) -> dict:
    row = {name: req_str(rec, name, where) for name in ("name", "type", "prompt_template", "output_format")}
    row["system_prompt"] = req_str(rec, "system_prompt", where, allow_empty=True)
    row["category"] = req_str(rec, "category", where) if "category" in rec else "general"
    row["description"] = req_str(rec, "description", where, allow_empty=True) if "description" in rec else ""
    if row["type"] not in ("single", "pairwise"):
        raise where.error(f"must be 'single' or 'pairwise', got {row['type']!r}", "type")
    return row


def load_mtbench(root: str | os.PathLike | None = None) -> MTBench:
    """MT-Bench from ``<root>/mt-bench/``: questions, references, judge prompts.

    Checks: unique question ids and prompt names; every reference answers a known
    question; every math/reasoning/coding question has a reference (FastChat judges
    those with the reference answer).
    """
    folder = _local_folder(root, "mt-bench")
    questions, seen = [], {}
    for rec, where in read_records(folder / "question.jsonl"):
        row = _validate_mt_question(rec, where)
        _check_unique(row["question_id"], seen, where, "question_id")
        questions.append(row)
    by_id = {q["question_id"]: q for q in questions}
    ref_path = folder / "reference_answer_gpt-4.jsonl"
    references, seen = {}, {}
    for rec, where in read_records(ref_path):
        qid, turns = _validate_mt_reference(rec, where)
        _check_unique(qid, seen, where, "question_id")
        if qid not in by_id:
            raise where.error(f"no question with id {qid}", "question_id")
        references[qid] = turns
    lacking = [q["question_id"] for q in questions if q["category"] in MTBENCH_NEED_REF_CATEGORIES and q["question_id"] not in references]
    if lacking:
        raise DataError(ref_path, f"no reference answer for questions {lacking} (categories {list(MTBENCH_NEED_REF_CATEGORIES)} need one)", field="question_id")
    prompts, seen = {}, {}
    for rec, where in read_records(folder / "judge_prompts.jsonl"):
        row = _validate_judge_prompt(rec, where)
        _check_unique(row["name"], seen, where, "name")
        prompts[row["name"]] = row
    return MTBench(questions=questions, references=references, judge_prompts=prompts)


# ------------------------------------------------------------- Arena-Hard v2

@dataclass
class ArenaHard:
    """Arena-Hard v2: ``questions`` of the categories that can be scored (``uid, category,
    subcategory, prompt``), each category's official baseline model (``baselines``), their
    answers (``answers[model][uid] = {uid, model, answer}``) and the categories left out with the
    reason (``skipped``: their baseline's answers are not in the folder)."""

    questions: list[dict]
    baselines: dict[str, str]
    answers: dict[str, dict[str, dict]]
    skipped: dict[str, str] = field(default_factory=dict)

    def baseline_answer(self, question: dict) -> str:
        """The baseline's answer to ``question`` (the baseline of its category)."""
        return self.answers[self.baselines[question["category"]]][question["uid"]]["answer"]


def _validate_arena_question(rec: dict, where: Where) -> dict:
    row = {name: req_str(rec, name, where) for name in ("uid", "category", "subcategory", "prompt")}
    if row["category"] not in ARENA_BASELINES:
        raise where.error(f"unknown category {row['category']!r}; expected one of {list(ARENA_BASELINES)}", "category")
    return row


def _validate_arena_answer(rec: dict, where: Where) -> dict:
    messages = _get(rec, "messages", where)
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        raise where.error("must be a non-empty list of chat messages", "messages")
    last = messages[-1]
    if last.get("role") != "assistant":
        raise where.error("the last message must come from the assistant", "messages")
    content = last.get("content")
    answer = content.get("answer") if isinstance(content, dict) else content
    if not isinstance(answer, str) or not answer.strip():
        raise where.error("the assistant message must hold a non-empty answer", "messages")
    return {"uid": req_str(rec, "uid", where), "model": req_str(rec, "model", where), "answer": answer}


def _load_arena_answers(path: Path, model: str, questions: dict[str, dict], category: str) -> dict[str, dict]:
    """A baseline's answer file: one model's answers to known questions, covering ``category``."""
    answers, seen = {}, {}
    for rec, where in read_records(path):
        row = _validate_arena_answer(rec, where)
        _check_unique(row["uid"], seen, where, "uid")
        if row["uid"] not in questions:
            raise where.error(f"no question with uid {row['uid']!r}", "uid")
        if row["model"] != model:
            raise where.error(f"expected answers of {model!r} (the file name), got {row['model']!r}", "model")
        answers[row["uid"]] = row
    unanswered = sorted(u for u, q in questions.items() if q["category"] == category and u not in answers)
    if unanswered:
        raise DataError(path, f"{len(unanswered)} {category} questions have no baseline answer, e.g. "
                              f"{unanswered[:3]}", field="uid")
    return answers


def load_arena_hard(root: str | os.PathLike | None = None,
                    baselines: dict[str, str] | None = None) -> ArenaHard:
    """Arena-Hard v2 from ``<root>/arena-hard-v2/``: questions plus each category's baseline answers.

    baselines: category -> baseline model, answers read from ``<model>.jsonl`` (default
    :data:`ARENA_BASELINES`, the official ``JUDGE_SETTINGS``). A category whose baseline file is
    absent is left out and listed in ``skipped`` with the reason; a file that is there must answer
    every question of its category (checked, as are unique uids). No category left: an error.
    """
    baselines = dict(ARENA_BASELINES if baselines is None else baselines)
    folder = _local_folder(root, "arena-hard-v2")
    questions, seen = {}, {}
    for rec, where in read_records(folder / "question.jsonl"):
        row = _validate_arena_question(rec, where)
        _check_unique(row["uid"], seen, where, "uid")
        questions[row["uid"]] = row
    answers: dict[str, dict[str, dict]] = {}
    skipped: dict[str, str] = {}
    for category in dict.fromkeys(q["category"] for q in questions.values()):
        model = baselines[category]
        path = folder / f"{model}.jsonl"
        if not path.exists():
            skipped[category] = (f"not scored: the official baseline {model}'s answers ({path.name}) are not in "
                                 f"{folder} (they are on the hub: {ARENA_HUB})")
        elif model not in answers:
            answers[model] = _load_arena_answers(path, model, questions, category)
        else:
            _load_arena_answers(path, model, questions, category)  # the coverage check for this category
    kept = [q for q in questions.values() if q["category"] not in skipped]
    if not kept:
        raise DataError(folder, f"no baseline answers for any category: {skipped}")
    return ArenaHard(questions=kept, baselines={c: m for c, m in baselines.items() if c not in skipped},
                     answers=answers, skipped=skipped)


# ------------------------------------------------------------------ WildBench v2

@dataclass
class WildBench:
    """WildBench v2: ``tasks`` (``{session_id, index, conversation, checklist, primary_tag,
    secondary_tags, groups}``; ``index`` is the task's place in the full set), the reference
    models' outputs (``references[model][session_id] = text``), the references that could not be
    loaded with the reason (``missing``) and where the tasks came from (``source``)."""

    tasks: list[dict]
    references: dict[str, dict[str, str]]
    missing: dict[str, str] = field(default_factory=dict)
    source: str = ""


def validate_wildbench_task(rec: dict, where: Where, index: int) -> dict:
    """One task of the hub's v2 config -> the fields the official evaluation reads."""
    conversation = _get(rec, "conversation_input", where)
    if not isinstance(conversation, list) or not conversation:
        raise where.error("must be a non-empty list of chat turns", "conversation_input")
    turns = []
    for k, turn in enumerate(conversation):
        name = f"conversation_input[{k}]"
        if not isinstance(turn, dict):
            raise where.error("must be an object", name)
        role, content = req_str(turn, "role", where), req_str(turn, "content", where, allow_empty=True)
        if role not in ("user", "assistant"):
            raise where.error(f"role must be 'user' or 'assistant', got {role!r}", f"{name}.role")
        turns.append({"role": role, "content": content})
    if turns[-1]["role"] != "user":
        raise where.error("the last turn must be the user's query", "conversation_input")
    tags = [req_str(rec, "primary_tag", where)] + req_str_list(rec, "secondary_tags", where)
    unknown = [t for t in tags if t not in WILDBENCH_TASK_GROUPS]
    if unknown:
        raise where.error(f"unknown task tags {unknown}; expected some of {list(WILDBENCH_TASK_GROUPS)}",
                          "primary_tag" if tags[0] in unknown else "secondary_tags")
    return {"session_id": req_str(rec, "session_id", where), "index": index, "conversation": turns,
            "checklist": req_str_list(rec, "checklist", where), "primary_tag": tags[0], "secondary_tags": tags[1:],
            "groups": sorted({WILDBENCH_TASK_GROUPS[t] for t in tags})}


def validate_wildbench_output(rec: dict, where: Where) -> tuple[str, str]:
    """A model-outputs row -> (session_id, output); ``output`` is a string or a list whose first
    item is used (``src/eval.py``)."""
    output = _get(rec, "output", where)
    if isinstance(output, list):
        if not output or not isinstance(output[0], str):
            raise where.error("must be a string or a non-empty list of strings", "output")
        output = output[0]
    elif not isinstance(output, str):
        raise where.error(f"must be a string or a list of strings, got {type(output).__name__}", "output")
    return req_str(rec, "session_id", where), output


def _wildbench_file(folder: Path, stem: str) -> Path | None:
    return next((folder / f"{stem}{ext}" for ext in (".jsonl", ".json") if (folder / f"{stem}{ext}").exists()), None)


def _wildbench_outputs(items: Iterable[tuple[dict, Where]], tasks: Sequence[dict], what: str) -> dict[str, str]:
    outputs, seen = {}, {}
    for rec, where in items:
        sid, text = validate_wildbench_output(rec, where)
        _check_unique(sid, seen, where, "session_id")
        outputs[sid] = text
    lacking = [t["session_id"] for t in tasks if t["session_id"] not in outputs]
    if lacking:
        raise DataError(what, f"no output for {len(lacking)} tasks, e.g. {lacking[:3]}", field="session_id")
    return outputs


def load_wildbench(root: str | os.PathLike | None = None, references: Sequence[str] = WILDBENCH_REFERENCES,
                   use_hub: bool = True) -> WildBench:
    """WildBench v2 tasks and the reference models' outputs.

    Local copies first: ``<root>/wildbench/test.jsonl`` (or ``.json``; the rows of the hub's
    ``allenai/WildBench`` config v2, split test, unchanged) and
    ``<root>/wildbench/model_outputs/<model>.jsonl`` (rows of ``allenai/WildBench-V2-Model-Outputs``,
    config ``<model>``); then the hub when ``use_hub``. No tasks: :class:`HubUnavailable` (the
    caller says WildBench is not available). A reference that neither gives is listed in
    ``missing``; one that is given must answer every task. Session ids must be unique.
    """
    root = benchmarks_dir(root)
    folder = (root / "wildbench") if root is not None else None
    path = _wildbench_file(folder, "test") if folder is not None and folder.is_dir() else None
    if path is not None:
        items, source = read_records(path), str(path)
    elif use_hub:
        rows = _hub_rows(WILDBENCH_HUB, WILDBENCH_SPLIT, WILDBENCH_CONFIG)
        items = [(rec, _hub_where(WILDBENCH_HUB, WILDBENCH_SPLIT, i)) for i, rec in enumerate(rows)]
        source = f"hf://datasets/{WILDBENCH_HUB} (config {WILDBENCH_CONFIG})"
    else:
        raise HubUnavailable(f"no local WildBench tasks ({folder or 'no benchmarks folder'}/test.jsonl) "
                             "and the hub is disabled")
    tasks, seen = [], {}
    for index, (rec, where) in enumerate(items):
        row = validate_wildbench_task(rec, where, index)
        _check_unique(row["session_id"], seen, where, "session_id")
        tasks.append(row)
    data = WildBench(tasks=tasks, references={}, source=source)
    for model in references:
        local = _wildbench_file(folder / "model_outputs", model) if folder is not None else None
        if local is not None:
            data.references[model] = _wildbench_outputs(read_records(local), tasks, str(local))
        elif not use_hub:
            data.missing[model] = f"no local outputs ({folder}/model_outputs/{model}.jsonl) and the hub is disabled"
        else:
            try:
                rows = _hub_rows(WILDBENCH_OUTPUTS_HUB, WILDBENCH_OUTPUTS_SPLIT, model)
            except HubUnavailable as e:
                data.missing[model] = str(e)
                continue
            what = f"hf://datasets/{WILDBENCH_OUTPUTS_HUB} (config {model})"
            data.references[model] = _wildbench_outputs(((rec, Where(what, index=i)) for i, rec in enumerate(rows)),
                                                        tasks, what)
    return data


def _local_folder(root: str | os.PathLike | None, name: str) -> Path:
    root = benchmarks_dir(root)
    if root is None:
        raise DataError(name, f"no local benchmarks folder (set ${ENV_VAR} or pass a folder)")
    folder = root / name if (root / name).is_dir() else root
    if not folder.is_dir():
        raise DataError(folder, "folder not found")
    return folder
