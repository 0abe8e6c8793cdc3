"""Alignment with RLBFF: GRPO of the policy against a principle reward (reference §6).

Every training prompt carries one or more principles in a dataset column the policy never
sees: the prompt is only the conversation. The reward of a completion is the principle
reward of its FINAL answer (the text after ``</think>``), the mean over the prompt's
principles, minus ``length_penalty`` × completion tokens. Reward backends
(:class:`RewardConfig` ``backend``):

- ``scalar``: the in-process scalar principle RM, logit(Yes) − logit(No)
  (:func:`rlbff_lib.reward_models.scorers.load_scorer`, like every in-process RM here);
- ``genrm``: the generative principle RM, log P(" Yes") − log P(" No") at its judgement
  (:func:`rlbff_lib.reward_models.genrm.genrm_score`);
- ``judge``: a remote OpenAI-compatible server (:class:`rlbff_lib.core.http.ChatClient`) asked the RLBFF Yes/No
  question (any chat model) or sent the GenRM's chat (the paper's GenRM served by vLLM); the
  score is log P(Yes) − log P(No) from the ``top_logprobs`` of the answer token, or ±1 from the
  written answer;
- ``bt``: the Bradley–Terry RM (principle ignored): the paper's baseline row;
- ``checker``: the synthetic world's checkers (1 when the property holds, else 0): a
  verifiable reward (RLVR), an oracle that exists only in the smoke world.

Training data (:func:`principle_prompts`): prompts from ``world.sample_policy_prompts``, each
with principle phrasings of properties in ``train_properties`` that apply to its domain; the
other properties are held out to measure transfer (:func:`pick_train_properties` picks the
properties the reward model discriminates best). At paper scale a JSONL of rows
``{"prompt": [messages], "principles": [...]}`` can be given instead.

TRL 1.16 specifics this module relies on (read in ``trl/trainer/grpo_*.py``): a reward function
gets ``prompts``, ``completions`` (conversational: ``[{"role": "assistant", "content"}]``, decoded
with ``skip_special_tokens=True``, so a special ``</think>`` vanishes: the final answer is cut on
``completion_ids``), ``completion_ids``, every other dataset column (``remove_unused_columns=False``),
``trainer_state``, ``log_extra`` and ``log_metric``; ``None`` rewards are ignored. GRPOConfig's own
defaults differ from TrainingArguments (bf16 on, gradient checkpointing on, LR 1e-6, ``beta`` 0,
``loss_type`` "dapo"): every one is set explicitly (:mod:`rlbff_lib.training.trl_config`). No prompt truncation (prompts
longer than ``max_prompt_length`` are dropped) and ``kl`` is logged only when ``beta`` > 0.

Run (:func:`train_grpo`): TRL's ``GRPOTrainer`` (HF ``generate`` on CPU; vLLM ``server`` or
``colocate`` with the ZeRO-3 accelerate configs at scale); resumes from the newest complete
checkpoint; the final model is saved atomically; ``curves.json`` holds reward, KL, completion
length, the RM score and the checker-measured fulfilment per logging step. Output folder::

    output_dir/checkpoints/checkpoint-<step>/   resume points
    output_dir/model/                           final policy (safetensors + tokenizer)
    output_dir/curves.json                      one point per logging step
    output_dir/training_log.json                run facts + curves

Command line (through :func:`rlbff_lib.training.launch.launch` for ``accelerate launch``)::

    python -m rlbff_lib.alignment.grpo train --config JOB.json   # JOB: rlbff_lib.training.launch.TrainJob; model = policy,
                                                            # train_file = rows JSONL or "", config = AlignmentConfig
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from rlbff_lib.synthetic import world as W
from rlbff_lib.training.launch import GRPOSettings, TrainJob, job_cli
from rlbff_lib.alignment.policy import final_answer, split_thinking
from rlbff_lib.core.http import ChatClient, EndpointConfig, RequestFailed
from rlbff_lib.core.progress import log, quiet_mode

BACKENDS = ("scalar", "genrm", "judge", "bt", "checker")
PARAMS = "alignment.grpo.reward"  # where params.yaml sets RewardConfig (named in error messages)
REWARD_LABELS = {
    "scalar": "principle RM (scalar, RLBFF)",
    "genrm": "principle GenRM (RLBFF)",
    "judge": "principle judge (remote endpoint)",
    "bt": "Bradley-Terry RM (baseline, principle ignored)",
    "checker": "world checkers (verifiable oracle, RLVR; smoke only)",
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ------------------------------------------------------------------ config


@dataclass
class RewardConfig:
    """Where the GRPO reward comes from (units: nats for RM scores, reward units per token for the penalty).

    backend: ``scalar`` | ``genrm`` | ``judge`` | ``bt`` | ``checker`` (module docstring).
    model_path: the reward model folder (scalar, genrm, bt).
    batch_size: sequences per scoring batch. max_length: the RM's window per input, counted as every
        scorer counts it (:mod:`rlbff_lib.reward_models.scorers`: the prompt plus the scalar RM's answer
        token / the GenRM's ``genrm_max_new_tokens``); conversations are cut from the left.
    length_penalty: subtracted per completion token (0: off); a guard against length hacking.
    device_map: ``None`` (one device) or ``"auto"`` (spread a large RM over the visible GPUs).
    genrm_max_new_tokens: reasoning tokens the GenRM may write per judgement.
    judge_base_url / judge_model: the OpenAI-compatible endpoint (``.../v1``) and served model.
    judge_api_key_env: the NAME of the environment variable holding the key ("" for none).
    judge_mode: ``logprobs`` (log P(Yes) − log P(No) from the ``top_logprobs`` of the answer token;
        the written answer when the server returns none) or ``answer`` (+1 Yes, −1 No).
    judge_prompt: ``rlbff`` (the scalar RM's one-token Yes/No question, any chat model) or
        ``genrm`` (the GenRM's chat with a ``principle`` message; it reasons, then writes
        ``Final Judgement: Yes|No``; up to ``genrm_max_new_tokens`` tokens): the paper's reward
        served by vLLM/SGLang (:func:`judge_principle_score`).
    judge_top_logprobs: alternatives asked per token (OpenAI allows up to 20).
    judge_timeout_s, judge_max_retries, judge_concurrency: per request timeout, retries of
        429/5xx/timeouts (exponential backoff, ``Retry-After`` honoured), requests in flight; a
        401/403/404 stops the run, and so does a failed share of judge calls above 2%
        (:class:`rlbff_lib.core.http.ChatClient`).
    score_url: the ``scalar`` / ``bt`` backend's RM served once by :mod:`rlbff_lib.reward_models.serve`
        (e.g. ``http://127.0.0.1:8002``) instead of loaded on every training rank (null: in process).
    """

    backend: Literal["scalar", "genrm", "judge", "bt", "checker"] = "scalar"
    model_path: str = "models/reward_models/scalar"
    batch_size: int = 32
    max_length: int = 1024
    length_penalty: float = 0.0
    device_map: str | None = None
    genrm_max_new_tokens: int = 512
    judge_base_url: str = "http://127.0.0.1:8000/v1"
    judge_model: str = ""
    judge_api_key_env: str = ""
    judge_mode: Literal["logprobs", "answer"] = "logprobs"
    judge_prompt: Literal["rlbff", "genrm"] = "rlbff"
    judge_top_logprobs: int = 20
    judge_timeout_s: float = 60.0
    judge_max_retries: int = 4
    judge_concurrency: int = 8
    score_url: str | None = None

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: must be one of {list(BACKENDS)}, got {self.backend!r}")
        if self.backend in ("scalar", "genrm", "bt") and not str(self.model_path).strip():
            raise ValueError(f"model_path: the {self.backend} backend needs a reward model folder")
        for name in ("batch_size", "max_length", "genrm_max_new_tokens", "judge_concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.backend == "genrm" and self.max_length - self.genrm_max_new_tokens < 16:
            raise ValueError(f"max_length: {self.max_length} minus genrm_max_new_tokens {self.genrm_max_new_tokens} "
                             "leaves under 16 prompt tokens for the GenRM")
        if self.score_url is not None and not re.match(r"^https?://[^\s/]+", self.score_url):
            raise ValueError(f"score_url: must start with http:// or https://, got {self.score_url!r}")
        if self.length_penalty < 0 or not math.isfinite(self.length_penalty):
            raise ValueError(f"length_penalty: must be a finite number >= 0, got {self.length_penalty}")
        if self.device_map not in (None, "auto"):
            raise ValueError(f"device_map: must be null or 'auto', got {self.device_map!r}")
        if self.judge_mode not in ("logprobs", "answer"):
            raise ValueError(f"judge_mode: must be 'logprobs' or 'answer', got {self.judge_mode!r}")
        if self.judge_prompt not in ("rlbff", "genrm"):
            raise ValueError(f"judge_prompt: must be 'rlbff' or 'genrm', got {self.judge_prompt!r}")
        if not 1 <= self.judge_top_logprobs <= 20:
            raise ValueError(f"judge_top_logprobs: must be in [1, 20], got {self.judge_top_logprobs}")
        if self.judge_timeout_s <= 0 or self.judge_max_retries < 0:
            raise ValueError(f"judge_timeout_s/judge_max_retries: must be > 0 / >= 0, got "
                             f"{self.judge_timeout_s}/{self.judge_max_retries}")
        if self.judge_api_key_env and not _ENV_NAME.match(self.judge_api_key_env):
            raise ValueError("judge_api_key_env: must be the NAME of an environment variable, not the key itself")
        if self.backend == "judge":
            if not re.match(r"^https?://[^\s/]+", self.judge_base_url or ""):
                raise ValueError(f"judge_base_url: must start with http:// or https://, got {self.judge_base_url!r}")
            if not self.judge_model.strip():
                raise ValueError("judge_model: the judge backend needs the served model's name")

    def endpoint(self) -> EndpointConfig:
        """The ``judge`` backend's endpoint (:class:`rlbff_lib.core.http.EndpointConfig`)."""
        return EndpointConfig(self.judge_base_url, self.judge_model, self.judge_api_key_env, self.judge_timeout_s,
                              self.judge_max_retries, concurrency=self.judge_concurrency,
                              service="reward judge endpoint", url_param=f"{PARAMS}.judge_base_url",
                              model_param=f"{PARAMS}.judge_model", key_param=f"{PARAMS}.judge_api_key_env")

    def preflight(self) -> None:
        """``judge`` backend: fail in seconds, naming the parameter, when the endpoint is unreachable,
        does not serve ``judge_model`` or (``judge_mode`` logprobs) returns no log-probabilities."""
        if self.backend == "judge":
            self.endpoint().check(need_logprobs=self.judge_mode == "logprobs", top_logprobs=self.judge_top_logprobs)

    @property
    def label(self) -> str:
        """A human-readable name of the reward, for tables and figures."""
        if self.backend == "judge":
            return f"principle judge ({self.judge_model}, {self.judge_prompt} prompt, remote endpoint)"
        return REWARD_LABELS[self.backend]


def _default_train_properties() -> list[str]:
    """Smoke: principles the pipeline's scalar RM judges well (its per-property validation accuracy in
    ``outputs/details/reward_models.json``). Trained on principles it judges poorly, GRPO learned long answers
    the RM over-rewards: reward hacking of a weak RM (README, "Status")."""
    return ["followup_question", "concise"]


@dataclass
class AlignmentConfig(GRPOSettings):
    """GRPO of the policy with a principle reward (GRPO fields: :class:`rlbff_lib.training.launch.GRPOSettings`;
    units: optimizer steps, tokens, completions).

    reward: where the reward comes from (:class:`RewardConfig`).
    n_prompts: training prompts drawn from ``world.sample_policy_prompts`` (stream
    ``prompt_seed``, kept apart from the SFT stream); domains, max_turns, word_limit: as there.
    train_properties: properties whose principles reward the policy; every other property
    applicable to ``domains`` is held out (:meth:`held_out_properties`).
    principles_per_prompt: principles attached to each prompt (their scores are averaged).
    principle_texts: property → the principle strings to use for it (e.g. those the reward model
    was trained on); a property not listed uses the world's phrasings.
    chat_template_kwargs: e.g. ``{"enable_thinking": true}`` for Qwen3's thinking mode.
    max_prompt_length: longer prompts are dropped (TRL 1.16 does not truncate prompts).
    temperature ~1 so that the properties vary within a group.
    """

    reward: RewardConfig = field(default_factory=RewardConfig)
    n_prompts: int = 512
    prompt_seed: int = 1
    domains: list[str] = field(default_factory=lambda: ["general", "stem"])
    max_turns: int = 1
    word_limit: int = W.CONCISE_WORD_LIMIT
    train_properties: list[str] = field(default_factory=_default_train_properties)
    principles_per_prompt: int = 1
    principle_texts: dict[str, list[str]] = field(default_factory=dict)
    chat_template_kwargs: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.reward, dict):
            self.reward = RewardConfig(**self.reward)
        if self.max_steps < 1:  # a run finished at max_steps is recognised by its last checkpoint
            raise ValueError(f"max_steps: must be >= 1, got {self.max_steps}")
        if self.n_prompts < 1:
            raise ValueError(f"n_prompts: must be >= 1, got {self.n_prompts}")
        bad = [d for d in self.domains if d not in W.DOMAINS]
        if not self.domains or bad:
            raise ValueError(f"domains: must be a non-empty subset of {list(W.DOMAINS)}, got {self.domains}")
        if not 1 <= self.max_turns <= 5:
            raise ValueError(f"max_turns: must be in [1, 5], got {self.max_turns}")
        if not W.MIN_WORD_LIMIT <= self.word_limit <= W.MAX_WORD_LIMIT:
            raise ValueError(f"word_limit: must be in [{W.MIN_WORD_LIMIT}, {W.MAX_WORD_LIMIT}], got {self.word_limit}")
        unknown = [p for p in self.train_properties if p not in W.PROPERTIES]
        if not self.train_properties or unknown:
            raise ValueError(f"train_properties: must name known properties, got {self.train_properties}")
        idle = [p for p in self.train_properties if not set(W.PROPERTIES[p].domains) & set(self.domains)]
        if idle:
            raise ValueError(f"train_properties: {idle[0]!r} applies to none of the domains {self.domains}")
        if self.principles_per_prompt < 1:
            raise ValueError(f"principles_per_prompt: must be >= 1, got {self.principles_per_prompt}")
        for prop, texts in self.principle_texts.items():
            if prop not in W.PROPERTIES or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
                raise ValueError(f"principle_texts: {prop!r} must be a known property with non-empty strings")

    def held_out_properties(self) -> list[str]:
        """Properties that apply to ``domains`` but are not trained: transfer is measured on them."""
        return [p for p, prop in W.PROPERTIES.items()
                if p not in self.train_properties and set(prop.domains) & set(self.domains)]

    def phrasings(self, prop: str) -> tuple[str, ...]:
        """The principle strings of property ``prop`` (``principle_texts`` first, else the world's)."""
        return tuple(self.principle_texts.get(prop) or W.PROPERTIES[prop].phrasings)


# ------------------------------------------------------------------ training prompts


def principle_prompts(cfg: AlignmentConfig) -> list[dict]:
    """Training rows: ``{"id", "prompt": [messages], "principles": [phrasings], "properties": [names],
    "domain", "prompt_info": JSON string}``.

    Each prompt gets ``principles_per_prompt`` distinct trained properties that apply to its
    domain (fewer when fewer apply; prompts with none are skipped), each as a random phrasing
    (:meth:`AlignmentConfig.phrasings`).
    ``prompt_info`` is JSON text because its keys differ per domain (Arrow would pad them with nulls).
    """
    prompts = W.sample_policy_prompts(cfg.n_prompts, cfg.prompt_seed, cfg.domains, cfg.max_turns, cfg.word_limit)
    rows = []
    for p in prompts:
        rng = random.Random(f"rlbff-alignment:{cfg.prompt_seed}:{p['id']}")
        usable = [q for q in cfg.train_properties if p["domain"] in W.PROPERTIES[q].domains]
        if not usable:
            continue
        props = rng.sample(usable, min(cfg.principles_per_prompt, len(usable)))
        rows.append({"id": p["id"], "prompt": p["context"], "principles": [rng.choice(cfg.phrasings(q)) for q in props],
                     "properties": props, "domain": p["domain"], "prompt_info": json.dumps(p["prompt_info"])})
    return rows


def pick_train_properties(accuracy: dict[str, float], domains: Sequence[str], k: int = 3,
                          min_accuracy: float = 0.6) -> list[str]:
    """The ``k`` properties the reward model judges best (validation ``accuracy`` per property,
    0–1), among those that apply to ``domains`` and reach ``min_accuracy``; best first.

    GRPO can only raise what its reward discriminates: training on a property the RM cannot
    tell apart would measure the RM, not RLBFF. The rest stay held out (transfer).
    """
    usable = [(a, p) for p, a in accuracy.items()
              if p in W.PROPERTIES and set(W.PROPERTIES[p].domains) & set(domains) and a >= min_accuracy]
    if not usable:
        raise ValueError(f"accuracy: no property applicable to {list(domains)} reaches {min_accuracy}")
    return [p for _, p in sorted(usable, key=lambda t: (-t[0], t[1]))[:k]]


def validate_rows(rows: Sequence[dict], where: str = "rows") -> list[dict]:
    """Check external training rows (``prompt`` as chat messages or ``context``; ``principles`` a
    non-empty list of strings) and normalise them to the :func:`principle_prompts` layout."""
    out = []
    for i, r in enumerate(rows):
        prompt = r.get("prompt", r.get("context"))
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        if not isinstance(prompt, list) or not prompt or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in prompt):
            raise ValueError(f"{where}[{i}]: prompt: must be chat messages with string role and content")
        principles = r.get("principles")
        if isinstance(principles, str):
            principles = [principles]
        if not isinstance(principles, list) or not principles or not all(isinstance(x, str) and x.strip()
                                                                         for x in principles):
            raise ValueError(f"{where}[{i}]: principles: must be a non-empty list of strings")
        info = r.get("prompt_info", "{}")
        out.append({"id": str(r.get("id", i)), "prompt": prompt, "principles": principles,
                    "properties": list(r.get("properties") or []), "domain": str(r.get("domain", "")),
                    "prompt_info": info if isinstance(info, str) else json.dumps(info)})
    return out


# ------------------------------------------------------------------ remote judge


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def yes_no_from_logprobs(top: Sequence[dict]) -> float | None:
    """log P(Yes) − log P(No) from one token's alternatives (case and surrounding spaces ignored;
    variants summed). A side missing from the list gets the smallest listed log-probability
    (an upper bound on its true value); None when neither side is listed."""
    yes = [t["logprob"] for t in top if t["token"].strip().lower() == "yes"]
    no = [t["logprob"] for t in top if t["token"].strip().lower() == "no"]
    if not yes and not no:
        return None
    floor = min(t["logprob"] for t in top)
    return (_logsumexp(yes) if yes else floor) - (_logsumexp(no) if no else floor)


def yes_no_from_text(text: str | None) -> float | None:
    """+1 when the answer starts with Yes, −1 with No (case-insensitive), else None."""
    m = re.match(r"\W*(yes|no)\b", text or "", re.I)
    return None if m is None else (1.0 if m.group(1).lower() == "yes" else -1.0)


def judge_principle_score(client: ChatClient, context: Sequence[dict], response: str, principle: str,
                          mode: str = "logprobs", top_logprobs: int = 20, prompt: str = "rlbff",
                          max_new_tokens: int = 512) -> float | None:
    """Ask the endpoint whether ``response`` satisfies ``principle``; None if unusable.

    prompt ``rlbff``: the scalar RM's question (one extra user turn, "Only answer Yes or No."),
    one token; score = log P(Yes) − log P(No) from its ``top_logprobs`` (``mode`` logprobs) or ±1
    from the written answer. prompt ``genrm``: the GenRM's chat (a ``principle`` message), which
    reasons then writes ``Final Judgement: Yes|No``; score = log P(" Yes") − log P(" No") at the
    generated token before EOS, 0.0 when "Final Judgement:" is missing or either answer is not among
    the alternatives (NVIDIA's RLHF environment, :func:`rlbff_lib.reward_models.genrm.rlhf_judge_reward`).
    """
    if prompt == "genrm":
        from rlbff_lib.reward_models.genrm import MISSING_REWARD, genrm_messages, parse_judgement, rlhf_judge_reward

        try:
            out = client.complete(genrm_messages(list(context), response, principle), max_tokens=max_new_tokens,
                                  temperature=0.0, top_logprobs=top_logprobs if mode == "logprobs" else None)
        except RequestFailed as e:
            log(f"judge: request failed: {e}")
            return None
        if mode == "logprobs" and out["tokens"]:
            return rlhf_judge_reward(out["content"], out["tokens"], out["finish_reason"])
        label = parse_judgement(out["content"] or "")
        return MISSING_REWARD if label is None else (1.0 if label == "Yes" else -1.0)
    from rlbff_lib.reward_models.prompt import rm_messages

    messages = rm_messages(list(context), response, principle)
    try:
        out = client.complete(messages, max_tokens=1 if mode == "logprobs" else 8, temperature=0.0,
                              top_logprobs=top_logprobs if mode == "logprobs" else None)
    except RequestFailed as e:
        log(f"judge: request failed: {e}")
        return None
    if mode == "logprobs" and out["top_logprobs"]:
        score = yes_no_from_logprobs(out["top_logprobs"])
        if score is not None:
            return score
    return yes_no_from_text(out["content"])


# ------------------------------------------------------------------ the reward


class PrincipleReward:
    """The RLBFF reward as a TRL 1.16 reward function.

    TRL calls ``reward(prompts=[conversations], completions=[[{"role": "assistant", "content"}]],
    completion_ids=[ids], trainer_state=..., log_extra=..., log_metric=..., **dataset columns)``
    with N completions; the columns used are ``principles`` (list of str per row) and, when
    present, ``properties`` + ``prompt_info`` (JSON), for the checker backend and for logging the
    checker-measured fulfilment. Returns N floats (None where every principle failed to score):
    mean principle score of the final answer − ``length_penalty`` × len(completion_ids).

    Scorers load lazily from ``cfg.model_path``; tests may inject ``model``/``tokenizer`` or ``client``.
    Metrics logged per call: ``principle_score`` (mean, before the penalty), ``length_penalty``,
    ``completion_tokens``, and ``fulfilment`` (checker share of the rows' properties).
    """

    __name__ = "principle_reward"  # TRL names the reward metrics after it

    def __init__(self, cfg: RewardConfig, policy_tokenizer=None, model=None, tokenizer=None,
                 client: ChatClient | None = None):
        self.cfg, self.policy_tokenizer = cfg, policy_tokenizer
        self.model, self.tokenizer, self.client = model, tokenizer, client
        self.scorer = None  # the in-process RM (scalar, genrm, bt) as a reward_models.scorers.Scorer

    # -- scorer loading
    def _load(self) -> None:
        if self.cfg.backend in ("checker",) or (self.model is not None and self.tokenizer is not None):
            return
        if self.cfg.backend == "judge":
            if self.client is None:
                self.cfg.preflight()  # seconds: reachable, serving judge_model, logprobs when read
                self.client = ChatClient(self.cfg.endpoint())
            return
        if self.cfg.score_url and self.cfg.backend in ("scalar", "bt"):  # served once, not loaded on every rank
            if self.scorer is None:
                from rlbff_lib.reward_models.serve import ServedScorer

                self.scorer = ServedScorer(self.cfg.score_url)
            return
        from rlbff_lib.reward_models.scorers import load_scorer

        c = self.cfg
        self.scorer = load_scorer(c.backend, c.model_path, c.max_length, c.batch_size, c.genrm_max_new_tokens,
                                  c.device_map)
        self.model, self.tokenizer = self.scorer.model, self.scorer.tokenizer

    def rm_scorer(self):
        """The scalar / genrm / bt reward model as a :class:`~rlbff_lib.reward_models.scorers.Scorer`
        (``max_length`` = its window per input, as every scorer counts it)."""
        if self.scorer is None:
            from rlbff_lib.reward_models.scorers import Scorer

            c = self.cfg
            self.scorer = Scorer(c.backend, self.model, self.tokenizer, c.max_length, c.batch_size,
                                 c.genrm_max_new_tokens)
        return self.scorer

    # -- the answer the reward judges
    def answers(self, completions: Sequence, completion_ids: Sequence[Sequence[int]] | None) -> list[str]:
        """Final answers: cut at ``</think>`` on token ids when the policy tokenizer is known, else on text."""
        if completion_ids is not None and self.policy_tokenizer is not None:
            return [split_thinking(ids, self.policy_tokenizer)[1] for ids in completion_ids]
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        return [final_answer(t) for t in texts]

    def principle_scores(self, conversations: Sequence[Sequence[dict]], answers: Sequence[str],
                         principles: Sequence[Sequence[str]], properties: Sequence[Sequence[str]] | None = None,
                         infos: Sequence[dict] | None = None) -> list[float | None]:
        """Mean score over each row's principles (None where none could be scored)."""
        self._load()
        n = len(answers)
        if self.cfg.backend == "checker":
            if properties is None or infos is None:
                raise ValueError("properties: the checker backend needs the rows' properties and prompt_info")
            return [sum(W.check(p, a, info) for p in props) / len(props) if props else None
                    for a, props, info in zip(answers, properties, infos)]
        if self.cfg.backend == "bt":
            return list(self.rm_scorer()(conversations, answers).scores)
        flat = [(i, p) for i in range(n) for p in principles[i]]
        convs = [conversations[i] for i, _ in flat]
        resps = [answers[i] for i, _ in flat]
        prins = [p for _, p in flat]
        if self.cfg.backend in ("scalar", "genrm"):
            scores = self.rm_scorer()(convs, resps, prins).scores
        else:
            c = self.cfg
            scores = self.client.map(lambda k: judge_principle_score(
                self.client, convs[k], resps[k], prins[k], c.judge_mode, c.judge_top_logprobs, c.judge_prompt,
                c.genrm_max_new_tokens), list(range(len(flat))))
        per_row: list[list[float]] = [[] for _ in range(n)]
        for (i, _), s in zip(flat, scores):
            if s is not None and not math.isnan(s):
                per_row[i].append(float(s))
        return [sum(v) / len(v) if v else None for v in per_row]

    def __call__(self, prompts, completions, completion_ids=None, principles=None, properties=None,
                 prompt_info=None, log_metric=None, **kwargs) -> list[float | None]:
        n = len(completions)
        if principles is None and self.cfg.backend not in ("bt", "checker"):
            raise ValueError("principles: the dataset needs a 'principles' column (list of principle strings)")
        principles = [[p] if isinstance(p, str) else list(p) for p in (principles or [[]] * n)]
        conversations = [[{"role": "user", "content": p}] if isinstance(p, str) else list(p) for p in prompts]
        answers = self.answers(completions, completion_ids)
        infos = [json.loads(x) if isinstance(x, str) else (x or {}) for x in prompt_info] if prompt_info else None
        props = [list(p or []) for p in properties] if properties is not None else None
        raw = self.principle_scores(conversations, answers, principles, props, infos)
        lengths = [len(ids) for ids in completion_ids] if completion_ids is not None else [0] * n
        penalty = [self.cfg.length_penalty * k for k in lengths]
        rewards = [None if r is None else r - pen for r, pen in zip(raw, penalty)]
        if log_metric is not None and n:
            scored = [r for r in raw if r is not None]
            if scored:
                log_metric("principle_score", sum(scored) / len(scored))
            log_metric("length_penalty", sum(penalty) / n)
            log_metric("completion_tokens", sum(lengths) / n)
            if props is not None and infos is not None:
                checks = [W.check(p, a, info) for a, ps, info in zip(answers, props, infos) for p in ps]
                if checks:
                    log_metric("fulfilment", sum(checks) / len(checks))
        return rewards


# ------------------------------------------------------------------ training


CURVE_KEYS = {"reward": "reward", "reward_std": "reward_std", "kl": "kl", "loss": "loss", "entropy": "entropy",
              "completion_length": "completions/mean_length", "principle_score": "principle_score",
              "length_penalty": "length_penalty", "fulfilment": "fulfilment", "learning_rate": "learning_rate",
              "clipped_ratio": "completions/clipped_ratio"}


def curves_from_history(history: Sequence[dict]) -> list[dict]:
    """Trainer ``log_history`` → one point per logging step: ``step`` + :data:`CURVE_KEYS`
    (None where a metric was not logged, e.g. ``kl`` when beta = 0)."""
    points = []
    for rec in history:
        if "reward" not in rec:
            continue
        point = {"step": rec["step"]}
        for name, key in CURVE_KEYS.items():
            v = rec.get(key)
            point[name] = float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None
        points.append(point)
    return points


def _line_callback(name: str):
    from transformers import TrainerCallback

    class GRPOLineCallback(TrainerCallback):
        """One line per logging step: reward, KL, completion length, RM score, fulfilment."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "reward" not in logs:
                return
            parts = []
            for label, key in (("reward", "reward"), ("kl", "kl"), ("len", "completions/mean_length"),
                               ("score", "principle_score"), ("fulfil", "fulfilment"), ("loss", "loss")):
                v = logs.get(key)
                if isinstance(v, (int, float)):
                    parts.append(f"{label} {v:.4g}")
            log(f"[{name}] step {state.global_step}/{state.max_steps} " + " ".join(parts))

    return GRPOLineCallback()


def build_trainer(cfg: AlignmentConfig, policy: str | Path, rows: Sequence[dict], output_dir: str | Path,
                  reward=None, callbacks: list | None = None):
    """A ``GRPOTrainer`` for ``policy`` on ``rows`` (prompts over ``max_prompt_length`` dropped);
    returns (trainer, tokenizer, n_dropped). ``reward`` defaults to :class:`PrincipleReward` of ``cfg.reward``."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from rlbff_lib.alignment.policy import encode_prompt
    from rlbff_lib.models.tokenizer import load_tokenizer
    from rlbff_lib.training.trl_config import trl_config

    tokenizer = load_tokenizer(policy)
    tokenizer.padding_side = "left"
    kept = [r for r in rows if len(encode_prompt(tokenizer, r["prompt"], cfg.chat_template_kwargs)[0])
            <= cfg.max_prompt_length]
    if not kept:
        raise ValueError(f"max_prompt_length: all {len(rows)} prompts are longer than {cfg.max_prompt_length} tokens")
    reward = reward if reward is not None else PrincipleReward(cfg.reward, policy_tokenizer=tokenizer)
    args = trl_config(cfg, Path(output_dir) / "checkpoints")
    trainer = GRPOTrainer(model=str(policy), reward_funcs=reward, args=args, train_dataset=Dataset.from_list(kept),
                          processing_class=tokenizer, callbacks=callbacks, peft_config=cfg.lora.peft_config())
    return trainer, tokenizer, len(rows) - len(kept)


def run_config(cfg: AlignmentConfig, policy: str | Path, rows: Sequence[dict] | None) -> dict:
    """The config a GRPO run records in its ``training_log.json`` and a rerun must match to reuse it
    (:func:`rlbff_lib.training.runs.finished_run`): ``cfg``, the policy and the hash of explicit ``rows``."""
    from dataclasses import asdict

    from rlbff_lib.core.io import stable_hash

    return {**asdict(cfg), "policy": str(policy), "rows": None if rows is None else stable_hash(list(rows))}


def train_grpo(cfg: AlignmentConfig, policy: str | Path, output_dir: str | Path, rows: Sequence[dict] | None = None,
               reward=None, callbacks: list | None = None) -> dict:
    """GRPO of the causal LM at ``policy``; returns the run record (also ``output_dir/training_log.json``).

    rows: training rows (default :func:`principle_prompts` of ``cfg``). Resumes from the newest
    complete checkpoint under ``output_dir/checkpoints`` (incomplete ones are deleted); writes
    ``output_dir/model`` atomically and ``output_dir/curves.json``. Call on every process.
    Record: ``curves``, ``reward`` (backend + label), ``train_properties``,
    ``held_out_properties``, ``n_rows``, ``n_dropped_too_long``, ``global_step``, ``resumed_from``,
    ``skipped_checkpoints``, ``model_dir``, ``seconds`` (the whole call), ``started_at`` / ``wall_s`` /
    ``timed_steps`` (training and final save: :func:`rlbff_lib.training.launch.train_timer`), ``torch_threads``,
    ``config`` (:func:`run_config`). A run already
    finished with the same config, policy and rows is returned as is (``reused``); one whose last checkpoint
    is already at ``max_steps`` is loaded from it and saved, not trained one step further.
    """
    import torch
    from transformers.trainer_callback import PrinterCallback

    from rlbff_lib.core.io import write_json
    from rlbff_lib.training.launch import prepare_resume, quiet_libraries, save_final, train_timer
    from rlbff_lib.training.runs import finished_run

    start = time.time()
    output_dir = Path(output_dir)
    config = run_config(cfg, policy, rows)
    done = finished_run(output_dir, config)
    if done is not None:
        return {**done, "reused": True}
    rows = validate_rows(rows, "rows") if rows is not None else principle_prompts(cfg)
    quiet_libraries()
    trainer, _, dropped = build_trainer(cfg, policy, rows, output_dir, reward, callbacks)
    if quiet_mode():
        trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_line_callback("grpo"))
    acc = trainer.accelerator
    resume, bad = prepare_resume(trainer, "grpo")
    timer = train_timer()
    if resume is not None and _step_of(resume) >= cfg.max_steps:
        # finished before the final save: load it (a resumed Trainer would train one more step)
        from transformers import TrainerState

        trainer._load_from_checkpoint(resume)
        trainer.state = TrainerState.load_from_json(str(Path(resume) / "trainer_state.json"))
    else:
        trainer.train(resume_from_checkpoint=resume)
    save_final(trainer, output_dir / "model")
    timing = timer(trainer.state.global_step, resume)
    curves = curves_from_history(trainer.state.log_history)
    record = {
        "name": "grpo", "reward": {"backend": cfg.reward.backend, "label": cfg.reward.label,
                                   "length_penalty": cfg.reward.length_penalty},
        "train_properties": list(cfg.train_properties), "held_out_properties": cfg.held_out_properties(),
        "curves": curves, "n_rows": len(rows) - dropped, "n_dropped_too_long": dropped,
        "global_step": trainer.state.global_step, "max_steps": trainer.state.max_steps,
        "world_size": acc.num_processes, "torch_threads": torch.get_num_threads(), "resumed_from": resume,
        "skipped_checkpoints": [{"folder": f, "reason": r} for f, r in bad], **timing,
        "model_dir": str(output_dir / "model"), "seconds": time.time() - start, "seed": cfg.seed,
        "config": config,
    }
    if acc.is_main_process:
        write_json(output_dir / "curves.json", curves)
        write_json(output_dir / "training_log.json", record)
    acc.wait_for_everyone()
    return record


def _step_of(checkpoint: str | Path) -> int:
    return int(Path(checkpoint).name.rsplit("-", 1)[-1])


def run_job(job: TrainJob) -> dict:
    """A :class:`~rlbff_lib.training.launch.TrainJob`: ``model`` = the policy, ``train_file`` = rows JSONL
    ("" builds :func:`principle_prompts`), ``config`` = :class:`AlignmentConfig` fields."""
    from rlbff_lib.core.io import read_jsonl
    from rlbff_lib.core.params import build

    cfg = build(AlignmentConfig, job.config, "alignment")
    rows = read_jsonl(job.train_file) if job.train_file else None
    return train_grpo(cfg, job.model, job.output_dir, rows)


def launch_grpo(cfg: AlignmentConfig, policy: str | Path, output_dir: str | Path, rows: Sequence[dict] | None = None,
                accelerate_config: str = "cpu.yaml", num_processes: int | None = None,
                env: dict[str, str] | None = None, prefix: str = "") -> dict:
    """Run :func:`train_grpo` as an ``accelerate launch`` subprocess, unless the run in ``output_dir`` already
    finished with this config, policy and rows (:func:`rlbff_lib.training.runs.launch_or_reuse`); returns its
    training log.

    Writes ``output_dir/job.json`` (a :class:`~rlbff_lib.training.launch.TrainJob`) and, with ``rows``,
    ``output_dir/rows.jsonl``; accelerate_config: a file under ``configs/accelerate/`` (``cpu.yaml``,
    ``multi_gpu_zero3.yaml``, ...). env: extra environment for the child (e.g. ``{"OMP_NUM_THREADS":
    "1"}`` when several runs share a few CPU cores). The child's output is forwarded line by line,
    after ``prefix``.
    """
    from dataclasses import asdict

    from rlbff_lib.core.io import write_jsonl
    from rlbff_lib.training.runs import launch_or_reuse

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    train_file = ""
    if rows is not None:
        train_file = str(output_dir / "rows.jsonl")
        write_jsonl(train_file, rows)
    job = TrainJob(model=str(policy), train_file=train_file, output_dir=str(output_dir), config=asdict(cfg))
    return launch_or_reuse("rlbff_lib.alignment.grpo", job, run_config(cfg, policy, rows), accelerate_config,
                           num_processes, env, prefix, name="grpo")


def main(argv: list[str] | None = None) -> int:
    return job_cli(argv, "rlbff_lib.alignment.grpo", run_job)


if __name__ == "__main__":
    raise SystemExit(main())
