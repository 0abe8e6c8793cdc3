"""Reward-model evaluation (paper §5): RM-Bench, JudgeBench and PrincipleBench for any scorer.

Every model is seen through one interface, a *scorer*::

    scorer(conversations, responses, principles) -> list[float] | result

N conversations (a string = one user turn, or chat messages), N responses and N principles in,
N scores out, each response scored ALONE. ``result`` may be any object with ``scores`` (N floats)
and optionally ``truncated`` (N flags: the input was cut to ``max_length``) and ``judged`` (N
flags: a GenRM wrote a readable judgement). The models are
:class:`rlbff_lib.reward_models.scorers.Scorer` objects (:func:`load_model`: the scalar RM, the
Bradley–Terry RM, which ignores the principle, and the GenRM, with ``max_length`` counted as every
scorer counts it); tests pass fake scorers.

Benchmarks, scored with the official rules of :mod:`rlbff_lib.evaluation.rules`:

- RM-Bench: each of a prompt's 3 chosen and 3 rejected responses is scored with the principle of
  the prompt's domain (``principles.rmbench``; the two safety files pool into ``safety``), then
  :func:`rlbff_lib.evaluation.rules.score_rmbench` (3x3 style matrix: easy / normal / hard, domain score =
  their mean, overall = mean of the domains present). The math split is on the hub only: without
  it, math is reported missing and the overall is over 3 domains, and says so.
- JudgeBench: responses A and B are scored alone with the principle of the pair's source group
  (``principles.judgebench``); game 1 compares [s_A, s_B], game 2 [s_B, s_A], each decided by the
  higher score (:func:`rlbff_lib.evaluation.rules.score_judgebench_decisions`: a pair is right only when both
  games are). With ``rescore_swapped`` game 2's scores come from a second, separate scorer call
  with B presented first, so :func:`rlbff_lib.evaluation.rules.position_consistency` measures whether the
  verdict depends on the order at all (a single-response scorer: 100%, up to numerical noise
  of a different batching); otherwise game 2 reuses game 1's scores.
- PrincipleBench (the project's own, built by the ``principles`` stage from held-out prompts),
  scored both ways (:mod:`rlbff_lib.reward_models.accuracy`; the paper does not say which it used):
  **items** (``principlebench.jsonl``): right when ``score > threshold`` agrees with the label (Yes);
  threshold ``zero`` for the log-odds models (scalar RM, GenRM), ``validation`` fits it on
  validation items (:func:`rlbff_lib.reward_models.bradley_terry.fit_threshold`), needed by the
  principle-blind Bradley–Terry model; the majority-label baseline of the same sample beside it.
  **pairs** (``principlebench_pairs.jsonl``: one prompt and principle, a Yes and a No response):
  right when the Yes response scores strictly higher (ties wrong); no threshold. This stage is the
  one that publishes PrincipleBench (both ways in ``outputs/details/rm_eval.json``; the headline
  ``metrics/rm_eval.json`` keeps one number per model, the items'); the ``reward_models`` stage
  reports only its validation accuracy.

Every accuracy carries its 95% Wilson interval (:mod:`rlbff_lib.core.stats`), ``ci: [lower, upper]``
in percent, and the table prints it as ``68.2 [65.2, 71.0]``. RM-Bench's numbers are means over
each prompt's comparisons, which are not independent: their intervals take the prompts as the
sample size (the domain's prompts; all prompts for the overall, easy, normal and hard), ours.
The models are scored on the same PrincipleBench items, so two models are also compared paired
(:func:`principlebench_paired`, ``principlebench_paired`` in both files): on the items both scored
(keyed by ``item_id``; the GenRM's subsample lies inside the others'), the difference of item
accuracies with a 95% percentile-bootstrap interval over items and the exact McNemar p
(:func:`rlbff_lib.core.stats.paired_accuracy_difference`); an order is claimed when that
interval excludes 0, which overlapping Wilson intervals alone do not decide.

Sample sizes: ``limits`` per model and benchmark draw a seeded subsample that is NESTED (a
smaller limit takes a subset of a larger one's sample, :func:`nested_sample`), so the GenRM's
small sample lies inside the scalar RM's. RM-Bench limits count prompts per scored domain;
JudgeBench pairs and PrincipleBench items and pairs are spread over the source groups / domains
in proportion to their sizes (:func:`stratified_sample`: every group stays present).

The principle used per benchmark domain is a parameter; which one the paper used is not known
(reference §5: the model cards' examples use "correctness"). The defaults (:data:`RMBENCH_PRINCIPLES`,
:data:`JUDGEBENCH_PRINCIPLES`) are correctness phrasings for chat / math / code and the four
JudgeBench groups, and "is safe and refuses harmful requests appropriately" for safety (RM-Bench's
safety split rewards refusing harmful prompts AND answering harmless ones that look harmful).
:func:`principle_sweep` scores RM-Bench and JudgeBench again with each alternative phrasing of
``sweep.phrasings`` used for every domain, beside the per-domain default.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from rlbff_lib.core.plots import bar_labels, plt
from rlbff_lib.core.paper import PAPER, rm_row
from rlbff_lib.evaluation import benchmarks as bm
from rlbff_lib.evaluation import rules as ev
from rlbff_lib.core.io import DataError, read_jsonl, stable_hash
from rlbff_lib.core.progress import log
from rlbff_lib.core.stats import paired_accuracy_difference, percent_interval
from rlbff_lib.reward_models.accuracy import item_accuracy, item_right, pair_accuracy

MODEL_KINDS = ("scalar", "bt", "genrm")
BENCHES = ("rmbench", "judgebench", "principlebench", "principlebench_pairs")
RMBENCH_DOMAINS = ev.RMBENCH_SCORE_DOMAINS  # chat, math, code, safety
JUDGEBENCH_GROUPS = bm.JUDGEBENCH_GROUPS  # knowledge, reasoning, math, code

RMBENCH_PRINCIPLES = {
    "chat": "is factually correct",
    "math": "is mathematically correct",
    "code": "is correct code that does what was asked",
    "safety": "is safe and refuses harmful requests appropriately",
}
JUDGEBENCH_PRINCIPLES = {
    "knowledge": "is factually correct",
    "reasoning": "is logically correct",
    "math": "is mathematically correct",
    "code": "is correct code that does what was asked",
}
SWEEP_PHRASINGS = ["correctness", "is accurate and free of errors", "is helpful", "is concise"]
DEFAULT_SWEEP_KEY = "default (per domain)"

ScorerFn = Callable[[list, list, list], Any]  # a Scorer, or any such callable (tests: fakes)


# ------------------------------------------------------------------ config


@dataclass
class LimitsConfig:
    """Seeded, nested subsample sizes per benchmark (null: everything).

    rmbench: prompts per scored RM-Bench domain (chat, math, code, safety; each prompt is 6
    responses). judgebench: pairs (2 responses each; 4 scorer inputs with ``rescore_swapped``).
    principlebench: PrincipleBench items. principlebench_pairs: PrincipleBench pairs (2 scorer
    inputs each). validation: validation items for a ``threshold: validation`` fit.
    """

    rmbench: int | None = 8
    judgebench: int | None = 60
    principlebench: int | None = None
    principlebench_pairs: int | None = None
    validation: int | None = 300

    def __post_init__(self):
        for name in ("rmbench", "judgebench", "principlebench", "principlebench_pairs", "validation"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: must be >= 1 or null (everything), got {value}")


@dataclass
class ModelEvalConfig:
    """One reward model to evaluate.

    kind: ``scalar`` (logit Yes − logit No), ``bt`` (Bradley–Terry, principle-blind) or ``genrm``.
    path: the trained model's folder (itself, or holding ``model/``, ``grpo/model/`` or ``sft/model/``).
    label: its row in the table. max_length: the model's window per input, as every scorer counts
    it (:mod:`rlbff_lib.reward_models.scorers`): the prompt plus the scalar RM's answer token / the
    GenRM's ``max_new_tokens`` of reasoning; longer conversations are cut from the left (counted as
    truncated); capped at the model's ``max_position_embeddings`` (the report shows the value used).
    batch_size: sequences per forward pass / generation batch. threshold: PrincipleBench decision
    threshold, ``zero`` (log-odds) or ``validation`` (fitted on validation items).
    max_new_tokens: GenRM generation budget (ignored by the others). device_map: ``null`` (one
    device) or e.g. ``auto`` to spread a model too large for one GPU. limits: sample sizes.
    generation_server (genrm only): null (HF ``generate`` of the model in memory) or ``{base_url, model,
    api_key_env}`` of an OpenAI-compatible server of this model (``vllm serve`` of ``path`` with
    ``--max-logprobs 20 --logprobs-mode raw_logprobs``; :mod:`rlbff_lib.models.generation`), checked in seconds.
    """

    kind: Literal["scalar", "bt", "genrm"] = "scalar"
    path: str = "models/reward_models/scalar"
    label: str = "Scalar principle RM (ours, smoke scale)"
    max_length: int = 1024
    batch_size: int = 8
    threshold: Literal["zero", "validation"] = "zero"
    max_new_tokens: int = 96
    device_map: str | None = None
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    generation_server: dict | None = None

    def __post_init__(self):
        if isinstance(self.limits, dict):
            self.limits = LimitsConfig(**self.limits)
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"kind: must be one of {list(MODEL_KINDS)}, got {self.kind!r}")
        if not self.path.strip():
            raise ValueError("path: must not be empty")
        if not self.label.strip():
            raise ValueError("label: must not be empty")
        if self.max_length < 16:
            raise ValueError(f"max_length: must be >= 16 tokens, got {self.max_length}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.threshold not in ("zero", "validation"):
            raise ValueError(f"threshold: must be 'zero' or 'validation', got {self.threshold!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: must be >= 1, got {self.max_new_tokens}")
        if self.generation_server is not None and self.kind != "genrm":
            raise ValueError(f"generation_server: only a genrm model generates; set it to null for kind {self.kind!r}")
        self.server("generation_server")  # a malformed mapping fails here

    def server(self, param: str):
        """The :class:`rlbff_lib.core.http.EndpointConfig` of ``generation_server`` (None: in-process);
        ``param``: its full parameter name, for messages."""
        from rlbff_lib.models.generation import server_endpoint

        return server_endpoint(self.generation_server, param, "GenRM generation server")


def _default_models() -> dict[str, ModelEvalConfig]:
    return {
        "scalar": ModelEvalConfig(),
        "bt": ModelEvalConfig(kind="bt", path="models/reward_models/bt", label="Bradley–Terry RM (ours, smoke scale)",
                              threshold="validation"),
        "genrm": ModelEvalConfig(kind="genrm", path="models/reward_models/genrm", label="GenRM (ours, smoke scale)",
                                 max_length=1120,  # 1024 prompt tokens (as in its GRPO) + 96 of reasoning
                                 limits=LimitsConfig(rmbench=4, judgebench=40, principlebench=60,
                                                     principlebench_pairs=30, validation=None)),
    }


@dataclass
class PrincipleChoiceConfig:
    """The principle used per benchmark domain: ``rmbench`` for chat / math / code / safety,
    ``judgebench`` for knowledge / reasoning / math / code (every domain needs one)."""

    rmbench: dict[str, str] = field(default_factory=lambda: dict(RMBENCH_PRINCIPLES))
    judgebench: dict[str, str] = field(default_factory=lambda: dict(JUDGEBENCH_PRINCIPLES))

    def __post_init__(self):
        for name, expected in (("rmbench", RMBENCH_DOMAINS), ("judgebench", JUDGEBENCH_GROUPS)):
            mapping = getattr(self, name)
            if set(mapping) != set(expected):
                raise ValueError(f"{name}: needs exactly the keys {list(expected)}, got {list(mapping)}")
            for key, text in mapping.items():
                if not isinstance(text, str) or not text.strip():
                    raise ValueError(f"{name}.{key}: must be a non-empty principle")


@dataclass
class SweepConfig:
    """Principle sweep: ``model`` (a key of ``models``, null: no sweep) scores RM-Bench and
    JudgeBench again once per phrasing, that phrasing used for every domain."""

    model: str | None = "scalar"
    phrasings: list[str] = field(default_factory=lambda: list(SWEEP_PHRASINGS))

    def __post_init__(self):
        if any(not p.strip() for p in self.phrasings):
            raise ValueError("phrasings: must be non-empty strings")
        if len(set(self.phrasings)) != len(self.phrasings):
            raise ValueError(f"phrasings: must be distinct, got {self.phrasings}")
        if DEFAULT_SWEEP_KEY in self.phrasings:
            raise ValueError(f"phrasings: {DEFAULT_SWEEP_KEY!r} is reserved for the per-domain default")


@dataclass
class RMEvalConfig:
    """Stage ``rm_eval`` (paper §5): reward models on RM-Bench, JudgeBench and PrincipleBench.

    benchmarks_dir: folder with ``rm-bench/`` and ``judgebench/`` (null: ``$RLBFF_BENCHMARKS_DIR``,
    then ``../shared/benchmarks``, then the hub). use_hub: load what is not local (RM-Bench math)
    from the Hugging Face hub. judgebench_split: ``gpt`` (the paper's, 350 pairs) or ``claude``.
    principles_dir: the ``principles`` stage's output (``principlebench.jsonl``, ``validation.jsonl``).
    seed: subsample seed. rescore_swapped: score JudgeBench's swapped game in a separate call.
    torch_threads: CPU threads for torch (null: torch's default); 1 in smoke, because on a shared,
    busy CPU spin-waiting OpenMP threads make the tiny models several times slower.
    principles: the principle per benchmark domain. sweep: alternative phrasings for one model.
    models: name -> :class:`ModelEvalConfig`, in table order.
    """

    benchmarks_dir: str | None = None
    use_hub: bool = False
    judgebench_split: Literal["gpt", "claude"] = "gpt"
    principles_dir: str = "data/principles"
    seed: int = 0
    rescore_swapped: bool = True
    torch_threads: int | None = 1
    principles: PrincipleChoiceConfig = field(default_factory=PrincipleChoiceConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    models: dict[str, ModelEvalConfig] = field(default_factory=_default_models)

    def __post_init__(self):
        if isinstance(self.principles, dict):
            self.principles = PrincipleChoiceConfig(**self.principles)
        if isinstance(self.sweep, dict):
            self.sweep = SweepConfig(**self.sweep)
        self.models = {k: ModelEvalConfig(**v) if isinstance(v, dict) else v for k, v in self.models.items()}
        for k, m in self.models.items():
            m.param = f"rm_eval.models.{k}"  # named in messages (not a field)
        if self.judgebench_split not in bm.JUDGEBENCH_SPLITS:
            raise ValueError(f"judgebench_split: must be one of {list(bm.JUDGEBENCH_SPLITS)}, got {self.judgebench_split!r}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"torch_threads: must be >= 1 or null (torch's default), got {self.torch_threads}")
        if not self.principles_dir.strip():
            raise ValueError("principles_dir: must not be empty")
        if not self.models:
            raise ValueError("models: name at least one model to evaluate")
        if self.sweep.model is not None and self.sweep.model not in self.models:
            raise ValueError(f"sweep: model {self.sweep.model!r} is not one of models ({', '.join(self.models)})")


# ------------------------------------------------------------------ data


@dataclass
class BenchData:
    """Everything the models are scored on (before per-model subsampling).

    rmbench: RM-Bench records (``domain`` is the file domain); rmbench_missing: scored domain ->
    why it is absent; judgebench: pairs (empty when unavailable, with judgebench_missing the
    reason); principlebench / validation: RM items of the ``principles`` stage;
    principlebench_pairs: its PrincipleBench pairs (``chosen`` = the Yes response).
    """

    rmbench: list[dict] = field(default_factory=list)
    rmbench_missing: dict[str, str] = field(default_factory=dict)
    rmbench_sources: dict[str, str] = field(default_factory=dict)
    judgebench: list[dict] = field(default_factory=list)
    judgebench_missing: str | None = None
    principlebench: list[dict] = field(default_factory=list)
    principlebench_pairs: list[dict] = field(default_factory=list)
    validation: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        per_domain = {d: sum(ev.rmbench_score_domain(r["domain"]) == d for r in self.rmbench) for d in RMBENCH_DOMAINS}
        return {
            "rmbench_prompts": {d: n for d, n in per_domain.items() if n},
            "rmbench_missing": self.rmbench_missing,
            "judgebench_pairs": len(self.judgebench),
            "judgebench_missing": self.judgebench_missing,
            "principlebench_items": len(self.principlebench),
            "principlebench_pairs": len(self.principlebench_pairs),
            "validation_items": len(self.validation),
        }


def validate_rm_item(rec: dict, line: int) -> None:
    """A PrincipleBench / validation item needs context (messages), response, principle, label Yes|No."""
    context = rec["context"]
    if not isinstance(context, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in context):
        raise ValueError("context: must be a list of chat messages")
    for name in ("response", "principle"):
        if not isinstance(rec[name], str):
            raise ValueError(f"{name}: must be a string")
    if not rec["principle"].strip():
        raise ValueError("principle: must be a non-empty string")
    if rec["label"] not in ("Yes", "No"):
        raise ValueError(f"label: must be 'Yes' or 'No', got {rec['label']!r}")


def principlebench_key(item: dict) -> str:
    """The key that pairs one item across models: its ``item_id``, else a hash of (context, response, principle)."""
    if item.get("item_id") is not None:
        return str(item["item_id"])
    return "h-" + stable_hash(item["context"], item["response"], item["principle"])[:16]


def unique_rm_items() -> Callable[[dict, int], None]:
    """A validator of RM items (:func:`validate_rm_item`) that also rejects a :func:`principlebench_key` an
    earlier line of the same file had (the paired comparison pairs items by it)."""
    seen: dict[str, int] = {}

    def check(rec: dict, line: int) -> None:
        validate_rm_item(rec, line)
        key = principlebench_key(rec)
        if key in seen:
            raise ValueError(f"item_id: {key!r} repeats line {seen[key]} (one item per id)")
        seen[key] = line

    return check


def validate_pb_pair(rec: dict, line: int) -> None:
    """A PrincipleBench pair needs pair_id, context (messages), principle, chosen and rejected (strings)."""
    context = rec["context"]
    if not isinstance(context, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in context):
        raise ValueError("context: must be a list of chat messages")
    for name in ("pair_id", "principle", "chosen", "rejected"):
        if not isinstance(rec[name], str):
            raise ValueError(f"{name}: must be a string")
    if not rec["principle"].strip():
        raise ValueError("principle: must be a non-empty string")


def load_benchmarks(cfg: RMEvalConfig) -> BenchData:
    """Load RM-Bench and JudgeBench (local folder, the hub when ``use_hub``) and the principle items.

    A benchmark part that cannot be had is recorded as missing with the reason, never silently
    dropped; the principle items must exist (the ``principles`` stage writes them).
    """
    data = BenchData()
    rm = bm.load_rmbench(cfg.benchmarks_dir, use_hub=cfg.use_hub)
    data.rmbench, data.rmbench_sources = rm.records, rm.sources
    loaded = {ev.rmbench_score_domain(d) for d in rm.sources}
    for file_domain, reason in rm.missing.items():
        scored = ev.rmbench_score_domain(file_domain)
        if scored not in loaded:
            data.rmbench_missing[scored] = reason
    root = bm.benchmarks_dir(cfg.benchmarks_dir)
    path = root / "judgebench" / bm.JUDGEBENCH_SPLITS[cfg.judgebench_split] if root is not None else None
    if (path is not None and path.exists()) or cfg.use_hub:
        try:
            data.judgebench = bm.load_judgebench(cfg.judgebench_split, cfg.benchmarks_dir, use_hub=cfg.use_hub)
        except bm.HubUnavailable as e:
            data.judgebench_missing = str(e)
    else:
        data.judgebench_missing = f"no local JudgeBench file ({path or 'no benchmarks folder'}) and use_hub is false"
    folder = Path(cfg.principles_dir)
    for name, attr, check in (("principlebench.jsonl", "principlebench", unique_rm_items()),
                               ("principlebench_pairs.jsonl", "principlebench_pairs", validate_pb_pair),
                               ("validation.jsonl", "validation", validate_rm_item)):
        if not (folder / name).exists():
            raise DataError(folder / name, "not found: run the `principles` stage first")
        setattr(data, attr, read_jsonl(folder / name, check))
    return data


def nested_sample(rows: Sequence[dict], limit: int | None, seed: int, key: Callable[[dict], Any]) -> list[dict]:
    """``limit`` rows, the first in a seeded hash order of ``key(row)``, returned in input order.

    Nested: for one seed, a smaller limit keeps a subset of a larger limit's rows; and a row's
    place in the order does not depend on the other rows. ``None`` keeps everything.
    """
    if limit is None or limit >= len(rows):
        return list(rows)
    ranked = sorted(range(len(rows)), key=lambda i: stable_hash(seed, key(rows[i])))
    keep = sorted(ranked[:limit])
    return [rows[i] for i in keep]


def stratified_sample(rows: Sequence[dict], limit: int | None, seed: int, group: Callable[[dict], Any],
                      key: Callable[[dict], Any]) -> list[dict]:
    """``limit`` rows spread over the groups in proportion to their sizes (largest remainder, and at
    least one per group while ``limit`` allows), each group's share a :func:`nested_sample`.

    Keeps every group present in small samples (an unlucky 60 of JudgeBench's 350 pairs can
    miss its 42 code pairs); returned in input order.
    """
    if limit is None or limit >= len(rows):
        return list(rows)
    by_group: dict[Any, list[int]] = {}
    for i, row in enumerate(rows):
        by_group.setdefault(group(row), []).append(i)
    sizes = {g: len(idx) for g, idx in by_group.items()}
    exact = {g: limit * n / len(rows) for g, n in sizes.items()}
    quota = {g: int(v) for g, v in exact.items()}
    if limit >= len(sizes):
        quota = {g: max(1, q) for g, q in quota.items()}
    order = sorted(sizes, key=lambda g: (-(exact[g] - int(exact[g])), -sizes[g], str(g)))
    k = 0
    while sum(quota.values()) < limit:  # hand out what is left by largest remainder
        g = order[k % len(order)]
        if quota[g] < sizes[g]:
            quota[g] += 1
        k += 1
    while sum(quota.values()) > limit:  # the minimum of one per group overshot: trim the largest
        g = max(quota, key=lambda g: (quota[g], str(g)))
        quota[g] -= 1
    keep: list[int] = []
    for g, idx in by_group.items():
        chosen = nested_sample([rows[i] for i in idx], quota[g], seed, key)
        ids = {id(r) for r in chosen}
        keep.extend(i for i in idx if id(rows[i]) in ids)
    return [rows[i] for i in sorted(keep)]


def sample_rmbench(records: Sequence[dict], limit: int | None, seed: int) -> list[dict]:
    """At most ``limit`` prompts per scored domain (the safety files pooled), nested."""
    out = []
    for domain in RMBENCH_DOMAINS:
        rows = [r for r in records if ev.rmbench_score_domain(r["domain"]) == domain]
        out.extend(nested_sample(rows, limit, seed, lambda r: ["rmbench", r["domain"], r["id"]]))
    return out


def sample_judgebench(pairs: Sequence[dict], limit: int | None, seed: int) -> list[dict]:
    """At most ``limit`` pairs, stratified by source group (knowledge, reasoning, math, code)."""
    return stratified_sample(pairs, limit, seed, lambda p: bm.judgebench_group(p["source"]),
                             lambda p: ["judgebench", p["pair_id"]])


def sample_items(items: Sequence[dict], limit: int | None, seed: int, name: str) -> list[dict]:
    """At most ``limit`` RM items, stratified by domain."""
    return stratified_sample(items, limit, seed, lambda it: str(it.get("domain")),
                             lambda it: [name, it.get("item_id"), it["principle"], it["response"]])


def sample_pb_pairs(pairs: Sequence[dict], limit: int | None, seed: int) -> list[dict]:
    """At most ``limit`` PrincipleBench pairs, stratified by domain."""
    return stratified_sample(pairs, limit, seed, lambda p: str(p.get("domain")),
                             lambda p: ["principlebench_pairs", p["pair_id"]])


# ------------------------------------------------------------------ scorers


@dataclass
class Scored:
    """A scorer's output, normalised: N scores, inputs cut to fit, missing judgements, seconds."""

    scores: list[float]
    truncated: int = 0
    missing: int = 0
    seconds: float = 0.0
    texts: list[str] | None = None


def run_scorer(scorer: ScorerFn, conversations: Sequence, responses: Sequence[str], principles: Sequence[str]) -> Scored:
    """Call ``scorer`` once on N inputs; checks it returns N finite scores."""
    n = len(responses)
    if not n:
        return Scored(scores=[])
    start = time.time()
    out = scorer(list(conversations), list(responses), list(principles))
    scores = [float(s) for s in (out.scores if hasattr(out, "scores") else out)]
    if len(scores) != n:
        raise ValueError(f"scorer: returned {len(scores)} scores for {n} inputs")
    bad = [i for i, s in enumerate(scores) if not math.isfinite(s)]
    if bad:
        raise ValueError(f"scorer: non-finite score at input {bad[0]} ({scores[bad[0]]})")
    truncated = sum(bool(t) for t in (getattr(out, "truncated", None) or []))
    judged = getattr(out, "judged", None)
    missing = sum(not j for j in judged) if judged is not None else 0
    texts = getattr(out, "texts", None)
    return Scored(scores, truncated, missing, time.time() - start, list(texts) if texts is not None else None)


def resolve_model_dir(path: str | Path) -> Path:
    """The folder holding the model's ``config.json``: ``path`` or its ``model``, ``grpo/model``,
    ``sft/model`` subfolder (the trainers' layouts)."""
    path = Path(path)
    for cand in (path, path / "model", path / "grpo" / "model", path / "sft" / "model"):
        if (cand / "config.json").exists():
            return cand
    raise FileNotFoundError(f"{path}: no model (config.json) there or in model/, grpo/model/, sft/model/; "
                            "run the `reward_models` stage first")


def load_model(mcfg: ModelEvalConfig):
    """The :class:`~rlbff_lib.reward_models.scorers.Scorer` of ``mcfg`` (its ``info()`` and
    ``release()`` serve the report and the next model)."""
    from rlbff_lib.reward_models.scorers import load_scorer

    return load_scorer(mcfg.kind, resolve_model_dir(mcfg.path), mcfg.max_length, mcfg.batch_size,
                       mcfg.max_new_tokens, mcfg.device_map,
                       server=mcfg.server(f"{getattr(mcfg, 'param', 'rm_eval.models.<name>')}.generation_server"))


# ------------------------------------------------------------------ benchmarks


def evaluate_rmbench(scorer: ScorerFn, records: Sequence[dict], principles: Mapping[str, str]) -> dict | None:
    """RM-Bench of ``records`` (each prompt's 6 responses scored alone with its domain's principle).

    Returns :func:`rlbff_lib.evaluation.rules.score_rmbench`'s result plus intervals
    (:func:`rmbench_intervals`), ``inputs``, ``truncated``, ``missing_judgements``, ``seconds`` and
    the ``principles`` used; ``None`` without records.
    """
    if not records:
        return None
    conv, resp, princ = [], [], []
    for rec in records:
        p = principles[ev.rmbench_score_domain(rec["domain"])]
        for text in (*rec["chosen"], *rec["rejected"]):
            conv.append(rec["prompt"])
            resp.append(text)
            princ.append(p)
    out = run_scorer(scorer, conv, resp, princ)
    k = ev.N_STYLES
    per_prompt = [{"domain": rec["domain"], "id": rec["id"],
                   "chosen": out.scores[2 * k * i: 2 * k * i + k], "rejected": out.scores[2 * k * i + k: 2 * k * (i + 1)]}
                  for i, rec in enumerate(records)]
    result = rmbench_intervals(ev.score_rmbench(per_prompt))
    result.update(inputs=len(resp), truncated=out.truncated, missing_judgements=out.missing, seconds=out.seconds,
                  principles={d: principles[d] for d in result["groups_present"]})
    return result


def rmbench_intervals(result: dict) -> dict:
    """RM-Bench's result with Wilson intervals: ``groups[d]["ci"][k]`` for k in score / easy / normal /
    hard (n = the domain's prompts) and ``ci[k]`` for overall / easy / normal / hard (n = all prompts)."""
    for g in result["groups"].values():
        g["ci"] = {k: percent_interval(g[k], g["n"]) for k in ("score", "easy", "normal", "hard")}
    total = sum(g["n"] for g in result["groups"].values())
    result["ci"] = {k: percent_interval(result[k], total) for k in ("overall", "easy", "normal", "hard")}
    return result


def judgebench_intervals(result: dict) -> dict:
    """JudgeBench's result with Wilson intervals: ``ci`` (overall), ``groups[g]["ci"]`` and
    ``position["ci"][k]`` for consistent / chosen_first / rejected_first / both_orders."""
    for g in result["groups"].values():
        g["ci"] = percent_interval(g["accuracy"], g["n"])
    result["ci"] = percent_interval(result["overall"], result["n"])
    pos = result.get("position")
    if pos:
        pos["ci"] = {k: percent_interval(pos[k], pos["n"]) for k in ("consistent", "chosen_first", "rejected_first",
                                                                     "both_orders")}
    return result


def evaluate_judgebench(scorer: ScorerFn, pairs: Sequence[dict], principles: Mapping[str, str],
                        rescore_swapped: bool = True) -> dict | None:
    """JudgeBench of ``pairs``: A and B scored alone with the pair's group principle, two games.

    Returns :func:`rlbff_lib.evaluation.rules.score_judgebench_decisions`'s result plus ``position``
    (consistency and accuracy by where the chosen response sits), intervals
    (:func:`judgebench_intervals`), ``inputs`` (2 per pair),
    ``truncated`` and ``missing_judgements`` (of the first pass), ``seconds``, ``principles``;
    ``None`` without pairs.
    """
    if not pairs:
        return None
    conv = [p["question"] for p in pairs for _ in range(2)]
    princ = [principles[bm.judgebench_group(p["source"])] for p in pairs for _ in range(2)]
    first = run_scorer(scorer, conv, [r for p in pairs for r in (p["response_A"], p["response_B"])], princ)
    seconds = first.seconds
    if rescore_swapped:
        second = run_scorer(scorer, conv, [r for p in pairs for r in (p["response_B"], p["response_A"])], princ)
        seconds += second.seconds
        game2 = [(second.scores[2 * i], second.scores[2 * i + 1]) for i in range(len(pairs))]
    else:
        game2 = [(first.scores[2 * i + 1], first.scores[2 * i]) for i in range(len(pairs))]
    decisions = {p["pair_id"]: (ev.decision_from_scores(first.scores[2 * i], first.scores[2 * i + 1]),
                                ev.decision_from_scores(*game2[i])) for i, p in enumerate(pairs)}
    result = ev.score_judgebench_decisions(pairs, decisions)
    result["position"] = {**ev.position_consistency(decisions), **ev.position_bias_accuracy(pairs, decisions),
                          "rescored_swapped": rescore_swapped}
    judgebench_intervals(result)
    groups = result["groups_present"]
    result.update(inputs=len(conv), truncated=first.truncated, missing_judgements=first.missing, seconds=seconds,
                  principles={g: principles[g] for g in groups})
    return result


def fit_validation_threshold(scorer: ScorerFn, items: Sequence[dict]) -> dict:
    """Threshold maximising validation accuracy of ``score > t`` (:func:`rlbff_lib.reward_models.bradley_terry.fit_threshold`)."""
    from rlbff_lib.reward_models.bradley_terry import fit_threshold

    if not items:
        raise ValueError("threshold: 'validation' needs validation items, none given")
    out = run_scorer(scorer, [it["context"] for it in items], [it["response"] for it in items],
                     [it["principle"] for it in items])
    t, acc = fit_threshold(out.scores, [it["label"] for it in items])
    return {"threshold": t, "validation_accuracy": 100 * acc,
            "validation_ci": percent_interval(100 * acc, len(items)), "validation_items": len(items),
            "validation_truncated": out.truncated, "seconds": out.seconds}


def evaluate_principlebench(scorer: ScorerFn, items: Sequence[dict], threshold: float = 0.0,
                            n_examples: int = 3) -> dict | None:
    """PrincipleBench items (percent): ``score > threshold`` agrees with the label (Yes).

    Returns :func:`rlbff_lib.reward_models.accuracy.item_accuracy` (``accuracy``, ``ci``, ``n``,
    ``majority``, ``yes_share``, ``groups[domain]``, ``threshold``) plus ``inputs``, ``truncated``,
    ``missing_judgements``, ``seconds``, ``item_right`` ({:func:`principlebench_key`: right?} in item
    order, for :func:`principlebench_paired`; :func:`evaluate_all` takes it out of the metrics), and for a
    scorer that returns texts (the GenRM)
    ``examples``: the first ``n_examples`` judgements (principle, label, score, text); ``None``
    without items.
    """
    if not items:
        return None
    out = run_scorer(scorer, [it["context"] for it in items], [it["response"] for it in items],
                     [it["principle"] for it in items])
    result = item_accuracy(out.scores, items, threshold)
    result.update(inputs=len(items), truncated=out.truncated, missing_judgements=out.missing, seconds=out.seconds,
                  item_right=dict(zip(map(principlebench_key, items),
                                      item_right(out.scores, [it["label"] for it in items], threshold))))
    if out.texts is not None:  # a generative judge: keep a few of its judgements to read
        result["examples"] = [{"principle": it["principle"], "label": it["label"], "score": s, "text": t[:600]}
                              for it, s, t in list(zip(items, out.scores, out.texts))[:n_examples]]
    return result


def evaluate_principlebench_pairs(scorer: ScorerFn, pairs: Sequence[dict]) -> dict | None:
    """PrincipleBench pairs (percent): the Yes response (``chosen``) scores strictly above the No one.

    Both responses are scored alone, in one scorer call. Returns
    :func:`rlbff_lib.reward_models.accuracy.pair_accuracy` (``accuracy``, ``ci``, ``n``, ``ties``,
    ``groups[domain]``) plus ``inputs`` (2 per pair), ``truncated``, ``missing_judgements``,
    ``seconds``; ``None`` without pairs.
    """
    if not pairs:
        return None
    conv = [p["context"] for p in pairs for _ in range(2)]
    out = run_scorer(scorer, conv, [r for p in pairs for r in (p["chosen"], p["rejected"])],
                     [p["principle"] for p in pairs for _ in range(2)])
    result = pair_accuracy(out.scores[0::2], out.scores[1::2], pairs)
    result.update(inputs=len(conv), truncated=out.truncated, missing_judgements=out.missing, seconds=out.seconds)
    return result


def evaluate_model(scorer: ScorerFn, data: BenchData, mcfg: ModelEvalConfig, principles: PrincipleChoiceConfig,
                   seed: int = 0, rescore_swapped: bool = True) -> dict:
    """One model on the three benchmarks, with its own sample sizes and threshold rule.

    Returns ``{"rmbench", "judgebench", "principlebench", "principlebench_pairs"}`` (each a result
    or ``None``), ``samples`` (RM-Bench prompts per domain, JudgeBench pairs, PrincipleBench items
    and pairs), ``inputs`` / ``truncated`` / ``missing_judgements`` totals and ``seconds``.
    """
    limits = mcfg.limits
    result: dict[str, Any] = {}
    rm_records = sample_rmbench(data.rmbench, limits.rmbench, seed)
    result["rmbench"] = evaluate_rmbench(scorer, rm_records, principles.rmbench)
    log(f"  RM-Bench: {_headline(result['rmbench'], 'overall')}")
    jb_pairs = sample_judgebench(data.judgebench, limits.judgebench, seed)
    result["judgebench"] = evaluate_judgebench(scorer, jb_pairs, principles.judgebench, rescore_swapped)
    log(f"  JudgeBench: {_headline(result['judgebench'], 'overall')}")
    threshold, fit = 0.0, None
    if mcfg.threshold == "validation":
        fit = fit_validation_threshold(scorer, sample_items(data.validation, limits.validation, seed, "validation"))
        threshold = fit["threshold"]
    pb = evaluate_principlebench(scorer, sample_items(data.principlebench, limits.principlebench, seed,
                                                      "principlebench"), threshold)
    if pb is not None:
        pb["threshold_rule"] = mcfg.threshold
        if fit:
            pb["threshold_fit"] = fit
    result["principlebench"] = pb
    log(f"  PrincipleBench items: {_headline(pb, 'accuracy')}")
    pairs = evaluate_principlebench_pairs(scorer, sample_pb_pairs(data.principlebench_pairs,
                                                                  limits.principlebench_pairs, seed))
    result["principlebench_pairs"] = pairs
    log(f"  PrincipleBench pairs: {_headline(pairs, 'accuracy')}")
    parts = [result[k] for k in BENCHES if result[k]]
    result["samples"] = {
        "rmbench_prompts": {d: g["n"] for d, g in result["rmbench"]["groups"].items()} if result["rmbench"] else {},
        "judgebench_pairs": result["judgebench"]["n"] if result["judgebench"] else 0,
        "principlebench_items": pb["n"] if pb else 0,
        "principlebench_pairs": pairs["n"] if pairs else 0,
    }
    result["inputs"] = sum(p["inputs"] for p in parts)
    result["truncated"] = sum(p["truncated"] for p in parts)
    result["missing_judgements"] = sum(p["missing_judgements"] for p in parts)
    result["seconds"] = sum(p["seconds"] for p in parts) + (fit["seconds"] if fit else 0.0)
    return result


def _headline(res: dict | None, key: str) -> str:
    if res is None:
        return "not available"
    n = res.get("n", sum(g.get("n", 0) for g in res.get("groups", {}).values()))
    ci = res.get("ci")
    ci = ci.get(key) if isinstance(ci, dict) else ci
    return (f"{with_ci(res[key], ci)} (n={n}, truncated {res['truncated']}/{res['inputs']} inputs, "
            f"{res['seconds']:.0f}s)")


# ------------------------------------------------------------------ paired comparison


def principlebench_paired(rights: Mapping[str, Mapping[str, bool]], order: Sequence[str], seed: int = 0,
                          n_bootstrap: int = 2000) -> dict[str, dict]:
    """Every pair of models (``a`` before ``b`` in ``order``) on the PrincipleBench items both scored.

    rights: model -> {:func:`principlebench_key`: right?} in item order. Returns ``{"<a>_vs_<b>": {"a", "b",
    **paired_accuracy_difference}}`` on the common items (in a's order), accuracies, ``difference`` and ``ci``
    in percent (points), counts as counts; a pair without common items is left out.
    """
    out: dict[str, dict] = {}
    names = [m for m in order if m in rights]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = [k for k in rights[a] if k in rights[b]]
            if not common:
                log(f"PrincipleBench paired: {a} and {b} share no items, not compared")
                continue
            r = paired_accuracy_difference([rights[a][k] for k in common], [rights[b][k] for k in common],
                                           n_bootstrap=n_bootstrap, seed=seed)
            r.update({k: 100 * r[k] for k in ("accuracy_a", "accuracy_b", "difference")}, ci=[100 * x for x in r["ci"]])
            out[f"{a}_vs_{b}"] = {"a": a, "b": b, **r}
    return out


def paired_text(r: Mapping, labels: Mapping[str, str] | None = None) -> str:
    """One line of a :func:`principlebench_paired` result: the difference with its interval, the McNemar p, the
    discordant counts, and whether the interval orders the two."""
    labels = labels or {}
    a, b = labels.get(r["a"], r["a"]), labels.get(r["b"], r["b"])
    return (f"{a} − {b}: {r['difference']:+.1f} points, 95% interval [{r['ci'][0]:+.1f}, {r['ci'][1]:+.1f}], "
            f"on {r['n']} common items ({r['accuracy_a']:.1f} vs {r['accuracy_b']:.1f}; right only by the first "
            f"{r['only_a']}, only by the second {r['only_b']}), McNemar exact p = {r['p_value']:.3g}; "
            f"{paired_order(r, a, b)}")


def paired_order(r: Mapping, a: str, b: str) -> str:
    """What a paired result says about the order of ``a`` and ``b``: who is ahead when its interval excludes 0."""
    if not r["excludes_zero"]:
        return "no order (the interval includes 0)"
    return f"{a if r['difference'] > 0 else b} ahead"


# ------------------------------------------------------------------ principle sweep


def sweep_summary(rmbench: dict | None, judgebench: dict | None) -> dict:
    """The numbers a sweep compares: RM-Bench domain scores + overall, JudgeBench groups + overall."""
    out: dict[str, Any] = {"rmbench": None, "judgebench": None}
    if rmbench:
        groups = rmbench["groups_present"]
        out["rmbench"] = {**{d: rmbench["groups"][d]["score"] for d in groups},
                          "overall": rmbench["overall"], "missing": rmbench["missing"],
                          "ci": {**{d: rmbench["groups"][d]["ci"]["score"] for d in groups},
                                 "overall": rmbench["ci"]["overall"]}}
    if judgebench:
        groups = judgebench["groups_present"]
        out["judgebench"] = {**{g: judgebench["groups"][g]["accuracy"] for g in groups},
                             "overall": judgebench["overall"], "missing": judgebench["missing"],
                             "ci": {**{g: judgebench["groups"][g]["ci"] for g in groups},
                                    "overall": judgebench["ci"]}}
    out["truncated"] = sum(r["truncated"] for r in (rmbench, judgebench) if r)
    out["inputs"] = sum(r["inputs"] for r in (rmbench, judgebench) if r)
    return out


def principle_sweep(scorer: ScorerFn, data: BenchData, mcfg: ModelEvalConfig, phrasings: Sequence[str],
                    seed: int = 0, default: dict | None = None, default_principles: PrincipleChoiceConfig | None = None
                    ) -> dict:
    """RM-Bench and JudgeBench with each phrasing used for every domain, on the model's samples.

    ``default``: the model's main result (from :func:`evaluate_model`), reported first as
    ``"default (per domain)"`` without scoring again. JudgeBench is scored without the swapped
    rescoring here (the verdicts of a single-response scorer do not depend on it).
    Returns ``{"phrasings": {name: sweep_summary + principles}, "order": [...]}``.
    """
    rm_records = sample_rmbench(data.rmbench, mcfg.limits.rmbench, seed)
    jb_pairs = sample_judgebench(data.judgebench, mcfg.limits.judgebench, seed)
    out: dict[str, dict] = {}
    if default is not None:
        out[DEFAULT_SWEEP_KEY] = sweep_summary(default.get("rmbench"), default.get("judgebench"))
        if default_principles is not None:
            out[DEFAULT_SWEEP_KEY]["principles"] = {"rmbench": dict(default_principles.rmbench),
                                                    "judgebench": dict(default_principles.judgebench)}
    for phrase in phrasings:
        rm = evaluate_rmbench(scorer, rm_records, {d: phrase for d in RMBENCH_DOMAINS})
        jb = evaluate_judgebench(scorer, jb_pairs, {g: phrase for g in JUDGEBENCH_GROUPS}, rescore_swapped=False)
        out[phrase] = sweep_summary(rm, jb)
        out[phrase]["principles"] = phrase
        log(f"  sweep {phrase!r}: RM-Bench {_fmt(out[phrase]['rmbench'])}, JudgeBench {_fmt(out[phrase]['judgebench'])}")
    return {"phrasings": out, "order": list(out)}


def _fmt(part: dict | None) -> str:
    return "—" if not part else f"{part['overall']:.1f}"


# ------------------------------------------------------------------ paper numbers and the table

# The paper's §5 rows (from rlbff_lib.core.paper), labelled as the paper's.
PAPER_ROWS: dict[str, dict] = {kind: rm_row(kind) for kind in PAPER["reward_models"]}
PAPER_SAMPLES = "full: RM-Bench 1,327 prompts; JudgeBench 350 pairs (GPT-4o split); PrincipleBench: size not given"

RMBENCH_COLUMNS = (*RMBENCH_DOMAINS, "easy", "normal", "hard", "overall")
JUDGEBENCH_COLUMNS = (*JUDGEBENCH_GROUPS, "overall")
COLUMNS = ([("rmbench", c) for c in RMBENCH_COLUMNS] + [("judgebench", c) for c in JUDGEBENCH_COLUMNS]
           + [("principlebench", "items"), ("principlebench", "pairs")])
BENCH_TITLES = {"rmbench": "RM-Bench", "judgebench": "JudgeBench", "principlebench": "PrincipleBench",
                "principlebench_pairs": "PrincipleBench pairs"}
MISSING = "—"


def our_cells(result: dict) -> dict[tuple[str, str], float | None]:
    """The table's numbers of one evaluated model (``None`` where missing)."""
    return {col: v for col, (v, _) in our_cells_with_ci(result).items()}


def our_cells_with_ci(result: dict) -> dict[tuple[str, str], tuple[float | None, list[float] | None]]:
    """The table's numbers of one evaluated model with their 95% Wilson intervals (``None`` where missing)."""
    cells: dict[tuple[str, str], tuple[float | None, list[float] | None]] = {col: (None, None) for col in COLUMNS}
    rm, jb = result.get("rmbench"), result.get("judgebench")
    pb, pairs = result.get("principlebench"), result.get("principlebench_pairs")
    if rm:
        for d, g in rm["groups"].items():
            cells[("rmbench", d)] = (g["score"], (g.get("ci") or {}).get("score"))
        for k in ("easy", "normal", "hard", "overall"):
            cells[("rmbench", k)] = (rm[k], (rm.get("ci") or {}).get(k))
    if jb:
        for g, v in jb["groups"].items():
            cells[("judgebench", g)] = (v["accuracy"], v.get("ci"))
        cells[("judgebench", "overall")] = (jb["overall"], jb.get("ci"))
    if pb:
        cells[("principlebench", "items")] = (pb["accuracy"], pb.get("ci"))
    if pairs:
        cells[("principlebench", "pairs")] = (pairs["accuracy"], pairs.get("ci"))
    return cells


def paper_cells(row: dict) -> dict[tuple[str, str], float | None]:
    """The paper's numbers; its PrincipleBench number (scoring not published) goes in the items column."""
    cells: dict[tuple[str, str], float | None] = {col: None for col in COLUMNS}
    for bench in ("rmbench", "judgebench"):
        for k, v in row.get(bench, {}).items():
            cells[(bench, k)] = v
    cells[("principlebench", "items")] = row.get("principlebench")
    return cells


def with_ci(v: float | None, ci: Sequence[float] | None) -> str:
    """``"68.2 [65.2, 71.0]"`` (percent, 95% Wilson interval), or the number alone, or ``—``."""
    text = _num(v)
    if text != MISSING and ci:
        text += f" [{ci[0]:.1f}, {ci[1]:.1f}]"
    return text


def overall_note(missing: Sequence[str], total: int, what: str) -> str:
    """``"(3 of 4 domains: no math)"`` for an overall over fewer parts, else ``""``."""
    if not missing:
        return ""
    return f" ({total - len(missing)} of {total} {what}: no {', '.join(missing)})"


def _num(v: float | None) -> str:
    return MISSING if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def samples_text(result: dict) -> str:
    s = result["samples"]
    rm = "/".join(str(s["rmbench_prompts"].get(d, MISSING)) for d in RMBENCH_DOMAINS)
    return (f"RM-Bench {rm} prompts (chat/math/code/safety); JudgeBench {s['judgebench_pairs']} pairs; "
            f"PrincipleBench {s['principlebench_items']} items, {s.get('principlebench_pairs', 0)} pairs")


def truncated_text(result: dict) -> str:
    parts = []
    for bench in BENCHES:
        r = result.get(bench)
        if r:
            parts.append(f"{BENCH_TITLES[bench]} {r['truncated']}/{r['inputs']}")
    return "; ".join(parts) or MISSING


def model_label(name: str, result: dict) -> str:
    label = result.get("label", name)
    params = (result.get("model") or {}).get("parameters")
    return f"{label} [{params / 1e6:.1f}M params]" if params else label


def ordered_models(metrics: dict) -> list[tuple[str, dict]]:
    """(name, result) of the evaluated models in config order (``metrics["order"]``; the JSON
    file's keys are sorted)."""
    models = metrics.get("models", {})
    order = [n for n in metrics.get("order", []) if n in models]
    return [(n, models[n]) for n in order + [n for n in models if n not in order]]


def headline_metrics(metrics: dict) -> dict:
    """``metrics/rm_eval.json`` from :func:`evaluate_all`'s metrics (all of them in ``outputs/details/rm_eval.json``),
    per model, percent: PrincipleBench, the items' accuracy (the report's column) with its 95% Wilson interval
    and item count; RM-Bench overall; JudgeBench overall; per pair of models the paired PrincipleBench
    difference (points) with its 95% bootstrap interval, McNemar p and common items."""
    from rlbff_lib.core.stage import with_ci

    models = ordered_models(metrics)
    pb = {name: r.get("principlebench") or {} for name, r in models}
    return {"principlebench": {name: with_ci(p.get("accuracy"), p.get("ci"), "accuracy") | {"n": p.get("n")}
                               for name, p in pb.items()},
            "rmbench": {name: (r.get("rmbench") or {}).get("overall") for name, r in models},
            "judgebench": {name: (r.get("judgebench") or {}).get("overall") for name, r in models},
            "principlebench_paired": {key: with_ci(r["difference"], r["ci"], "difference")
                                      | {"p_value": r["p_value"], "n": r["n"]}
                                      for key, r in (metrics.get("principlebench_paired") or {}).items()}}


def markdown_table(metrics: dict, paper: Mapping[str, dict] = PAPER_ROWS) -> str:
    """The paper's table: our models' rows (with sample sizes and truncation) beside the paper's.

    Our numbers carry their 95% Wilson interval, ``68.2 [65.2, 71.0]``; missing numbers are ``—``;
    an overall over fewer domains / groups than the benchmark has says so in its cell. The
    PrincipleBench items cell of our rows gives the majority baseline beside.
    """
    header = ["model"] + [f"{BENCH_TITLES[b]} {c}" for b, c in COLUMNS] + ["samples", "truncated inputs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(COLUMNS) + ["---", "---"]) + "|"]
    for name, result in ordered_models(metrics):
        cells = {col: with_ci(v, ci) for col, (v, ci) in our_cells_with_ci(result).items()}
        rm, jb, pb = result.get("rmbench"), result.get("judgebench"), result.get("principlebench")
        if rm:
            cells[("rmbench", "overall")] += overall_note(rm["missing"], len(RMBENCH_DOMAINS), "domains")
        if jb:
            cells[("judgebench", "overall")] += overall_note(jb["missing"], len(JUDGEBENCH_GROUPS), "groups")
        if pb:
            cells[("principlebench", "items")] += f" (majority {pb['majority']:.1f})"
        lines.append("| " + " | ".join([model_label(name, result)] + [cells[c] for c in COLUMNS]
                                      + [samples_text(result), truncated_text(result)]) + " |")
    for row in paper.values():
        cells = {col: _num(v) for col, v in paper_cells(row).items()}
        lines.append("| " + " | ".join([row["label"]] + [cells[c] for c in COLUMNS] + [PAPER_SAMPLES, MISSING]) + " |")
    return "\n".join(lines)


def position_table(metrics: dict) -> str:
    """JudgeBench position check per model: consistency and accuracy by the chosen response's place."""
    lines = ["| model | pairs | same verdict in both orders | chosen shown first | rejected shown first | "
             "both orders right | swapped game scored separately |", "|---|---:|---:|---:|---:|---:|---|"]
    for name, result in ordered_models(metrics):
        jb = result.get("judgebench")
        if not jb:
            continue
        p = jb["position"]
        ci = p.get("ci") or {}
        nums = [with_ci(p[k], ci.get(k)) for k in ("consistent", "chosen_first", "rejected_first", "both_orders")]
        lines.append(f"| {result.get('label', name)} | {p['n']} | " + " | ".join(nums)
                     + f" | {'yes' if p['rescored_swapped'] else 'no'} |")
    return "\n".join(lines)


def sweep_table(sweep: dict) -> str:
    """Principle sweep side by side: one row per phrasing, RM-Bench and JudgeBench columns."""
    cols = [("rmbench", c) for c in (*RMBENCH_DOMAINS, "overall")] + [("judgebench", c) for c in JUDGEBENCH_COLUMNS]
    header = ["principle"] + [f"{BENCH_TITLES[b]} {c}" for b, c in cols] + ["truncated inputs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(cols) + ["---:"]) + "|"]
    for name in sweep.get("order", []):
        row = sweep["phrasings"][name]
        cells = []
        for bench, c in cols:
            part = row.get(bench)
            text = with_ci(part.get(c), (part.get("ci") or {}).get(c)) if part else MISSING
            if part and c == "overall":
                total = len(RMBENCH_DOMAINS) if bench == "rmbench" else len(JUDGEBENCH_GROUPS)
                text += overall_note(part["missing"], total, "domains" if bench == "rmbench" else "groups")
            cells.append(text)
        label = f"{name}" if name == DEFAULT_SWEEP_KEY else f'"{name}"'
        lines.append("| " + " | ".join([label] + cells + [f"{row['truncated']}/{row['inputs']}"]) + " |")
    return "\n".join(lines)


def paired_table(metrics: dict) -> str:
    """PrincipleBench items, model against model on the items both scored (:func:`principlebench_paired`)."""
    labels = {name: r.get("label", name) for name, r in ordered_models(metrics)}
    lines = ["| A | B | common items | only A right | only B right | A − B (points) [95% bootstrap] | "
             "McNemar exact p | order |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in (metrics.get("principlebench_paired") or {}).values():
        a, b = labels.get(r["a"], r["a"]), labels.get(r["b"], r["b"])
        lines.append(f"| {a} | {b} | {r['n']} | {r['only_a']} | {r['only_b']} | {r['difference']:+.1f} "
                     f"[{r['ci'][0]:+.1f}, {r['ci'][1]:+.1f}] | {r['p_value']:.3g} | {paired_order(r, a, b)} |")
    return "\n".join(lines)


def markdown_report(metrics: dict) -> str:
    """``metrics/rm_eval.md``: the main table, notes, the paired PrincipleBench comparison, the position check and
    the principle sweep."""
    data = metrics.get("data", {})
    out = ["# Reward-model evaluation (paper §5)", "",
           "Each response is scored alone with (prompt, response, principle); pairwise benchmarks count a pair "
           "right when the chosen response scores higher. Numbers in percent, ours with their 95% Wilson "
           "interval in brackets (RM-Bench's with the prompts as the sample size); overlapping intervals alone do "
           "not order two models (PrincipleBench's items are also compared paired, below). Our rows were measured "
           "by the `rm_eval` stage on seeded subsamples (sizes in the `samples` column; nested: a smaller sample lies "
           "inside a larger one); the paper's rows are copied from the paper (reference §5). "
           f"`{MISSING}`: not measured / not given.", "", markdown_table(metrics), "", "Notes:", "",
           "- PrincipleBench, scored two ways (ours; the paper does not publish its rule): **items**, right when "
           "the score's side of the threshold agrees with the item's Yes/No label; **pairs** (one prompt and "
           "principle, one response labelled Yes and one No), right when the Yes response scores strictly higher "
           "(ties wrong, no threshold). The paper's PrincipleBench number stands in the items column."]
    missing = data.get("rmbench_missing") or {}
    for d, reason in missing.items():
        out.append(f"- RM-Bench {d}: not available here ({reason.splitlines()[0][:200]}); our RM-Bench overall, easy, "
                   "normal and hard are means over the domains present.")
    if data.get("judgebench_missing"):
        out.append(f"- JudgeBench: not available here ({data['judgebench_missing']}).")
    principles = metrics.get("principles", {})
    if principles:
        out.append("- Principles used (the paper's choice is not known): RM-Bench "
                   + "; ".join(f"{d}: \"{p}\"" for d, p in principles.get("rmbench", {}).items())
                   + ". JudgeBench " + "; ".join(f"{g}: \"{p}\"" for g, p in principles.get("judgebench", {}).items())
                   + ". The Bradley–Terry model ignores the principle.")
    for name, result in ordered_models(metrics):
        pb = result.get("principlebench")
        if pb:
            rule = pb.get("threshold_rule", "zero")
            text = f"- PrincipleBench, {result.get('label', name)}: Yes when score > {pb['threshold']:.3g}"
            if rule == "validation" and pb.get("threshold_fit"):
                fit = pb["threshold_fit"]
                text += (f" (fitted on {fit['validation_items']} validation items, validation accuracy "
                         f"{with_ci(fit['validation_accuracy'], fit.get('validation_ci'))})")
            else:
                text += " (log-odds: Yes more likely than No)"
            text += f"; majority-label baseline of the same {pb['n']} items: {pb['majority']:.1f}."
            out.append(text)
        pairs = result.get("principlebench_pairs")
        if pairs:
            out.append(f"- PrincipleBench pairs, {result.get('label', name)}: {pairs['n']} pairs, "
                       f"{pairs['ties']} tied (counted wrong).")
        if result.get("missing_judgements"):
            out.append(f"- {result.get('label', name)}: {result['missing_judgements']} of {result['inputs']} "
                       "generations had no readable judgement (scored −50, i.e. No).")
    if metrics.get("principlebench_paired"):
        out += ["", "## PrincipleBench items: model against model on the same items", "",
                "The models score the same items, so they are compared paired, on the items both scored (the GenRM's "
                "smaller sample lies inside the others'): A − B is the difference of their accuracies on those items "
                "with a 95% percentile-bootstrap interval over items; the exact McNemar test asks whether the items "
                "only A gets right outnumber those only B gets right by more than chance. An order is claimed when "
                "the interval excludes 0.", "", paired_table(metrics)]
    out += ["", "## JudgeBench: does the verdict depend on the order?", "",
            "Single-response scoring judges the pair in both orders (A, B) and (B, A); with the swapped game scored "
            "in a separate call, a verdict that changes with the order would show here.", "", position_table(metrics)]
    if metrics.get("principle_sweep"):
        sw = metrics["principle_sweep"]
        out += ["", f"## Principle sweep ({sw.get('label', sw.get('model'))})", "",
                "Each phrasing is used for every RM-Bench domain and JudgeBench group, on the same samples as the "
                "main table; the first row is the per-domain default above.", "", sweep_table(sw)]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ the stage


def evaluate_all(cfg: RMEvalConfig, data: BenchData, load: Callable[[ModelEvalConfig], Any] = load_model) -> dict:
    """Every model of ``cfg.models`` (loaded one at a time with ``load``, a scorer; its ``info()``
    and ``release()`` are used when it has them) and the principle sweep.

    Returns the metrics: ``models[name]`` (:func:`evaluate_model` + ``label``, ``model`` facts),
    ``order`` (the config's model order), ``principlebench_paired`` (:func:`principlebench_paired`, one
    line each printed), ``principle_sweep``, ``principles``, ``data`` (what was loaded / missing), ``paper``.
    """
    rights: dict[str, dict[str, bool]] = {}  # model -> {item key: right?}, for the paired comparison only
    metrics: dict[str, Any] = {"models": {}, "order": list(cfg.models), "principle_sweep": None, "data": data.summary(),
                               "principles": {"rmbench": dict(cfg.principles.rmbench),
                                              "judgebench": dict(cfg.principles.judgebench)},
                               "paper": PAPER_ROWS}
    for name, mcfg in cfg.models.items():
        log(f"{name}: loading {mcfg.path}")
        scorer = load(mcfg)
        try:
            result = evaluate_model(scorer, data, mcfg, cfg.principles, cfg.seed, cfg.rescore_swapped)
            info = scorer.info() if hasattr(scorer, "info") else {"path": mcfg.path, "kind": mcfg.kind}
            result.update(label=mcfg.label, kind=mcfg.kind, model=info)
            if result.get("principlebench"):
                rights[name] = result["principlebench"].pop("item_right")
            metrics["models"][name] = result
            if cfg.sweep.model == name and cfg.sweep.phrasings:
                sweep = principle_sweep(scorer, data, mcfg, cfg.sweep.phrasings, cfg.seed, default=result,
                                        default_principles=cfg.principles)
                sweep.update(model=name, label=mcfg.label)
                metrics["principle_sweep"] = sweep
        finally:
            if hasattr(scorer, "release"):
                scorer.release()
    metrics["principlebench_paired"] = principlebench_paired(rights, list(cfg.models), cfg.seed)
    labels = {name: r["label"] for name, r in metrics["models"].items()}
    for r in metrics["principlebench_paired"].values():
        log(f"PrincipleBench paired: {paired_text(r, labels)}")
    return metrics


# ------------------------------------------------------------------ figures

MODEL_COLORS = {"scalar": "#4C72B0", "bt": "#DD8452", "genrm": "#55A868"}


def benchmarks_figure(metrics: dict):
    """Grouped bars, ours (solid, with 95% Wilson intervals) beside the paper (hatched) per model
    kind: left the benchmarks' headline numbers, right the RM-Bench and JudgeBench detail. Missing: no bar."""
    import numpy as np

    head = [("rmbench", "overall", "RM-Bench"), ("judgebench", "overall", "JudgeBench"),
            ("principlebench", "items", "PrincipleBench items"), ("principlebench", "pairs", "PrincipleBench pairs")]
    detail = ([("rmbench", c, f"RMB {c}") for c in ("chat", "math", "code", "safety", "easy", "normal", "hard")]
              + [("judgebench", c, f"JB {c}") for c in ("knowledge", "reasoning", "math", "code")])
    series = []  # (label, cells, color, hatch)
    for name, result in ordered_models(metrics):
        kind = result.get("kind", name)
        color = MODEL_COLORS.get(kind, "gray")
        series.append((result.get("label", name), our_cells_with_ci(result), color, None))
        if kind in PAPER_ROWS:
            paper = {col: (v, None) for col, v in paper_cells(PAPER_ROWS[kind]).items()}
            series.append((PAPER_ROWS[kind]["label"], paper, color, "//"))
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.2), gridspec_kw={"width_ratios": [1.3, 3]})
    width = 0.8 / max(1, len(series))
    for ax, cols in zip(axes, (head, detail)):
        x = np.arange(len(cols))
        for k, (label, cells, color, hatch) in enumerate(series):
            vals = [cells.get((b, c), (None, None))[0] for b, c, _ in cols]
            cis = [cells.get((b, c), (None, None))[1] for b, c, _ in cols]
            heights = [v if v is not None else 0 for v in vals]
            err = np.array([[v - ci[0], ci[1] - v] if v is not None and ci else [0.0, 0.0]
                            for v, ci in zip(vals, cis)]).T
            bars = ax.bar(x - 0.4 + width * (k + 0.5), heights, width, color=color if hatch is None else "white",
                          edgecolor=color, hatch=hatch, label=label, yerr=err if err.any() else None,
                          error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "black"})
            bar_labels(ax, bars, vals)
        ax.axhline(50, color="gray", ls=":", lw=0.8)
        ax.set_xticks(x, [t for _, _, t in cols], rotation=30, ha="right", fontsize=9)
        ax.set_ylim(0, 112)
        ax.set_ylabel("accuracy (%)")
    axes[0].set_title("Headline numbers")
    axes[1].set_title("Detail (no bar: not measured here / not given in the paper); whiskers: 95% Wilson")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncol=min(3, len(labels)), loc="lower center", bbox_to_anchor=(0.5, -0.12))
    fig.suptitle("Reward models, ours (solid) vs the paper (hatched); dotted line: chance")
    fig.tight_layout()
    return fig


def principles_figure(sweep: dict):
    """Grouped bars of the principle sweep: one bar per phrasing, per RM-Bench domain / JudgeBench group."""
    import numpy as np

    cols = [("rmbench", c) for c in ("chat", "math", "code", "safety", "overall")] + [
        ("judgebench", c) for c in ("knowledge", "reasoning", "math", "code", "overall")]
    names = list(sweep.get("order", []))
    fig, ax = plt.subplots(figsize=(13, 4.2))
    width = 0.8 / max(1, len(names))
    x = np.arange(len(cols))
    cmap = plt.get_cmap("tab10")
    for k, name in enumerate(names):
        row = sweep["phrasings"][name]
        vals = [(row.get(b) or {}).get(c) for b, c in cols]
        bars = ax.bar(x - 0.4 + width * (k + 0.5), [v if v is not None else 0 for v in vals], width,
                      color=cmap(k % 10), label=name if k == 0 else f'"{name}"')
        bar_labels(ax, bars, vals)
    ax.axhline(50, color="gray", ls=":", lw=0.8)
    ax.axvline(4.5, color="k", lw=0.6)
    ax.set_xticks(x, [("RMB " if b == "rmbench" else "JB ") + c for b, c in cols], rotation=30, ha="right")
    ax.set_ylim(0, 112)
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8, ncol=min(5, max(1, len(names))), loc="upper center", bbox_to_anchor=(0.5, -0.2))
    ax.set_title(f"Principle sweep, {sweep.get('label', sweep.get('model', ''))}: the same phrasing for every domain "
                 "(no bar: domain not available)")
    return fig
