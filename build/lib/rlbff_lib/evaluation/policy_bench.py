"""Policy evaluation on MT-Bench and Arena-Hard v2, scored as the benchmarks' own code does.

MT-Bench (lm-sys/FastChat ``fastchat/llm_judge``): the policy answers both turns of the 80
questions (turn 2 sees its own turn-1 answer); a judge rates each turn 1–10 with the official
prompts (``single-v1`` / ``single-v1-multi-turn``, and ``single-math-v1`` /
``single-math-v1-multi-turn`` with the GPT-4 reference answers for math, reasoning and coding).
The rating is read as ``common.run_judge_single`` does: the first ``[[x]]``, else the first
``[x]``, else −1; ``show_result.py`` drops −1 and averages the rest (per turn, per category, overall).

Arena-Hard v2 (lmarena/arena-hard-auto @ 196f6b8, 2025-06-20): each answer meets its category's
baseline answer (``utils/judge_utils.py`` ``JUDGE_SETTINGS``: hard_prompt against o3-mini-2025-01-31,
creative_writing against gemini-2.0-flash-001) in two games, baseline as A then as B
(``gen_judgment.judgment``). The verdict is read by ``gen_judgment.get_score`` with the
``regex_patterns`` of ``config/arena-hard-v2.0.yaml``: ``\[\[([AB<>=]+)\]\]``, and when that finds
nothing ``\[([AB<>=]+)\]``, each over the upper-cased judgment, the LAST match of the first pattern
that matches; a question with a missing verdict in either game is dropped. Strong verdicts
(``A>>B``, ``B>>A``) count three times (``show_result.load_judgments``). The score
(``show_result.print_leaderboard``, no style control): 100 bootstrap resamples of the outcome rows,
the mean of their means, with the 5% and 95% quantiles as the interval; the baseline sits at 50%.
It is reported per category, each against its own baseline (``show_result.py --category``, default
hard_prompt); a number pooled over categories is ours, labelled ``ours (pooled)``.

Judges. :class:`OpenAIJudge`: an OpenAI-compatible endpoint (for MT-Bench FastChat's GPT-4, or
GPT-4-Turbo as in the paper's table; the official Arena-Hard judge), sent the official prompts.
:class:`PrincipleRMJudge` (smoke): the project's own scalar principle RM with one principle ("is
helpful and correct"); an MT-Bench rating is ``1 + 9 σ(score / rating_temperature)``, an
Arena-Hard verdict compares the two answers' scores with a tie and a strong margin; both write
their decision in the official output format, so the same parsers read every judge. Every result carries ``judge`` (its label) so tables say
which judge was used.
"""

from __future__ import annotations

import ast
import math
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

from rlbff_lib.evaluation.benchmarks import MTBENCH_NEED_REF_CATEGORIES, ArenaHard, MTBench, subsample
from rlbff_lib.core.progress import log

# ------------------------------------------------------------------ MT-Bench scoring (FastChat)

ONE_SCORE_PATTERN = re.compile(r"\[\[(\d+\.?\d*)\]\]")          # fastchat/llm_judge/common.py
ONE_SCORE_PATTERN_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
FASTCHAT_TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                        "reasoning": 0.0, "stem": 0.1, "humanities": 0.1}  # gen_model_answer.py sampling
MT_PROMPT_NAMES = {(False, 1): "single-v1", (True, 1): "single-math-v1",
                   (False, 2): "single-v1-multi-turn", (True, 2): "single-math-v1-multi-turn"}


def parse_rating(judgment: str | None) -> float:
    """The judge's 1–10 rating as FastChat reads it: first ``[[x]]``, else first ``[x]``, else −1."""
    text = judgment or ""
    match = ONE_SCORE_PATTERN.search(text) or ONE_SCORE_PATTERN_BACKUP.search(text)
    if not match:
        return -1
    try:
        return float(ast.literal_eval(match.group(1)))
    except (ValueError, SyntaxError):
        return -1


def mtbench_prompt(question: dict, answers: Sequence[str], turn: int, judge_prompts: dict[str, dict],
                   reference: Sequence[str] | None = None) -> tuple[str, str, str]:
    """(prompt name, system prompt, user prompt) that FastChat sends to judge ``turn`` (1 or 2).

    Math, reasoning and coding questions use the reference-based prompts with the GPT-4
    reference turns (``ref_answer_1``, ``ref_answer_2``); turn 2 uses the multi-turn prompts,
    which show the whole two-turn conversation.
    """
    needs_ref = question["category"] in MTBENCH_NEED_REF_CATEGORIES
    if needs_ref and not reference:
        raise ValueError(f"reference: question {question['question_id']} ({question['category']}) needs one")
    name = MT_PROMPT_NAMES[(needs_ref, turn)]
    template = judge_prompts[name]
    kwargs = {"ref_answer_1": reference[0], "ref_answer_2": reference[1] if len(reference) > 1 else ""} \
        if needs_ref else {}
    if turn == 1:
        user = template["prompt_template"].format(question=question["turns"][0], answer=answers[0], **kwargs)
    else:
        user = template["prompt_template"].format(question_1=question["turns"][0], question_2=question["turns"][1],
                                                  answer_1=answers[0], answer_2=answers[1], **kwargs)
    return name, template["system_prompt"], user


def score_mtbench(judgments: Sequence[dict]) -> dict:
    """MT-Bench scores from ``{"question_id", "category", "turn", "score"}`` rows (score −1 = unparseable).

    As ``show_result.display_result_single``: −1 rows are dropped; ``turn_1``/``turn_2`` are the
    means over each turn, ``overall`` the mean over every valid (question, turn), ``categories``
    the mean over each category's valid turns. NaN where nothing is valid.
    """
    valid = [j for j in judgments if j["score"] != -1]
    by_turn, by_cat = defaultdict(list), defaultdict(list)
    for j in valid:
        by_turn[j["turn"]].append(float(j["score"]))
        by_cat[j["category"]].append(float(j["score"]))
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")
    return {
        "overall": mean([float(j["score"]) for j in valid]),
        "turn_1": mean(by_turn[1]), "turn_2": mean(by_turn[2]),
        "categories": {c: mean(v) for c, v in sorted(by_cat.items())},
        "n_judgments": len(judgments), "n_invalid": len(judgments) - len(valid),
    }


# ------------------------------------------------------------------ Arena-Hard v2 scoring (arena-hard-auto)

# config/arena-hard-v2.0.yaml regex_patterns, tried in order by gen_judgment.get_score
ARENA_VERDICT_PATTERNS = (re.compile(r"\[\[([AB<>=]+)\]\]"), re.compile(r"\[([AB<>=]+)\]"))
VERDICTS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
ARENA_DEFAULT_CATEGORY = "hard_prompt"  # show_result.py --category default
ARENA_QUANTILES = (0.05, 0.95)          # show_result.print_leaderboard: the interval's bootstrap quantiles


def label_to_score(weight: int = 3) -> dict[str, list[float]]:
    """``show_result.load_judgments``: a verdict as battle outcomes for player A (strong ones ``weight``×)."""
    return {"A>B": [1.0], "A>>B": [1.0] * weight, "A=B": [0.5], "A<<B": [0.0] * weight, "A<B": [0.0],
            "B>A": [0.0], "B>>A": [0.0] * weight, "B=A": [0.5], "B<<A": [1.0] * weight, "B<A": [1.0]}


def parse_verdict(judgment: str | None, patterns: Sequence[re.Pattern] = ARENA_VERDICT_PATTERNS) -> str | None:
    """The verdict label as ``gen_judgment.get_score`` reads it: the patterns in order (``[[X]]``,
    then ``[X]``) over the upper-cased judgment; the first pattern with a non-empty match gives its
    LAST match (newlines stripped); None when no pattern matches."""
    text = (judgment or "").upper()
    for pattern in patterns:
        matches = [m for m in pattern.findall(text) if m != ""]
        if matches:
            return matches[-1].strip("\n")
    return None


def battle_outcomes(game_1: str | None, game_2: str | None, weight: int = 3) -> list[float] | None:
    """Outcomes for the MODEL of one question's two games, or None when a verdict is missing/unknown.

    Game 1 puts the baseline in A and the model in B; game 2 swaps them (``gen_judgment.judgment``).
    As ``show_result.load_judgments``: ``label_to_score[game_2] + [1 − s for s in label_to_score[game_1]]``;
    a missing verdict drops the question (its null filter). Ours: a label outside the table (the
    second pattern can match e.g. ``[A]``) also drops it, where the official code stops with a KeyError.
    """
    table = label_to_score(weight)
    if game_1 not in table or game_2 not in table:
        return None
    return table[game_2] + [1.0 - s for s in table[game_1]]


def score_arena(records: Sequence[dict], weight: int = 3, n_bootstrap: int = 100, seed: int = 0,
                model: str = "policy", baseline: str = "o3-mini-2025-01-31") -> dict:
    """Arena-Hard v2 score (percent) of one model against one baseline, as ``show_result.print_leaderboard``.

    records: ``{"uid", "games": [verdict of game 1, verdict of game 2]}`` (labels as
    :func:`parse_verdict` returns them, None for a missing one), one category's questions.
    Questions with a missing verdict are dropped (``n_dropped``); the rest become weighted outcome
    rows (:func:`battle_outcomes`). ``n_bootstrap`` times the rows are resampled with replacement
    (``groupby("model").sample(frac=1.0, replace=True)``, i.e. ``RandomState.choice(n, n)``; here a
    ``RandomState(seed)``, officially the unseeded global one) and averaged: ``win_rate`` is the mean
    of those means, ``ci`` their 5% and 95% quantiles (linear interpolation, as pandas). The baseline
    sits at 50%. ``mean_score`` is the plain mean of the rows (the bootstrap's expectation).
    """
    rows, dropped, verdicts = [], 0, Counter()
    for r in records:
        g1, g2 = r["games"]
        verdicts.update(v if v is not None else "missing" for v in (g1, g2))
        outs = battle_outcomes(g1, g2, weight)
        if outs is None:
            dropped += 1
            continue
        rows += outs
    result = {"model": model, "baseline": baseline, "baseline_win_rate": 50.0, "n_questions": len(records),
              "n_dropped": dropped, "n_outcomes": len(rows), "verdicts": dict(verdicts), "weight": weight,
              "n_bootstrap": n_bootstrap, "interval": "5%-95% bootstrap quantiles"}
    if not rows:
        nan = float("nan")
        return {**result, "win_rate": nan, "ci": [nan, nan], "ci_minus": nan, "ci_plus": nan, "mean_score": nan}
    outcomes = np.asarray(rows, dtype=float)
    rng = np.random.RandomState(seed)
    boots = np.array([outcomes[rng.choice(len(outcomes), size=len(outcomes), replace=True)].mean()
                      for _ in range(n_bootstrap)])
    point = 100.0 * float(boots.mean())
    lo, hi = (100.0 * np.quantile(boots, ARENA_QUANTILES)).tolist()
    return {**result, "win_rate": point, "ci": [lo, hi], "ci_minus": point - lo, "ci_plus": hi - point,
            "mean_score": 100.0 * float(outcomes.mean())}


def score_arena_categories(records: Sequence[dict], baselines: dict[str, str], weight: int = 3,
                           n_bootstrap: int = 100, seed: int = 0, model: str = "policy") -> dict:
    """Arena-Hard v2 per category, each against its own baseline: the official numbers.

    records: ``{"uid", "category", "games"}``; baselines: category -> baseline model. The official
    ``show_result.py`` scores one category per run (``--category``, default ``hard_prompt``) and
    never pools them. Returns ``categories[c]`` (:func:`score_arena`), the default category's
    result at the top level (``category`` names it; NaN when it has no questions), and
    ``pooled``: all categories in one bootstrap, labelled ``ours (pooled)`` (None with one category).
    """
    by_cat: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_cat[r["category"]].append(r)
    cats = {c: score_arena(rs, weight, n_bootstrap, seed, model, baselines[c]) for c, rs in by_cat.items()}
    pooled = None
    if len(cats) > 1:
        pooled = {"label": "ours (pooled)", **score_arena(records, weight, n_bootstrap, seed, model,
                                                          " / ".join(f"{c}: {baselines[c]}" for c in cats))}
    default = cats.get(ARENA_DEFAULT_CATEGORY) or score_arena([], weight, n_bootstrap, seed, model,
                                                              baselines.get(ARENA_DEFAULT_CATEGORY, ""))
    return {**default, "category": ARENA_DEFAULT_CATEGORY, "categories": cats, "pooled": pooled,
            "baselines": dict(baselines)}


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


# ------------------------------------------------------------------ judges


@dataclass
class SingleItem:
    """One MT-Bench judgement: the official prompt, plus the pieces an RM judge reads directly.

    conversation: the user/assistant turns before the judged answer (ends with the user question).
    """

    question_id: int
    category: str
    turn: int
    prompt_name: str
    system: str
    user: str
    conversation: list[dict]
    answer: str


@dataclass
class PairItem:
    """One Arena-Hard game: the official prompt, plus question and the answers in A/B order."""

    uid: str
    category: str
    game: int
    system: str
    user: str
    question: str
    answer_a: str
    answer_b: str


class OpenAIJudge:
    """A judge model behind an OpenAI-compatible endpoint, sent the official prompts (temperature 0).

    endpoint: a :class:`rlbff_lib.core.http.ChatClient`; its cache, when it has one, answers a
    request asked before (key: judge model, prompt version and the full request; the version is
    ``tag`` and, for MT-Bench, FastChat's prompt name). A failed request is recorded as an
    unparseable judgment and counted; past the client's failure share the run fails; a
    401/403/404 stops it at once.
    """

    def __init__(self, endpoint, max_tokens: int = 2048, temperature: float = 0.0, label: str | None = None,
                 tag: str = ""):
        self.endpoint, self.max_tokens, self.temperature, self.tag = endpoint, max_tokens, temperature, tag
        self.label = label or f"{endpoint.model} (OpenAI-compatible endpoint)"

    def _ask(self, system: str, user: str, tag: str) -> str:
        from rlbff_lib.core.http import RequestFailed

        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        try:
            return self.endpoint.complete(messages, self.max_tokens, self.temperature, tag=tag)["content"] or ""
        except RequestFailed as e:
            log(f"judge: request failed ({e}); recorded as an unparseable judgment")
            return ""

    def judge_single(self, items: Sequence[SingleItem]) -> list[str]:
        return self.endpoint.map(lambda it: self._ask(it.system, it.user, f"{self.tag} {it.prompt_name}"), list(items))

    def judge_pair(self, items: Sequence[PairItem]) -> list[str]:
        return self.endpoint.map(lambda it: self._ask(it.system, it.user, self.tag), list(items))


class PrincipleRMJudge:
    """The project's scalar principle RM as a stand-in judge (smoke; NOT GPT-4).

    MT-Bench: score s = logit(Yes) − logit(No) of the answer under ``principle`` (reference
    answers are not used), rating = 1 + 9 σ(s / rating_temperature), written as ``Rating: [[r]]``.
    Arena-Hard: d = s(A) − s(B); |d| < tie_margin → ``A=B``; d ≥ strong_margin → ``A>>B``;
    d > 0 → ``A>B`` (mirrored for B), written as ``My final verdict is: [[label]]``.
    ``scorer``: a scalar :class:`rlbff_lib.reward_models.scorers.Scorer` (its ``max_length`` and
    ``batch_size`` apply).
    """

    def __init__(self, scorer, principle: str = "is helpful and correct", rating_temperature: float = 2.0,
                 tie_margin: float = 0.25, strong_margin: float = 2.0, label: str = "principle-RM (smoke, not GPT-4)"):
        if not 0 <= tie_margin <= strong_margin:
            raise ValueError(f"tie_margin: must be in [0, strong_margin={strong_margin}], got {tie_margin}")
        if rating_temperature <= 0:
            raise ValueError(f"rating_temperature: must be > 0, got {rating_temperature}")
        if scorer.kind != "scalar":
            raise ValueError(f"scorer: the principle-RM judge needs a scalar RM, got a {scorer.kind!r} one")
        self.scorer, self.principle = scorer, principle
        self.rating_temperature, self.tie_margin, self.strong_margin = rating_temperature, tie_margin, strong_margin
        self.label = label

    def _scores(self, conversations: Sequence[Sequence[dict]], answers: Sequence[str]) -> list[float]:
        if not answers:
            return []
        return list(self.scorer(conversations, answers, self.principle).scores)

    def rating(self, s: float) -> float:
        return 1.0 + 9.0 * _sigmoid(s / self.rating_temperature)

    def verdict(self, s_a: float, s_b: float) -> str:
        d = s_a - s_b
        if abs(d) < self.tie_margin:
            return "A=B"
        if d >= self.strong_margin:
            return "A>>B"
        if d <= -self.strong_margin:
            return "B>>A"
        return "A>B" if d > 0 else "B>A"

    def judge_single(self, items: Sequence[SingleItem]) -> list[str]:
        scores = self._scores([it.conversation for it in items], [it.answer for it in items])
        return [f"The principle RM scores the answer {s:+.3f}. Rating: [[{self.rating(s):.2f}]]" for s in scores]

    def judge_pair(self, items: Sequence[PairItem]) -> list[str]:
        convs = [[{"role": "user", "content": it.question}] for it in items]
        s_a = self._scores(convs, [it.answer_a for it in items])
        s_b = self._scores(convs, [it.answer_b for it in items])
        return [f"Scores: A {a:+.3f}, B {b:+.3f}. My final verdict is: [[{self.verdict(a, b)}]]"
                for a, b in zip(s_a, s_b)]


# ------------------------------------------------------------------ config and runs

PARAMS = "alignment.evaluation"  # where params.yaml sets PolicyEvalConfig (named in error messages)


@dataclass
class PolicyEvalConfig:
    """Policy evaluation settings.

    mtbench_limit / arena_limit: questions evaluated (a seeded subset; null: all 80 / 750).
    max_new_tokens: answer tokens per turn (thinking included). temperature: sampling
    temperature; null uses FastChat's per-category temperatures on MT-Bench and greedy decoding
    on Arena-Hard. top_p, top_k: sampling filters (0: off; Qwen3 thinking mode suggests 0.95 / 20).
    batch_size: sequences per generation batch. chat_template_kwargs: e.g.
    ``{"enable_thinking": true}``. max_prompt_tokens: prompts are cut from the left to this.
    judge: ``principle_rm`` (smoke) or ``openai``. judge_model_path, judge_principle,
    rating_temperature, tie_margin, strong_margin, judge_batch_size, judge_max_length (the RM's window
    per input, as :mod:`rlbff_lib.reward_models.scorers` counts it): the :class:`PrincipleRMJudge`. judge_base_url, mtbench_judge_model (FastChat: gpt-4; the paper's table: GPT-4-Turbo),
    arena_judge_model, judge_api_key_env (NAME of the variable), judge_max_tokens (MT-Bench, FastChat:
    2048), arena_judge_max_tokens (arena-hard-v2.0.yaml: 16000), judge_concurrency, judge_timeout_s:
    the :class:`OpenAIJudge`. weight: strong-verdict
    weight (3). n_bootstrap: Arena-Hard bootstrap rounds (100). seed: subsets, sampling, bootstrap.
    generation_server: null (answers by HF ``generate`` of the policy in memory) or ``{base_url, model,
    api_key_env}`` of an OpenAI-compatible server (``vllm serve``) of the policy being evaluated
    (:mod:`rlbff_lib.models.generation`); :meth:`preflight` checks it in seconds.
    """

    mtbench_limit: int | None = 8
    arena_limit: int | None = 16
    max_new_tokens: int = 256
    temperature: float | None = None
    top_p: float = 1.0
    top_k: int = 0
    batch_size: int = 8
    chat_template_kwargs: dict[str, bool] = field(default_factory=dict)
    max_prompt_tokens: int = 1536
    judge: Literal["principle_rm", "openai"] = "principle_rm"
    judge_model_path: str = "models/reward_models/scalar"
    judge_principle: str = "is helpful and correct"
    rating_temperature: float = 2.0
    tie_margin: float = 0.25
    strong_margin: float = 2.0
    judge_batch_size: int = 8
    judge_max_length: int = 1024
    judge_base_url: str = "https://api.openai.com/v1"
    mtbench_judge_model: str = "gpt-4"
    arena_judge_model: str = "gpt-4.1"
    judge_api_key_env: str = "OPENAI_API_KEY"
    judge_max_tokens: int = 2048
    arena_judge_max_tokens: int = 16000
    judge_concurrency: int = 8
    judge_timeout_s: float = 300.0
    weight: int = 3
    n_bootstrap: int = 100
    seed: int = 0
    generation_server: dict | None = None

    def __post_init__(self):
        for name in ("mtbench_limit", "arena_limit"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name}: must be >= 1 or null (all), got {v}")
        for name in ("max_new_tokens", "batch_size", "max_prompt_tokens", "judge_batch_size", "judge_max_length",
                     "judge_max_tokens", "arena_judge_max_tokens", "judge_concurrency", "weight", "n_bootstrap"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError(f"temperature: must be >= 0 or null, got {self.temperature}")
        if not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"top_p/top_k: must be in (0, 1] / >= 0, got {self.top_p}/{self.top_k}")
        if self.judge not in ("principle_rm", "openai"):
            raise ValueError(f"judge: must be 'principle_rm' or 'openai', got {self.judge!r}")
        if not 0 <= self.tie_margin <= self.strong_margin:
            raise ValueError(f"tie_margin: must be in [0, strong_margin], got {self.tie_margin}")
        if self.rating_temperature <= 0 or self.judge_timeout_s <= 0:
            raise ValueError(f"rating_temperature/judge_timeout_s: must be > 0, got "
                             f"{self.rating_temperature}/{self.judge_timeout_s}")
        if self.judge_api_key_env and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", self.judge_api_key_env):
            raise ValueError("judge_api_key_env: must be the NAME of an environment variable, not the key itself")
        self.server()  # a malformed generation_server fails here

    def server(self):
        """The :class:`rlbff_lib.core.http.EndpointConfig` of ``generation_server`` (None: HF generate)."""
        from rlbff_lib.models.generation import server_endpoint

        return server_endpoint(self.generation_server, f"{PARAMS}.generation_server", "policy generation server")

    def endpoint(self, model: str, model_param: str, service: str):
        """The :class:`rlbff_lib.core.http.EndpointConfig` of an ``openai`` judge serving ``model``
        (set by the parameter ``model_param``) on this section's endpoint, key and concurrency."""
        from rlbff_lib.core.http import EndpointConfig

        return EndpointConfig(self.judge_base_url, model, self.judge_api_key_env, self.judge_timeout_s,
                              concurrency=self.judge_concurrency, service=service,
                              url_param=f"{PARAMS}.judge_base_url", model_param=model_param,
                              key_param=f"{PARAMS}.judge_api_key_env")

    def endpoints(self):
        """The ``openai`` judges' endpoints: (MT-Bench, Arena-Hard)."""
        return (self.endpoint(self.mtbench_judge_model, f"{PARAMS}.mtbench_judge_model", "MT-Bench judge endpoint"),
                self.endpoint(self.arena_judge_model, f"{PARAMS}.arena_judge_model", "Arena-Hard judge endpoint"))

    def preflight(self) -> None:
        """``openai`` judge: fail in seconds, naming the parameter, when the endpoint is unreachable,
        refuses the key or does not serve either judge model."""
        if self.judge == "openai":
            for endpoint in self.endpoints():
                endpoint.check()
        if self.server() is not None:
            self.server().check()


def make_judges(cfg: PolicyEvalConfig, scorer=None, cache_path: str | os.PathLike | None = None):
    """(MT-Bench judge, Arena-Hard judge) of ``cfg`` (the same principle RM for both in smoke).
    ``scorer``: the principle RM already loaded (else loaded from ``cfg.judge_model_path``).
    ``cache_path``: the append-only JSONL cache of the ``openai`` judges' answers, shared by both
    (None: ask every time); a rerun asks only what it has not asked before."""
    if cfg.judge == "principle_rm":
        if scorer is None:
            from rlbff_lib.reward_models.scorers import load_scorer

            scorer = load_scorer("scalar", cfg.judge_model_path, cfg.judge_max_length, cfg.judge_batch_size)
        judge = PrincipleRMJudge(scorer, cfg.judge_principle, cfg.rating_temperature, cfg.tie_margin, cfg.strong_margin)
        return judge, judge
    from rlbff_lib.core.cache import JsonlCache
    from rlbff_lib.core.http import ChatClient

    cache = JsonlCache(cache_path, valid=lambda row: isinstance(row.get("answer"), dict)) if cache_path else None
    mt, arena = cfg.endpoints()
    return (OpenAIJudge(ChatClient(mt, cache), cfg.judge_max_tokens, tag="fastchat-llm_judge"),
            OpenAIJudge(ChatClient(arena, cache), cfg.arena_judge_max_tokens, tag="arena-hard-v2.0"))


def generate_answers(policy, tokenizer, conversations: list[list[dict]], temperatures: list[float],
                     cfg: PolicyEvalConfig, seed: int) -> list:
    """Generate one answer per conversation, batching conversations that share a temperature: HF generate
    of ``policy``, or ``cfg.generation_server`` when it names one (then ``policy`` is unused; the same
    :class:`~rlbff_lib.alignment.policy.Generation` records, see :mod:`rlbff_lib.models.generation`)."""
    from rlbff_lib.alignment.policy import THINK_END, THINK_START, Generation, final_answer, generate
    from rlbff_lib.models.generation import served_chat

    server = cfg.server()
    out = [None] * len(conversations)
    for t in sorted(set(temperatures)):
        idx = [i for i, x in enumerate(temperatures) if x == t]
        convs = [conversations[i] for i in idx]
        if server is None:
            gens = generate(policy, tokenizer, convs, max_new_tokens=cfg.max_new_tokens, temperature=t,
                            top_p=cfg.top_p, top_k=cfg.top_k, batch_size=cfg.batch_size, seed=seed,
                            chat_template_kwargs=cfg.chat_template_kwargs, max_prompt_tokens=cfg.max_prompt_tokens)
        else:
            answers = served_chat(convs, server, tokenizer, cfg.max_new_tokens, t, cfg.top_p, cfg.top_k, seed,
                                  cfg.chat_template_kwargs, cfg.max_prompt_tokens)
            gens = []
            for k, a in enumerate(answers):  # thinking and answer split as policy.split_thinking splits text
                text = a["content"]
                thinking = text.rsplit(THINK_END, 1)[0] if THINK_END in text else text if THINK_START in text else ""
                gens.append(Generation(k, text, thinking.replace(THINK_START, "").strip(), final_answer(text),
                                       a["n_tokens"], a["terminated"], a["prompt_truncated"]))
        for i, g in zip(idx, gens):
            out[i] = g
    return out


def run_mtbench(policy, tokenizer, judge, data: MTBench, cfg: PolicyEvalConfig) -> dict:
    """Answer and judge MT-Bench (a ``cfg.mtbench_limit`` subset); returns scores, answers, judgments.

    Turn 1 answers the first question; turn 2 answers the second after the policy's own
    (final) turn-1 answer. Answers are the final answers (thinking removed).
    """
    questions = subsample(data.questions, cfg.mtbench_limit, cfg.seed)
    temps = [cfg.temperature if cfg.temperature is not None else FASTCHAT_TEMPERATURE.get(q["category"], 0.7)
             for q in questions]
    convs1 = [[{"role": "user", "content": q["turns"][0]}] for q in questions]
    first = generate_answers(policy, tokenizer, convs1, temps, cfg, cfg.seed)
    convs2 = [c + [{"role": "assistant", "content": g.answer}, {"role": "user", "content": q["turns"][1]}]
              for c, g, q in zip(convs1, first, questions)]
    second = generate_answers(policy, tokenizer, convs2, temps, cfg, cfg.seed + 1)
    items = []
    for q, c2, g1, g2 in zip(questions, convs2, first, second):
        ref = data.references.get(q["question_id"])
        answers = [g1.answer, g2.answer]
        for turn, conv, ans in ((1, c2[:1], g1.answer), (2, c2, g2.answer)):
            name, system, user = mtbench_prompt(q, answers, turn, data.judge_prompts, ref)
            items.append(SingleItem(q["question_id"], q["category"], turn, name, system, user, conv, ans))
    judgments = judge.judge_single(items)
    rows = [{"question_id": it.question_id, "category": it.category, "turn": it.turn, "judge_prompt": it.prompt_name,
             "score": parse_rating(j), "judgment": j} for it, j in zip(items, judgments)]
    answers = [{"question_id": q["question_id"], "category": q["category"], "turns": [g1.answer, g2.answer],
                "tokens": [g1.n_tokens, g2.n_tokens], "terminated": [g1.terminated, g2.terminated]}
               for q, g1, g2 in zip(questions, first, second)]
    return {"benchmark": "mt-bench", "judge": judge.label, "n_questions": len(questions),
            "scores": score_mtbench(rows), "judgments": rows, "answers": answers}


def run_arena_hard(policy, tokenizer, judge, data: ArenaHard, cfg: PolicyEvalConfig,
                   system_prompt: str | None = None, prompt_template: str | None = None) -> dict:
    """Answer and judge Arena-Hard v2 (a ``cfg.arena_limit`` subset) against each category's baseline.

    Only categories whose official baseline answers are loaded take part (``data.skipped`` says
    why the others do not). Two games per question (baseline as A, then as B) with the official
    system prompt of the question's category and the official template; scored per category by
    :func:`score_arena_categories`. Returns that dict plus ``judge``, ``skipped``, ``answers`` and
    ``records`` (verdicts and judgments per question).
    """
    questions = subsample(data.questions, cfg.arena_limit, cfg.seed)
    template = prompt_template or ARENA_PROMPT_TEMPLATE
    temps = [cfg.temperature if cfg.temperature is not None else 0.0] * len(questions)
    gens = generate_answers(policy, tokenizer, [[{"role": "user", "content": q["prompt"]}] for q in questions],
                            temps, cfg, cfg.seed)
    items = []
    for q, g in zip(questions, gens):
        base = data.baseline_answer(q)
        for game, (a, b) in enumerate(((base, g.answer), (g.answer, base))):
            user = template.format(QUESTION=q["prompt"], ANSWER_A=a, ANSWER_B=b)
            system = system_prompt or arena_system_prompt(q["category"])
            items.append(PairItem(q["uid"], q["category"], game, system, user, q["prompt"], a, b))
    judgments = judge.judge_pair(items)
    records = []
    for k, q in enumerate(questions):
        j1, j2 = judgments[2 * k], judgments[2 * k + 1]
        records.append({"uid": q["uid"], "category": q["category"], "games": [parse_verdict(j1), parse_verdict(j2)],
                        "judgments": [j1, j2]})
    result = score_arena_categories(records, data.baselines, cfg.weight, cfg.n_bootstrap, cfg.seed)
    answers = [{"uid": q["uid"], "answer": g.answer, "tokens": g.n_tokens, "terminated": g.terminated}
               for q, g in zip(questions, gens)]
    return {"benchmark": "arena-hard-v2", "judge": judge.label, **result, "skipped": dict(data.skipped),
            "records": records, "answers": answers}


# arena-hard-auto: utils/judge_utils.py (OG_ARENA_HARD_PROMPT for hard prompts, coding and math; the
# creative-writing prompt drops the "generate your own answer" step) and config/arena-hard-v2.0.yaml.
_ARENA_HEAD = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
    "the user prompt displayed below. You will be given assistant A's answer and assistant B's answer. Your job is "
    "to evaluate which assistant's answer is better.\n\n")
_ARENA_TAIL = (
    "Then consider if the assistant's answers are helpful, relevant, and concise. Helpful means the "
    "answer correctly responds to the prompt or follows the instructions. Note when user prompt has any ambiguity or "
    "more than one interpretation, it is more helpful and appropriate to ask for clarifications or more information "
    "from the user than providing an answer based on assumptions. Relevant means all parts of the response closely "
    "connect or are appropriate to what is being asked. Concise means the response is clear and not verbose or "
    "excessive.\n\nThen consider the creativity and novelty of the assistant's answers when needed. Finally, "
    "identify any missing important information in the assistants' answers that would be beneficial to include "
    "when responding to the user prompt.\n\nAfter providing your explanation, you must output only one of the "
    "following choices as your final verdict with a label:\n\n1. Assistant A is significantly better: [[A>>B]]\n"
    "2. Assistant A is slightly better: [[A>B]]\n3. Tie, relatively the same: [[A=B]]\n4. Assistant B is slightly "
    "better: [[B>A]]\n5. Assistant B is significantly better: [[B>>A]]\n\nExample output: \"My final verdict is "
    "tie: [[A=B]]\".")
ARENA_SYSTEM_PROMPT = (
    _ARENA_HEAD + "Begin your evaluation by generating your own answer to the prompt. You must provide your answers "
    "before judging any answers.\n\nWhen evaluating the assistants' answers, compare both assistants' answers with "
    "your answer. You must identify and correct any mistakes or inaccurate information.\n\n" + _ARENA_TAIL)
ARENA_CREATIVE_SYSTEM_PROMPT = (
    _ARENA_HEAD + "When evaluating the assistants' answers, compare both assistants' answers. You must identify and "
    "correct any mistakes or inaccurate information.\n\n" + _ARENA_TAIL)
ARENA_PROMPT_TEMPLATE = ("<|User Prompt|>\n{QUESTION}\n\n<|The Start of Assistant A's Answer|>\n{ANSWER_A}\n"
                         "<|The End of Assistant A's Answer|>\n\n<|The Start of Assistant B's Answer|>\n{ANSWER_B}\n"
                         "<|The End of Assistant B's Answer|>")


def arena_system_prompt(category: str) -> str:
    """The official judge system prompt of an Arena-Hard v2 category (``JUDGE_SETTINGS``)."""
    return ARENA_CREATIVE_SYSTEM_PROMPT if category == "creative_writing" else ARENA_SYSTEM_PROMPT
