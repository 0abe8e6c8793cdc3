"""Data sources behind one interface: HelpSteer3-Feedback records, validated.

Sources (the ``data`` stage's ``source``, see :class:`rlbff_lib.stages.data.DataConfig`):

- ``synthetic``: the synthetic feedback world (:mod:`rlbff_lib.synthetic.world`), whose ground
  truth is known; the smoke default.
- ``helpsteer3``: ``datasets.load_dataset("nvidia/HelpSteer3", "feedback")`` joined with
  the ``"preference"`` config, or local ``.jsonl`` / ``.jsonl.gz`` / ``.json`` /
  ``.parquet`` files.
- ``helpsteer3-principle``: the released ``principle`` config (``context, response,
  principle, fulfilment``), so reward models can be trained without extraction.

A feedback record holds ``id, domain, language, context`` (chat messages, last one
from the user), ``response1, response2``, ``feedback1, feedback2`` (up to three
texts each) and, when known, ``overall_preference`` (−3..3, negative: response1
better) and ``individual_preference`` (``[{score, reasoning}]``). Every record is
validated; a bad one raises :class:`~rlbff_lib.core.io.DataError` with file, line and field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rlbff_lib.core.io import DataError, iter_jsonl, read_text, stable_hash

DOMAINS = ("general", "stem", "code", "multilingual")
ROLES = ("system", "user", "assistant")
FULFILMENT = ("Yes", "No")


@dataclass
class HelpSteer3Config:
    """Where HelpSteer3 comes from.

    path: a local file or folder (``feedback*.jsonl`` etc.); ``None`` loads ``hub_name``.
    preference_path: local preference-config file to join (optional).
    hub_name: dataset name on the hub; splits: which splits to read.
    limit: keep the first ``limit`` records per split (``None``: all).
    """

    path: str | None = None
    preference_path: str | None = None
    hub_name: str = "nvidia/HelpSteer3"
    splits: list[str] = field(default_factory=lambda: ["train", "validation"])
    limit: int | None = None

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit: must be >= 1 or null, got {self.limit}")
        if not self.splits:
            raise ValueError("splits: must name at least one split")


# ---------------------------------------------------------------- validation

def _fail(where: tuple, message: str, field_name: str):
    path, line = where
    raise DataError(path, message, line=line, field=field_name)


def _check_context(context, where) -> None:
    if not isinstance(context, list) or not context:
        _fail(where, "must be a non-empty list of chat messages", "context")
    for i, m in enumerate(context):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ROLES:
            _fail(where, f"message {i} must be {{role: {'|'.join(ROLES)}, content: str}}, got {str(m)[:80]}",
                  f"context[{i}]")
    if context[-1]["role"] != "user":
        _fail(where, f"last message must be from the user, got {context[-1]['role']!r}", "context")


def validate_feedback_record(rec: dict, where: tuple) -> None:
    """Check one HelpSteer3-Feedback record; ``where`` is (file, line) for the message."""
    for key in ("domain", "language", "context", "response1", "response2", "feedback1", "feedback2"):
        if key not in rec:  # feedback1/2: [] when an annotator wrote none, never absent (HelpSteer3's schema)
            _fail(where, "missing field", key)
    if rec["domain"] not in DOMAINS:
        _fail(where, f"must be one of {list(DOMAINS)}, got {rec['domain']!r}", "domain")
    if not isinstance(rec["language"], str):
        _fail(where, "must be a string", "language")
    _check_context(rec["context"], where)
    for key in ("response1", "response2"):
        if not isinstance(rec[key], str):
            _fail(where, f"must be a string, got {type(rec[key]).__name__}", key)
    for key in ("feedback1", "feedback2"):
        fb = rec[key]
        if not isinstance(fb, list) or len(fb) > 3 or not all(isinstance(t, str) for t in fb):
            _fail(where, "must be a list of at most 3 strings", key)
    if rec.get("overall_preference") is not None:
        op = rec["overall_preference"]
        if isinstance(op, bool) or not isinstance(op, int) or not -3 <= op <= 3:
            _fail(where, f"must be an integer in -3..3, got {op!r}", "overall_preference")
    for i, ip in enumerate(rec.get("individual_preference") or []):
        s = ip.get("score") if isinstance(ip, dict) else None
        if isinstance(s, bool) or not isinstance(s, int) or not -3 <= s <= 3:
            _fail(where, f"score must be an integer in -3..3, got {s!r}", f"individual_preference[{i}].score")


def validate_principle_record(rec: dict, where: tuple) -> None:
    """Check one record of the released ``principle`` config."""
    for key in ("domain", "context", "response", "principle", "fulfilment"):
        if key not in rec:
            _fail(where, "missing field", key)
    _check_context(rec["context"], where)
    if not isinstance(rec["response"], str):
        _fail(where, "must be a string", "response")
    if not isinstance(rec["principle"], str) or not rec["principle"].strip():
        _fail(where, "must be a non-empty string", "principle")
    if rec["fulfilment"] not in FULFILMENT:
        _fail(where, f"must be one of {list(FULFILMENT)}, got {rec['fulfilment']!r}", "fulfilment")


def record_id(rec: dict) -> str:
    """A stable id from the prompt and both responses (HelpSteer3 records carry none)."""
    return "hs3-" + stable_hash(rec["context"], rec.get("response1", rec.get("response")), rec.get("response2"))[:16]


def prompt_key(context: list[dict]) -> str:
    """Key of a prompt (the whole context), used to split by prompt."""
    return stable_hash(context)[:16]


# ---------------------------------------------------------------- readers

def _iter_file(path: Path):
    """(line_or_index, record) from .jsonl / .jsonl.gz / .json (object or array) / .parquet."""
    name = path.name
    if name.endswith(".jsonl") or name.endswith(".jsonl.gz"):
        for i, rec in enumerate(iter_jsonl(path)):
            yield i + 1, rec
    elif name.endswith(".json"):
        try:
            obj = json.loads(read_text(path))
        except json.JSONDecodeError as e:
            raise DataError(path, f"invalid JSON ({e.msg})", line=e.lineno) from None
        rows = obj if isinstance(obj, list) else [obj]
        for i, rec in enumerate(rows):
            if not isinstance(rec, dict):
                raise DataError(path, "expected a JSON object", line=i + 1)
            yield i + 1, rec
    elif name.endswith(".parquet"):
        import pyarrow.parquet as pq

        for i, rec in enumerate(pq.read_table(path).to_pylist()):
            yield i + 1, rec
    else:
        raise DataError(path, "unsupported file type (use .jsonl, .jsonl.gz, .json or .parquet)")


def _files(path: Path, stem: str) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.exists():
        raise DataError(path, "file or folder not found")
    files = sorted(p for p in path.iterdir() if p.name.startswith(stem) and not p.name.startswith("."))
    if not files:
        raise DataError(path, f"no {stem}* file in this folder")
    return files


def read_feedback_files(path: str | Path, limit: int | None = None) -> list[dict]:
    """Validated feedback records from a local file or folder; ids added when absent."""
    out = []
    for f in _files(Path(path), "feedback"):
        for line, rec in _iter_file(f):
            rec = {k: v for k, v in rec.items() if not k.startswith("_")}
            validate_feedback_record(rec, (f, line))
            rec.setdefault("id", record_id(rec))
            out.append(rec)
            if limit and len(out) >= limit:
                return out
    if not out:
        raise DataError(path, "no feedback records (empty file)")
    return out


def read_principle_files(path: str | Path, limit: int | None = None) -> list[dict]:
    """Validated records of the released ``principle`` config from local files."""
    out = []
    for f in _files(Path(path), "principle"):
        for line, rec in _iter_file(f):
            rec = {k: v for k, v in rec.items() if not k.startswith("_")}
            validate_principle_record(rec, (f, line))
            out.append(rec)
            if limit and len(out) >= limit:
                return out
    if not out:
        raise DataError(path, "no principle records (empty file)")
    return out


def join_preferences(records: list[dict], preferences: list[dict]) -> int:
    """Copy ``overall_preference``/``individual_preference`` onto matching feedback records.

    Records match on (context, response1, response2). Returns how many matched.
    """
    by_key = {stable_hash(p["context"], p["response1"], p["response2"]): p
              for p in preferences if "context" in p and "response1" in p}
    n = 0
    for r in records:
        p = by_key.get(stable_hash(r["context"], r["response1"], r["response2"]))
        if p is not None:
            r["overall_preference"] = p.get("overall_preference")
            r["individual_preference"] = p.get("individual_preference")
            n += 1
    return n


def load_hub_feedback(cfg: HelpSteer3Config) -> list[dict]:
    """HelpSteer3 ``feedback`` joined with ``preference`` from the hub (needs network)."""
    from datasets import load_dataset

    records = []
    for split in cfg.splits:
        fb = load_dataset(cfg.hub_name, "feedback", split=split)
        pref = load_dataset(cfg.hub_name, "preference", split=split)
        rows = [dict(r) for r in fb.select(range(min(cfg.limit or len(fb), len(fb))))]
        for i, rec in enumerate(rows):
            validate_feedback_record(rec, (f"{cfg.hub_name}:feedback:{split}", i + 1))
            rec["id"] = record_id(rec)
            rec["split"] = split
        join_preferences(rows, [dict(p) for p in pref])
        records += rows
    return records


def load_hub_principles(cfg: HelpSteer3Config) -> list[dict]:
    """The released ``principle`` config from the hub (needs network)."""
    from datasets import load_dataset

    out = []
    for split in cfg.splits:
        ds = load_dataset(cfg.hub_name, "principle", split=split)
        for i, rec in enumerate(ds.select(range(min(cfg.limit or len(ds), len(ds))))):
            rec = dict(rec)
            validate_principle_record(rec, (f"{cfg.hub_name}:principle:{split}", i + 1))
            rec["split"] = split
            out.append(rec)
    return out


# The two configs the project reads, with their fields in the hub's order (nvidia/HelpSteer3 card), and
# the hub repository's layout: <config>/<split>.jsonl.gz, declared in the README's `configs:` metadata.
HUB_CONFIGS = {
    "feedback": ("domain", "language", "context", "response1", "response2", "feedback1", "feedback2"),
    "preference": ("domain", "language", "context", "response1", "response2", "overall_preference",
                   "individual_preference"),
}


def write_hub_dataset(records: list[dict], folder: str | Path, splits: tuple[str, ...] = ("train", "validation")) -> dict:
    """Write feedback records as a local copy of the ``nvidia/HelpSteer3`` hub repository: the
    ``feedback`` and ``preference`` configs (fields of :data:`HUB_CONFIGS` only), one gzipped JSON
    Lines file per split (each record's ``split``, else train), and a README whose ``configs:``
    metadata declares them, so ``datasets.load_dataset(folder, "feedback", split="train")`` (the
    call :func:`load_hub_feedback` makes with ``hub_name``) reads it exactly as it reads the hub.
    Returns records per (config, split)."""
    import gzip

    from rlbff_lib.core.io import atomic_write_text

    folder = Path(folder)
    counts, meta = {}, ["---", "configs:"]
    for config, fields in HUB_CONFIGS.items():
        meta += [f"- config_name: {config}"] + (["  default: true"] if config == "preference" else []) + ["  data_files:"]
        for split in splits:
            rows = [{k: r.get(k) for k in fields} for r in records if r.get("split", "train") == split]
            if config == "feedback":
                rows = [{**r, "feedback1": r["feedback1"] or [], "feedback2": r["feedback2"] or []} for r in rows]
            path = folder / config / f"{split}.jsonl.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            with gzip.open(tmp, "wt", encoding="utf-8") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            tmp.replace(path)
            meta += [f"  - split: {split}", f"    path: {config}/{split}.jsonl.gz"]
            counts[f"{config}/{split}"] = len(rows)
    meta += ["---", "", "A local copy of nvidia/HelpSteer3 in the hub's schema (written by rlbff_lib.data.sources).", ""]
    atomic_write_text(folder / "README.md", "\n".join(meta))
    return counts


def load_source(cfg) -> dict:
    """Load the configured source; ``cfg`` has ``source``, ``world`` and ``helpsteer3`` (the data stage's config).

    Returns ``{"feedback": [records], "principle": [records], "truth": [rows]}``;
    ``truth`` (per response, property -> bool) only for the synthetic world.
    """
    if cfg.source == "synthetic":
        from rlbff_lib.synthetic.world import generate_world

        world = generate_world(cfg.world)
        return {"feedback": world.records, "principle": [], "truth": world.truth}
    hs = cfg.helpsteer3
    if cfg.source == "helpsteer3":
        if hs.path is None:
            return {"feedback": load_hub_feedback(hs), "principle": [], "truth": []}
        records = read_feedback_files(hs.path, hs.limit)
        if hs.preference_path:
            prefs = [rec for f in _files(Path(hs.preference_path), "preference") for _, rec in _iter_file(f)]
            join_preferences(records, prefs)
        return {"feedback": records, "principle": [], "truth": []}
    principles = load_hub_principles(hs) if hs.path is None else read_principle_files(hs.path, hs.limit)
    return {"feedback": [], "principle": principles, "truth": []}
