"""The policy: a chat model warm-started by SFT, its sampling, and its verifiable evaluation.

Smoke: the tiny Qwen3 of the ``assets`` stage (``models/assets/base_policy``) is fine-tuned with
TRL's ``SFTTrainer`` (conversational prompt–completion, loss on the completion only) on
synthetic world responses. Each training response draws every applicable property at
random (``property_rate``, 0.5), so the warm-started policy satisfies each property about
half the time: GRPO then has room to move it, and the world's checkers measure whether it did.
Paper scale: Qwen3-32B as released (thinking mode), no SFT (``sft_steps: 0``).

Generation (:func:`generate`): left-padded batches through ``model.generate``; the answer
judged by reward models and checkers is the *final* answer, the text after ``</think>``
when the policy thinks (:func:`split_thinking`).

Verifiable fulfilment (:func:`fulfilment`): per-property rate of ``world.check`` on the
policy's generations, plus response length in words and tokens (reward hacking by length
shows there), termination and language agreement (coherence).

Command line (one process, or several through :func:`rlbff_lib.training.launch.launch`)::

    python -m rlbff_lib.alignment.policy train --config JOB.json     # JOB: rlbff_lib.training.launch.TrainJob
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

from rlbff_lib.core.stats import welch_test, wilson_interval
from rlbff_lib.synthetic import world as W
from rlbff_lib.training.launch import TrainJob, job_cli, run_trainer
from rlbff_lib.training.lora import LoraSettings, lora_settings

THINK_START, THINK_END = "<think>", "</think>"


# ------------------------------------------------------------------ config


@dataclass
class PolicySFTConfig:
    """The policy warm start (SFT on synthetic world responses).

    name_or_path: the base causal LM (folder or hub name). Smoke: the ``assets`` stage's
        ``models/assets/base_policy``; paper scale: ``Qwen/Qwen3-32B``.
    sft_steps: optimizer steps of SFT; 0 uses ``name_or_path`` as the policy unchanged
        (paper scale: Qwen3-32B is already an instruction-following model).
    n_examples: synthetic prompt–response pairs (prompts from ``world.sample_policy_prompts``).
    domains: world domains of the prompts. max_turns: user turns per prompt.
    word_limit: the ``concise`` word limit written into each prompt's ``prompt_info``.
    property_rate: P(property holds) for each applicable property of a training response.
    fixed_properties: properties forced to a value in every response (smoke: ``{"concise": true}``
        keeps responses, hence generations, short and cheap; length hacking then shows as
        ``concise`` failing); the others follow ``property_rate``.
    data_seed: seed of the prompt stream and of the property draws.
    learning_rate, per_device_train_batch_size, gradient_accumulation_steps, warmup_ratio,
    lr_scheduler_type, weight_decay, max_grad_norm, logging_steps, save_steps, save_total_limit,
    gradient_checkpointing, seed, report_to, trl_args: as in :class:`rlbff_lib.training.launch.TrainConfig`
        (steps are optimizer steps, batch sizes count sequences; ``trl_args``: other ``trl.SFTConfig`` fields).
    lora: LoRA adapters instead of full weights (:class:`rlbff_lib.training.lora.LoraSettings`; off by default).
    max_length: longest prompt + response in tokens; longer examples are dropped (counted).
    """

    trl_kind: ClassVar[str] = "sft"
    trl_fixed: ClassVar[dict] = {"completion_only_loss": True}  # conversational prompt–completion rows

    name_or_path: str = "models/assets/base_policy"
    sft_steps: int = 150
    n_examples: int = 2000
    domains: list[str] = field(default_factory=lambda: ["general", "stem"])
    max_turns: int = 1
    word_limit: int = W.CONCISE_WORD_LIMIT
    property_rate: float = 0.5
    fixed_properties: dict[str, bool] = field(default_factory=lambda: {"concise": True})
    data_seed: int = 0
    learning_rate: float = 2e-3
    per_device_train_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    max_length: int = 512
    warmup_ratio: float = 0.05
    lr_scheduler_type: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    logging_steps: int = 25
    save_steps: int = 50
    save_total_limit: int = 2
    gradient_checkpointing: bool = False
    seed: int = 0
    report_to: Literal["none", "tensorboard", "wandb", "trackio"] = "none"
    trl_args: dict[str, Any] = field(default_factory=dict)
    lora: LoraSettings = field(default_factory=LoraSettings)

    def __post_init__(self):
        self.lora = lora_settings(self.lora)
        if not str(self.name_or_path).strip():
            raise ValueError("name_or_path: must name a base model folder or hub name")
        for name in ("sft_steps",):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.n_examples < 1:
            raise ValueError(f"n_examples: must be >= 1, got {self.n_examples}")
        if not self.domains:
            raise ValueError("domains: must name at least one domain")
        bad = [d for d in self.domains if d not in W.DOMAINS]
        if bad:
            raise ValueError(f"domains: unknown domain {bad[0]!r} (known: {', '.join(W.DOMAINS)})")
        if not 1 <= self.max_turns <= 5:
            raise ValueError(f"max_turns: must be in [1, 5], got {self.max_turns}")
        if not W.MIN_WORD_LIMIT <= self.word_limit <= W.MAX_WORD_LIMIT:
            raise ValueError(f"word_limit: must be in [{W.MIN_WORD_LIMIT}, {W.MAX_WORD_LIMIT}], got {self.word_limit}")
        if not 0.0 <= self.property_rate <= 1.0:
            raise ValueError(f"property_rate: must be in [0, 1], got {self.property_rate}")
        unknown = sorted(set(self.fixed_properties) - set(W.PROPERTIES))
        if unknown:
            raise ValueError(f"fixed_properties: unknown property {unknown[0]!r} (known: {', '.join(W.PROPERTIES)})")
        if self.sft_steps:
            from rlbff_lib.training.trl_config import check_fields

            check_fields(self)  # the optimisation fields (raises ValueError naming the field)

    @property
    def max_steps(self) -> int:
        """Optimizer steps of the SFT run (``sft_steps``, at least 1): TRL's ``max_steps``."""
        return max(1, self.sft_steps)


# ------------------------------------------------------------------ SFT data


def draw_values(domain: str, rate: float, rng: random.Random, fixed: dict[str, bool] | None = None) -> dict[str, bool]:
    """Property values for one response: each applicable property holds with P = ``rate``,
    except those in ``fixed`` (inapplicable fixed properties are ignored)."""
    values = {p: rng.random() < rate for p in W.DOMAIN_PROPERTIES[domain]}
    values.update({p: v for p, v in (fixed or {}).items() if p in values})
    return values


def sft_examples(cfg: PolicySFTConfig) -> list[dict]:
    """``cfg.n_examples`` synthetic examples ``{"id", "domain", "prompt_info", "context", "response", "values"}``.

    Prompts come from ``world.sample_policy_prompts`` (stream ``data_seed``); each response
    is rendered by ``world.render_response`` with properties from :func:`draw_values`, so
    ``values`` is what the checkers see in ``response``.
    """
    prompts = W.sample_policy_prompts(cfg.n_examples, cfg.data_seed, cfg.domains, cfg.max_turns, cfg.word_limit)
    out = []
    for p in prompts:
        rng = random.Random(f"rlbff-policy-sft:{cfg.data_seed}:{p['id']}")
        values = draw_values(p["domain"], cfg.property_rate, rng, cfg.fixed_properties)
        response = W.render_response(p["domain"], p["prompt_info"], values, rng)
        out.append({**p, "response": response, "values": values})
    return out


def sft_rows(examples: Sequence[dict]) -> list[dict]:
    """Conversational prompt–completion rows for ``SFTTrainer`` (loss on the completion only)."""
    return [{"prompt": list(e["context"]), "completion": [{"role": "assistant", "content": e["response"]}]}
            for e in examples]


def _fits(tokenizer, row: dict, max_length: int) -> bool:
    text = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= max_length


# ------------------------------------------------------------------ SFT training


def train_policy_sft(cfg: PolicySFTConfig, output_dir: str | Path, callbacks: list | None = None) -> dict:
    """Warm-start the policy; returns the training log (``model_dir`` = the policy to use next).

    ``sft_steps == 0``: nothing is trained, ``model_dir`` is ``cfg.name_or_path``.
    Otherwise writes ``output_dir/model`` (safetensors + tokenizer, atomically),
    ``output_dir/checkpoints`` (resumed after an interruption) and ``output_dir/training_log.json``
    (loss in nats per completion token; ``extra.config`` = the config). A run already finished
    with the same config (:func:`rlbff_lib.training.runs.finished_run`) is returned as is (``reused``).
    Call on every process of a distributed run.
    """
    from dataclasses import asdict

    from rlbff_lib.training.runs import finished_run

    if cfg.sft_steps == 0:
        return {"name": "policy_sft", "skipped": True, "model_dir": str(cfg.name_or_path), "train": [], "eval": [],
                "extra": {"reason": "sft_steps = 0: the base model is the policy"}}
    done = finished_run(output_dir, asdict(cfg))
    if done is not None:
        return {**done, "reused": True}
    from datasets import Dataset

    from rlbff_lib.models.tokenizer import load_tokenizer
    from rlbff_lib.training.launch import quiet_libraries
    from rlbff_lib.training.sft import LabelPositionsSFTTrainer
    from rlbff_lib.training.trl_config import trl_config

    quiet_libraries()
    output_dir = Path(output_dir)
    tokenizer = load_tokenizer(cfg.name_or_path)
    tokenizer.padding_side = "left"
    rows = sft_rows(sft_examples(cfg))
    kept = [r for r in rows if _fits(tokenizer, r, cfg.max_length)]
    if not kept:
        raise ValueError(f"max_length: every one of {len(rows)} examples is longer than {cfg.max_length} tokens")
    args = trl_config(cfg, output_dir / "checkpoints")
    trainer = LabelPositionsSFTTrainer(model=str(cfg.name_or_path), args=args, train_dataset=Dataset.from_list(kept),
                                       processing_class=tokenizer, callbacks=callbacks,
                                       peft_config=cfg.lora.peft_config())
    extra = {"n_examples": len(rows), "n_dropped_too_long": len(rows) - len(kept), "config": asdict(cfg)}
    return run_trainer(trainer, output_dir, "policy_sft", extra)


def run_job(job: TrainJob) -> dict:
    """A :class:`~rlbff_lib.training.launch.TrainJob` for SFT: ``config`` holds :class:`PolicySFTConfig`
    fields; ``model`` overrides ``name_or_path``; the data is synthetic (``train_file`` unused, "")."""
    from rlbff_lib.core.params import build

    cfg = build(PolicySFTConfig, {**job.config, "name_or_path": job.model}, "policy_sft")
    return train_policy_sft(cfg, job.output_dir)


# ------------------------------------------------------------------ generation


@dataclass
class Generation:
    """One sampled completion.

    prompt_index: index of its conversation in the input. text: the whole completion,
    special tokens removed. thinking: the text before ``</think>`` ("" without thinking).
    answer: the final answer (after ``</think>``), what judges and checkers see.
    n_tokens: completion tokens up to and including EOS. terminated: EOS was produced
    within ``max_new_tokens``. prompt_truncated: the prompt was cut from the left.
    """

    prompt_index: int
    text: str
    thinking: str
    answer: str
    n_tokens: int
    terminated: bool
    prompt_truncated: bool = False


def final_answer(text: str) -> str:
    """The text after the last ``</think>``, stripped; the whole text when there is no thinking;
    "" when thinking was opened (``<think>``) but never closed (the answer was never written)."""
    if THINK_END in text:
        return text.rsplit(THINK_END, 1)[-1].strip()
    return "" if THINK_START in text else text.strip()


def split_thinking(ids: Sequence[int], tokenizer) -> tuple[str, str]:
    """(thinking, answer) of completion token ids, cut at the last ``</think>`` token.

    Works on ids because ``</think>`` may be a special token that decoding drops; a tokenizer
    without such a single token falls back to the text. Thinking that was opened but never
    closed (a completion cut by the token budget) leaves the answer empty.
    """
    ids = list(ids)
    start_id, end_id = (_single_token_id(tokenizer, t) for t in (THINK_START, THINK_END))
    if end_id is not None and end_id in ids:
        cut = len(ids) - 1 - ids[::-1].index(end_id)
        thinking = tokenizer.decode(ids[:cut], skip_special_tokens=True)
        answer = tokenizer.decode(ids[cut + 1:], skip_special_tokens=True)
        return thinking.replace(THINK_START, "").strip(), answer.strip()
    if start_id is not None and start_id in ids:
        return tokenizer.decode(ids, skip_special_tokens=True).replace(THINK_START, "").strip(), ""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if THINK_END in text:
        head, tail = text.rsplit(THINK_END, 1)
        return head.replace(THINK_START, "").strip(), tail.strip()
    if THINK_START in text:
        return text.replace(THINK_START, "").strip(), ""
    return "", text.strip()


def _single_token_id(tokenizer, token: str) -> int | None:
    """The id of ``token`` when the tokenizer has it as one token, else None."""
    tid = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(tid, int) or tid == tokenizer.unk_token_id:
        return None
    return tid


def encode_prompt(tokenizer, conversation: Sequence[dict], chat_template_kwargs: dict | None = None,
                  max_prompt_tokens: int | None = None) -> tuple[list[int], bool]:
    """Token ids of ``conversation`` + the generation prompt, cut from the left to
    ``max_prompt_tokens``: (ids, truncated)."""
    text = tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True,
                                         **(chat_template_kwargs or {}))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
        return ids[-max_prompt_tokens:], True
    return ids, False


def generate(model, tokenizer, conversations: Sequence[Sequence[dict]], max_new_tokens: int = 256,
             temperature: float = 0.0, top_p: float = 1.0, num_samples: int = 1, batch_size: int = 16,
             seed: int = 0, chat_template_kwargs: dict | None = None,
             max_prompt_tokens: int | None = None, top_k: int = 0) -> list[Generation]:
    """Sample ``num_samples`` completions per conversation (N) → N × num_samples generations,
    ordered by conversation then sample.

    temperature 0 is greedy decoding (then ``num_samples`` must be 1); otherwise sampling with
    ``top_p`` and ``top_k`` (0: off, as GRPO samples; the model's own generation defaults are
    not used). Batches of
    ``batch_size`` sequences, sorted by prompt length and left-padded; ``seed`` seeds torch
    before each batch, so a call is reproducible. Runs under ``torch.inference_mode``.
    """
    import torch
    from transformers import GenerationConfig

    from rlbff_lib.models.batching import left_pad

    if temperature == 0 and num_samples != 1:
        raise ValueError(f"num_samples: greedy decoding gives one sample per prompt, got {num_samples}")
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError(f"max_new_tokens/batch_size: must be >= 1, got {max_new_tokens}/{batch_size}")
    encoded = [encode_prompt(tokenizer, c, chat_template_kwargs, max_prompt_tokens) for c in conversations]
    jobs = [(i, s) for i in range(len(encoded)) for s in range(num_samples)]
    order = sorted(range(len(jobs)), key=lambda j: -len(encoded[jobs[j][0]][0]))
    eos = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    sampling = temperature > 0
    gen_cfg = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=sampling,
                               temperature=temperature if sampling else None, top_p=top_p if sampling else None,
                               top_k=top_k if sampling else None, pad_token_id=pad_id, eos_token_id=eos)
    device = model.get_input_embeddings().weight.device
    out: list[Generation | None] = [None] * len(jobs)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for b, start in enumerate(range(0, len(order), batch_size)):
                idx = order[start:start + batch_size]
                ids, mask, _ = left_pad([encoded[jobs[j][0]][0] for j in idx], pad_id, device)
                torch.manual_seed(seed * 100_003 + b)
                seqs = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_cfg)
                for j, row in zip(idx, seqs[:, ids.shape[1]:].tolist()):
                    i = jobs[j][0]
                    out[j] = _to_generation(i, row, tokenizer, eos, encoded[i][1])
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]


def _eos_ids(model, tokenizer) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.insert(0, tokenizer.eos_token_id)
    return eos


def _to_generation(index: int, row: list[int], tokenizer, eos: list[int], truncated: bool) -> Generation:
    stop = next((k for k, t in enumerate(row) if t in eos), None)
    ids = row if stop is None else row[:stop]
    thinking, answer = split_thinking(ids, tokenizer)
    return Generation(prompt_index=index, text=tokenizer.decode(ids, skip_special_tokens=True),
                      thinking=thinking, answer=answer, n_tokens=len(ids) + (stop is not None),
                      terminated=stop is not None, prompt_truncated=truncated)


# ------------------------------------------------------------------ verifiable fulfilment


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def fulfilment(policy, tokenizer, prompts: Sequence[dict], properties: Sequence[str],
               trained: Sequence[str] = (), temperature: float = 1.0, num_samples: int = 1,
               max_new_tokens: int = 256, batch_size: int = 32, seed: int = 0,
               chat_template_kwargs: dict | None = None, generations: Sequence[Generation] | None = None) -> dict:
    """Checker-measured fulfilment of ``properties`` by ``policy`` on world ``prompts``.

    prompts: ``{"context", "domain", "prompt_info"}`` (``world.sample_policy_prompts``).
    A property counts only on prompts of a domain it applies to. Generations are sampled
    (``temperature`` > 0, ``num_samples`` per prompt) or greedy (``temperature`` 0), or
    passed in (``generations``, as :func:`generate` returns them).

    Returns ``rates`` (property → share of final answers the checker accepts), ``counts``
    (property → responses judged), ``rates_ci`` (property → 95% Wilson ``[lower, upper]`` of the rate
    over its ``counts`` answers, None when none), ``trained``/``held_out`` (mean rate over the properties in /
    not in ``trained``, NaN when empty), ``mean_words`` (whitespace words of the final answer),
    ``mean_prose_words`` (words outside code, what ``concise`` counts), ``mean_tokens``
    (completion tokens incl. EOS and thinking), ``terminated`` (share ending in EOS),
    ``language_ok`` (share whose prose language is the prompt's), ``n_responses``.
    """
    unknown = [p for p in properties if p not in W.PROPERTIES]
    if unknown:
        raise ValueError(f"properties: unknown property {unknown[0]!r}")
    sampled = generations is None
    if sampled:
        generations = generate(policy, tokenizer, [p["context"] for p in prompts], max_new_tokens=max_new_tokens,
                               temperature=temperature, num_samples=num_samples, batch_size=batch_size, seed=seed,
                               chat_template_kwargs=chat_template_kwargs)
    hits: dict[str, list[bool]] = {p: [] for p in properties}
    lang_ok = []
    for g in generations:
        prompt = prompts[g.prompt_index]
        info = prompt["prompt_info"]
        for p in properties:
            if prompt["domain"] in W.PROPERTIES[p].domains:
                hits[p].append(W.check(p, g.answer, info))
        lang_ok.append(W.lang_id(g.answer) == info.get("lang", "en"))
    rates = {p: _mean(v) for p, v in hits.items()}
    trained_set = set(trained)
    return {
        "rates": rates,
        "counts": {p: len(v) for p, v in hits.items()},
        "rates_ci": {p: list(wilson_interval(sum(v), len(v))) if v else None for p, v in hits.items()},
        "trained": _mean([r for p, r in rates.items() if p in trained_set and hits[p]]),
        "held_out": _mean([r for p, r in rates.items() if p not in trained_set and hits[p]]),
        "mean_words": _mean([len(g.answer.split()) for g in generations]),
        "mean_prose_words": _mean([W.prose_words(g.answer) for g in generations]),
        "mean_tokens": _mean([g.n_tokens for g in generations]),
        "terminated": _mean([g.terminated for g in generations]),
        "language_ok": _mean(lang_ok),
        "n_responses": len(generations),
        "temperature": temperature if sampled else None,
        "num_samples": num_samples if sampled else None,
    }


def fulfilment_gain(baseline: Sequence[dict], runs: Sequence[dict], key: str = "trained") -> dict:
    """Seed-level comparison of :func:`fulfilment` results: ``runs`` (one per training seed)
    against ``baseline`` (the SFT policy, one or more sampling seeds), on ``key`` ("trained",
    "held_out", "mean_tokens", ...).

    Returns ``baseline_mean``, ``mean``, ``gain`` (mean − baseline_mean), ``seed_std`` (sample
    std over ``runs``; NaN with one run), ``baseline_std``, ``n_seeds``, the gain's 95% interval
    ``ci`` and two-sided ``p_value`` by :func:`rlbff_lib.core.stats.welch_test` (runs against
    baseline; None with one run), ``test`` (which test ran) and ``significant``: the gain is above
    noise, i.e. its interval lies above 0 (False with fewer than two runs).
    """
    import statistics

    if not baseline or not runs:
        raise ValueError("baseline/runs: need at least one fulfilment result each")
    base = [float(r[key]) for r in baseline]
    vals = [float(r[key]) for r in runs]
    std = statistics.stdev(vals) if len(vals) > 1 else float("nan")
    test = welch_test(vals, base)
    return {"key": key, "baseline_mean": statistics.fmean(base), "mean": statistics.fmean(vals), "gain": test["mean"],
            "seed_std": std, "baseline_std": statistics.stdev(base) if len(base) > 1 else float("nan"),
            "n_seeds": len(vals), "ci": test["ci"], "p_value": test["p_value"], "df": test["df"], "test": test["test"],
            "significant": test["ci"] is not None and test["ci"][0] > 0}


def data_fulfilment(examples: Sequence[dict], properties: Sequence[str]) -> dict[str, float]:
    """The property rates of the SFT data itself (what an ideal imitator would show)."""
    out = {}
    for p in properties:
        vals = [e["values"][p] for e in examples if p in e["values"]]
        out[p] = _mean(vals)
    return out


def main(argv: list[str] | None = None) -> int:
    return job_cli(argv, "rlbff_lib.alignment.policy", run_job)


if __name__ == "__main__":
    raise SystemExit(main())
