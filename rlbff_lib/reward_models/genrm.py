"""The generative principle reward model (GenRM) of RLBFF: reasoning, then "Final Judgement: Yes|No".

Format (reference §4): the conversation, the assistant response, then a message with role
``principle`` holding the principle, rendered with the chat template and the generation prompt
(like the scalar RM, :func:`rlbff_lib.reward_models.scalar.fit_conversation`, which passes
``enable_thinking=False``: Qwen3 writes its reasoning as the answer, after an empty think block).
The model writes its reasoning and ends with ``Final Judgement: Yes`` or ``Final Judgement: No``,
then end of sequence. Qwen's own template silently drops unknown roles: :func:`ensure_principle_role`
checks, and patches such a template so the principle is rendered.

Score (scoring and the GRPO reward share one reader, :func:`judgement_logprob_diffs`): at the
judgement token, i.e. the position right after the last ``Final Judgement:``, the model's
next-token distribution (temperature 1) gives ``d = log P(" Yes") − log P(" No")`` (nats).

- scoring: ``score = d``; −50 when no judgement is written or " Yes"/" No" is not among the
  top-20 log-probabilities there.
- GRPO reward with ground-truth label g: ``log P(g) − log P(not g)`` = ``d`` for Yes, ``−d`` for
  No; −50 in the same two cases, and floored at −50 (writing no judgement never beats writing
  one). Accuracy = share of rewards > 0, logged as ``accuracy``.

Training, two stages (either can be skipped, :class:`GenRMConfig` ``stages``):
1. ``sft`` warm start (TRL ``SFTTrainer``, loss on the completion only): completions are
   reasoning + ``"\\nFinal Judgement: X"``; in the smoke world the reasoning is written from the
   ground truth (:func:`attach_reasoning`, ``world.reasoning``), otherwise a generic sentence.
2. ``grpo`` (TRL ``GRPOTrainer``) with :class:`JudgementReward`. The reward needs the current
   policy's log-probabilities at the judgement token: TRL 1.16 hands a reward function only the
   texts and completion token ids (HF generation returns no log-probabilities), so the reward runs
   one extra no-grad forward pass of the trainer's model on prompt + completion up to the
   judgement, at temperature 1 (NVIDIA's NeMo-RL reads the inference engine's generation
   log-probabilities instead: the same quantity from another kernel, free but only for the
   sampled positions). All ranks run the same number of forward batches, so ZeRO-3 parameter
   gathering stays in lockstep.

Output folder of :func:`train_genrm`::

    output_dir/sft/{checkpoints,model,training_log.json}    stage 1 (resumable)
    output_dir/grpo/{checkpoints,model,training_log.json}   stage 2 (resumable)
    output_dir/training_log.json                            both records + the final model folder

Command line (one process, or several through :func:`rlbff_lib.training.launch.launch`)::

    python -m rlbff_lib.reward_models.genrm train --config JOB.json      # JOB: rlbff_lib.training.launch.TrainJob
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from rlbff_lib.training.launch import GRPOSettings, TrainConfig, TrainJob, job_cli, run_trainer
from rlbff_lib.core.progress import log, progress
from rlbff_lib.reward_models.prompt import fit_conversation

MARKER = "Final Judgement:"
PRINCIPLE_ROLE = "principle"
MISSING_REWARD = -50.0
TOP_LOGPROBS = 20
ANSWERS = ("Yes", "No")
_JUDGEMENT_RE = re.compile(r"Final Judgement:\s*(Yes|No)\b")
_PROBE = "PRINCIPLE-ROLE-PROBE"


# ------------------------------------------------------------------ format


def genrm_messages(context: Sequence[dict], response: str, principle: str) -> list[dict]:
    """Conversation + assistant response + ``principle`` message (the GenRM's chat)."""
    return [*context, {"role": "assistant", "content": response}, {"role": PRINCIPLE_ROLE, "content": principle}]


def _renders_principle(tokenizer) -> bool:
    msgs = genrm_messages([{"role": "user", "content": "u"}], "a", _PROBE)
    try:
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    except Exception:  # a template that raises on unknown roles
        return False
    return _PROBE in text


def ensure_principle_role(tokenizer) -> bool:
    """Make ``tokenizer``'s chat template render ``principle`` messages; True if it had to patch it.

    Qwen2.5/Qwen3 templates render only system/user/assistant/tool and drop anything else
    without a word. Their user branch renders ``message.role`` verbatim, so admitting
    ``principle`` there gives ``<|im_start|>principle\\n...<|im_end|>``. Raises ``ValueError`` when
    the template still drops the principle after that patch.
    """
    if _renders_principle(tokenizer):
        return False
    template = tokenizer.chat_template
    if not isinstance(template, str):
        raise ValueError("chat template: the tokenizer has no single chat template to patch for the principle role")
    patched = template
    for old in ('message.role == "user"', "message.role == 'user'", "message['role'] == 'user'",
                'message["role"] == "user"'):
        role = old.split("==")[0].strip()
        patched = patched.replace(old, f'{role} in ["user", "{PRINCIPLE_ROLE}"]')
    tokenizer.chat_template = patched
    if not _renders_principle(tokenizer):
        tokenizer.chat_template = template
        raise ValueError(f"chat template: drops the '{PRINCIPLE_ROLE}' role and could not be patched; "
                         "give the tokenizer a template that renders it")
    log(f"genrm: patched the chat template to render the '{PRINCIPLE_ROLE}' role")
    return True


def encode_genrm_prompt(tokenizer, context: Sequence[dict], response: str, principle: str,
                        max_length: int | None) -> tuple[list[int], bool]:
    """Token ids of the GenRM prompt (ending with the generation prompt), and whether it was cut.

    Over-long conversations lose their oldest turns first; the response and the principle
    message stay whole while they fit (see :func:`rlbff_lib.reward_models.scalar.fit_conversation`).
    """
    tail = [{"role": "assistant", "content": response}, {"role": PRINCIPLE_ROLE, "content": principle}]
    return fit_conversation(tokenizer, context, tail, max_length, add_generation_prompt=True)


def prompt_text(tokenizer, ids: Sequence[int]) -> str:
    """The prompt string whose ``tokenizer(text)`` gives back ``ids`` (what TRL's GRPO tokenizes).

    TRL tokenizes a string prompt with ``processing_class(text=...)``, special tokens added: a
    tokenizer that prepends BOS would double the template's own BOS, so that one is dropped here.
    """
    text = tokenizer.decode(list(ids), skip_special_tokens=False)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and tokenizer("")["input_ids"][:1] == [tokenizer.bos_token_id]:
        text = text[len(bos):]
    return text


def judgement_completion(reasoning: str, label: str) -> str:
    """The completion the GenRM is trained to write: reasoning, newline, ``Final Judgement: {label}``."""
    if label not in ANSWERS:
        raise ValueError(f"label: must be Yes or No, got {label!r}")
    return f"{reasoning.rstrip()}\n{MARKER} {label}"


def parse_judgement(text: str) -> str | None:
    """The last ``Final Judgement: Yes|No`` in ``text`` ("Yes" / "No"), or None when none is written."""
    found = _JUDGEMENT_RE.findall(text or "")
    return found[-1] if found else None


def judgement_position(tokenizer, completion_ids: Sequence[int]) -> int | None:
    """Index in ``completion_ids`` of the judgement token: the one right after the last ``Final Judgement:``.

    Returns ``j`` such that ``decode(completion_ids[:j])`` ends with the marker (``j`` may equal
    ``len(completion_ids)`` when generation stopped right after it), or None when no marker is
    written or the marker's last token also holds the following text. Binary search over
    prefix decodes: O(n log n) decoded tokens for a completion of n tokens.
    """
    ids = list(completion_ids)
    decode = lambda k: tokenizer.decode(ids[:k], skip_special_tokens=True)
    n = decode(len(ids)).count(MARKER)
    if n == 0:
        return None
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if decode(mid).count(MARKER) >= n:
            hi = mid
        else:
            lo = mid + 1
    return lo if decode(lo).endswith(MARKER) else None


# ------------------------------------------------------------------ warm-start data


def generic_reasoning(principle: str, label: str) -> str:
    """The fallback reasoning of an item without a checkable property: one short sentence."""
    verdict = "satisfies" if label == "Yes" else "does not satisfy"
    return f'Judged against the principle as stated, the response {verdict} the principle "{principle}".'


def attach_reasoning(items: Sequence[dict], truth: Sequence[dict]) -> tuple[list[dict], dict]:
    """Copies of RM ``items`` with ``sft_completion`` (reasoning + judgement) for the SFT warm start.

    Items whose ``property`` is a world property and whose ``record_id`` (else ``prompt_id``) has a truth row get the
    world's evidence-based reasoning (``world.reasoning`` on the response, with the truth row's
    ``prompt_info`` and the item's principle as phrasing) and the checker's verdict; the others
    get :func:`generic_reasoning` and their label. Returns (items, counts): ``world``, ``generic``,
    and ``label_disagrees`` (world items whose checker verdict differs from their label).
    """
    from rlbff_lib.synthetic.world import PROPERTIES, reasoning

    info = {t["id"]: t["prompt_info"] for t in truth}
    out, counts = [], {"world": 0, "generic": 0, "label_disagrees": 0}
    for it in items:
        if it["label"] not in ANSWERS:
            raise ValueError(f"item {it.get('item_id')}: label must be Yes or No, got {it['label']!r}")
        prop = it.get("property")
        record = it.get("record_id") if it.get("record_id") in info else it.get("prompt_id")
        if prop in PROPERTIES and record in info:
            text, holds = reasoning(prop, it["response"], info[record], it["principle"])
            verdict = "Yes" if holds else "No"
            counts["world"] += 1
            counts["label_disagrees"] += verdict != it["label"]
        else:
            text, verdict = generic_reasoning(it["principle"], it["label"]), it["label"]
            counts["generic"] += 1
        out.append({**it, "sft_completion": judgement_completion(text, verdict)})
    return out, counts


def build_sft_rows(items: Sequence[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """RM items → tokenized prompt–completion rows for ``SFTTrainer``, and the number of cut prompts.

    Row: ``input_ids`` [L] = prompt ids + completion ids + EOS; ``labels`` [L] = -100 on the
    prompt, the ids elsewhere (loss on the completion and EOS only). The completion is the
    item's ``sft_completion`` (see :func:`attach_reasoning`), else :func:`generic_reasoning` with
    its label. Prompts are cut from the left so that L <= ``max_length``.
    """
    eos = tokenizer.eos_token_id
    rows, cut = [], 0
    for it in items:
        if it["label"] not in ANSWERS:
            raise ValueError(f"item {it.get('item_id')}: label must be Yes or No, got {it['label']!r}")
        text = it.get("sft_completion") or judgement_completion(generic_reasoning(it["principle"], it["label"]),
                                                                it["label"])
        completion = tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
        budget = max_length - len(completion)
        if budget < 16:
            raise ValueError(f"max_length: {max_length} leaves {budget} prompt tokens for item "
                             f"{it.get('item_id')} (completion of {len(completion)} tokens)")
        prompt, truncated = encode_genrm_prompt(tokenizer, it["context"], it["response"], it["principle"], budget)
        cut += truncated
        rows.append({"input_ids": prompt + completion, "labels": [-100] * len(prompt) + completion})
    return rows, cut


# ------------------------------------------------------------------ reading the judgement


def judgement_logprob_diffs(model, tokenizer, seqs: Sequence[Sequence[int]], batch_size: int,
                            top_k: int = TOP_LOGPROBS) -> list[float]:
    """For each token sequence (prompt + completion up to the judgement token, excluded), the next
    token's ``log P(" Yes") − log P(" No")`` in nats at temperature 1; NaN when either is not among
    the ``top_k`` largest log-probabilities. Left-padded, length-sorted batches, one forward pass
    each with ``logits_to_keep=1``, in eval mode under ``torch.no_grad`` (not inference mode: the
    GRPO reward runs this on the model being trained, whose ZeRO-3 parameter gathering must not
    create inference tensors); the results come back in input order."""
    import torch

    from rlbff_lib.reward_models.scoring import left_pad, length_batches
    from rlbff_lib.models.tokenizer import answer_token_ids

    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    yes, no = answer_token_ids(tokenizer, leading_space=True)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = model.get_input_embeddings().weight.device
    out = [float("nan")] * len(seqs)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for idx in length_batches([len(s) for s in seqs], batch_size):
                ids, mask, pos = left_pad([seqs[i] for i in idx], pad_id, device)
                logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False,
                               logits_to_keep=1).logits[:, -1, :].float()
                lp = logits.log_softmax(-1)  # [B, V]
                top = lp.topk(min(top_k, lp.size(-1)), dim=-1).indices  # [B, k]
                inside = (top == yes).any(-1) & (top == no).any(-1)
                diff = torch.where(inside, lp[:, yes] - lp[:, no], torch.full_like(lp[:, yes], float("nan")))
                for i, v in zip(idx, diff.cpu().tolist()):
                    out[i] = v
    finally:
        model.train(was_training)
    return out


class JudgementReward:
    """The GRPO reward of the paper, as a TRL 1.16 reward function.

    TRL calls ``reward(prompts=..., completions=..., completion_ids=..., label=..., log_metric=...,
    **other dataset columns)`` with N completions (prompt strings, decoded completions,
    completion token ids without padding, the items' labels). Returns N floats: with label g,
    ``log P(g) − log P(not g)`` at the judgement token under the current policy, floored at
    ``missing_reward``; ``missing_reward`` when no judgement is written or " Yes"/" No" is not in
    the top ``top_k``. Set ``model`` to the trainer's model after building the trainer.
    Logs ``accuracy`` (share of rewards > 0) and ``judgement_missing`` (share without a readable judgement).
    """

    __name__ = "genrm_judgement"  # TRL names the reward metrics after it

    def __init__(self, tokenizer, missing_reward: float = MISSING_REWARD, top_k: int = TOP_LOGPROBS,
                 batch_size: int = 8, model=None):
        self.tokenizer, self.missing_reward, self.top_k, self.batch_size = tokenizer, missing_reward, top_k, batch_size
        self.model = model

    def __call__(self, prompts, completions, completion_ids, label, log_metric=None, **kwargs) -> list[float]:
        if self.model is None:
            raise RuntimeError("JudgementReward.model is not set: assign the trainer's model after building it")
        prompt_ids = self.tokenizer(text=list(prompts))["input_ids"]  # exactly what TRL generated from
        positions = [judgement_position(self.tokenizer, c) for c in completion_ids]
        # every completion gets a forward pass (the full sequence when it has no judgement), so that all
        # ranks of a distributed run make the same number of calls
        seqs = [list(p) + list(c[:j] if j is not None else c) for p, c, j in zip(prompt_ids, completion_ids, positions)]
        diffs = judgement_logprob_diffs(self.model, self.tokenizer, seqs, self.batch_size, self.top_k)
        missing = [j is None or math.isnan(d) for d, j in zip(diffs, positions)]
        rewards = [self.missing_reward if m else max(self.missing_reward, d if g == "Yes" else -d)
                   for d, m, g in zip(diffs, missing, label)]
        if log_metric is not None and rewards:
            log_metric("accuracy", sum(r > 0 for r in rewards) / len(rewards))
            log_metric("judgement_missing", sum(missing) / len(rewards))
        return rewards


# ------------------------------------------------------------------ scoring


@dataclass
class GenRMScoreResult:
    """GenRM scores of N inputs, in input order.

    scores: N floats, log P(" Yes") − log P(" No") at the judgement token (nats; > 0 means Yes),
    −50 when the judgement is missing. texts: the N generated completions (special tokens removed).
    judged: N flags, a readable judgement was found. truncated: N flags, the prompt was cut from the left.
    """

    scores: list[float]
    texts: list[str]
    judged: list[bool]
    truncated: list[bool] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return sum(not j for j in self.judged)

    @property
    def answers(self) -> list[str]:
        return ["Yes" if s > 0 else "No" for s in self.scores]


def generate_completions(model, tokenizer, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                         batch_size: int = 8) -> list[list[int]]:
    """Greedy completions (token ids, cut before the first end-of-sequence token) of ``prompts``.

    Length-sorted batches of ``batch_size``, left-padded; results in input order.
    """
    import torch

    from rlbff_lib.reward_models.scoring import left_pad, length_batches

    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    eos = model.generation_config.eos_token_id
    stop = sorted({tokenizer.eos_token_id, *([] if eos is None else [eos] if isinstance(eos, int) else eos)})
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = model.get_input_embeddings().weight.device
    out: list[list[int]] = [[] for _ in prompts]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            batches = length_batches([len(p) for p in prompts], batch_size)
            for idx in progress(batches, desc="genrm generate"):
                ids, mask, _ = left_pad([prompts[i] for i in idx], pad_id, device)
                gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                                     pad_token_id=pad_id, eos_token_id=stop, temperature=None, top_p=None, top_k=None)
                for i, row in zip(idx, gen[:, ids.size(1):].tolist()):
                    cut = next((k for k, t in enumerate(row) if t in stop), len(row))
                    out[i] = row[:cut]
    finally:
        model.train(was_training)
    return out


def genrm_score(conversations: Sequence[str | Sequence[dict]], responses: Sequence[str],
                principles: str | Sequence[str], model, tokenizer, max_new_tokens: int = 512, batch_size: int = 8,
                max_prompt_length: int | None = None, missing_score: float = MISSING_REWARD,
                top_k: int = TOP_LOGPROBS) -> GenRMScoreResult:
    """GenRM scores of ``responses`` (N) to ``conversations`` (N) under ``principles`` (one or N).

    Greedy generation of at most ``max_new_tokens`` tokens, then one forward pass on prompt +
    completion up to the judgement token; score = log P(" Yes") − log P(" No") there, or
    ``missing_score`` when no judgement is written or either answer is outside the top ``top_k``.
    Deterministic for a given model (greedy decoding, padding-independent positions). The
    tokenizer's chat template is patched in place if it drops the principle role
    (:func:`ensure_principle_role`).
    """
    from rlbff_lib.reward_models.scoring import as_messages, per_response

    principles = per_response(conversations, responses, principles)
    ensure_principle_role(tokenizer)
    encoded = [encode_genrm_prompt(tokenizer, as_messages(c), r, p, max_prompt_length)
               for c, r, p in zip(conversations, responses, principles)]
    prompts = [ids for ids, _ in encoded]
    completions = generate_completions(model, tokenizer, prompts, max_new_tokens, batch_size)
    positions = [judgement_position(tokenizer, c) for c in completions]
    found = [i for i, j in enumerate(positions) if j is not None]
    diffs = judgement_logprob_diffs(model, tokenizer, [prompts[i] + completions[i][:positions[i]] for i in found],
                                    batch_size, top_k)
    scores, judged = [missing_score] * len(responses), [False] * len(responses)
    for i, d in zip(found, diffs):
        if not math.isnan(d):
            scores[i], judged[i] = d, True
    texts = [tokenizer.decode(c, skip_special_tokens=True) for c in completions]
    return GenRMScoreResult(scores=scores, texts=texts, judged=judged, truncated=[t for _, t in encoded])


def evaluate_genrm(model, tokenizer, items: Sequence[dict], max_new_tokens: int, batch_size: int,
                   max_prompt_length: int | None) -> dict:
    """Accuracy of the GenRM on RM items: correct = judgement readable and (score > 0) == (label == Yes).

    Returns ``{"n", "accuracy", "missing_rate", "majority", "format_rate"}`` (shares in [0, 1];
    ``format_rate``: completions that contain ``Final Judgement: Yes|No`` as text).
    """
    if not items:
        raise ValueError("items: no items to evaluate")
    res = genrm_score([it["context"] for it in items], [it["response"] for it in items],
                      [it["principle"] for it in items], model, tokenizer, max_new_tokens, batch_size,
                      max_prompt_length)
    labels, n = [it["label"] for it in items], len(items)
    correct = sum(j and (s > 0) == (lab == "Yes") for s, j, lab in zip(res.scores, res.judged, labels))
    yes = labels.count("Yes") / n
    return {"n": n, "accuracy": correct / n, "missing_rate": res.missing / n, "majority": max(yes, 1 - yes),
            "format_rate": sum(parse_judgement(t) is not None for t in res.texts) / n}


# ------------------------------------------------------------------ configs


@dataclass
class GenRMSFTConfig(TrainConfig):
    """SFT warm start (fields of :class:`rlbff_lib.training.launch.TrainConfig`); ``max_length`` counts the
    prompt, the completion and EOS. Smoke defaults sized for the pipeline's pretrained 128-wide model
    (the tests' 32-wide model from scratch learns the format in 120 steps at 1.5e-2)."""

    learning_rate: float = 3e-3
    num_train_epochs: float = 2.0
    max_length: int = 1024


@dataclass
class GenRMGRPOConfig(GRPOSettings):
    """GRPO of the GenRM with TRL's ``GRPOTrainer`` (shared fields: :class:`rlbff_lib.training.launch.GRPOSettings`).

    Smoke defaults: 8 prompts × 4 completions per step, temperature 0.7, 60 steps. With these (and
    120 prompt / 56 completion tokens), GRPO took an SFT-warm-started 32-wide 2-layer Qwen3 (the
    tests' setup, world items on ``fenced_code``) from 0.81 to 0.90 held-out greedy accuracy.
    Paper template: LR 2e-6, 32 prompts × 16 generations, KL 0.01, clip 0.2 / 0.28.
    max_prompt_length: prompt tokens, cut from the left of the conversation.

    GenRM's own: missing_reward: reward without a readable judgement (−50). top_logprobs: " Yes"/" No"
    must be among these (20). reward_batch_size: sequences per reward forward pass.
    """

    learning_rate: float = 2e-4
    max_steps: int = 60
    num_generations: int = 4
    max_prompt_length: int = 1024
    max_completion_length: int = 96
    temperature: float = 0.7
    logging_steps: int = 1
    save_steps: int = 20
    missing_reward: float = MISSING_REWARD
    top_logprobs: int = TOP_LOGPROBS
    reward_batch_size: int = 8

    def __post_init__(self):
        super().__post_init__()
        if self.reward_batch_size < 1:
            raise ValueError(f"reward_batch_size: must be >= 1, got {self.reward_batch_size}")
        if self.missing_reward >= 0:
            raise ValueError(f"missing_reward: must be < 0, got {self.missing_reward}")
        if self.top_logprobs < 2:
            raise ValueError(f"top_logprobs: must be >= 2, got {self.top_logprobs}")

@dataclass
class GenRMConfig:
    """The GenRM training run: ``stages`` in order ("sft" warm start, then "grpo"), their configs,
    and evaluation on held-out items after each stage (greedy, ``eval_max_new_tokens`` tokens,
    ``eval_batch_size`` sequences per batch)."""

    sft: GenRMSFTConfig = field(default_factory=GenRMSFTConfig)
    grpo: GenRMGRPOConfig = field(default_factory=GenRMGRPOConfig)
    stages: list[str] = field(default_factory=lambda: ["sft", "grpo"])
    eval_max_new_tokens: int = 96
    eval_batch_size: int = 16

    def __post_init__(self):
        if isinstance(self.sft, dict):
            self.sft = GenRMSFTConfig(**self.sft)
        if isinstance(self.grpo, dict):
            self.grpo = GenRMGRPOConfig(**self.grpo)
        stages = list(self.stages)
        if not stages or any(s not in ("sft", "grpo") for s in stages) or stages != sorted(set(stages), reverse=True):
            raise ValueError(f"stages: must be a non-empty ordered subset of ['sft', 'grpo'], got {stages}")
        for name in ("eval_max_new_tokens", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")


# ------------------------------------------------------------------ training


def _evaluate_trainer(trainer, tokenizer, eval_items, cfg: GenRMConfig, max_prompt_length: int | None) -> dict | None:
    """Held-out metrics of the trainer's model, on the main process (None elsewhere, or under ZeRO-3)."""
    if not eval_items or not trainer.accelerator.is_main_process or trainer.is_deepspeed_enabled:
        return None
    model = trainer.accelerator.unwrap_model(trainer.model)
    return evaluate_genrm(model, tokenizer, eval_items, cfg.eval_max_new_tokens, cfg.eval_batch_size, max_prompt_length)


def train_sft(cfg: GenRMSFTConfig, model: str | Path, items: Sequence[dict], output_dir: str | Path,
              callbacks: list | None = None) -> tuple[dict, object, object]:
    """SFT warm start of the causal LM at ``model`` on ``items``; returns (record, trainer, tokenizer).

    Writes ``output_dir/{checkpoints,model,training_log.json}`` (resumes from the newest complete
    checkpoint). Call on every process of a distributed run.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from rlbff_lib.models.tokenizer import load_tokenizer

    output_dir = Path(output_dir)
    tokenizer = load_tokenizer(model)
    ensure_principle_role(tokenizer)
    rows, cut = build_sft_rows(items, tokenizer, cfg.max_length)
    trainer = SFTTrainer(model=str(model), args=SFTConfig(**cfg.trl_kwargs(output_dir / "checkpoints", has_eval=False)),
                         train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=callbacks)
    record = run_trainer(trainer, output_dir, "genrm_sft", {"n_train": len(rows), "train_truncated": cut})
    return record, trainer, tokenizer


def build_grpo_rows(items: Sequence[dict], tokenizer, max_prompt_length: int) -> tuple[list[dict], int]:
    """RM items → GRPO rows ``{"prompt": str, "label", "item_id"}``, and the number of cut prompts.

    ``prompt`` is the rendered GenRM prompt (generation prompt included) as text, at most
    ``max_prompt_length`` tokens: TRL tokenizes it back to the same ids (:func:`prompt_text`).
    """
    rows, cut = [], 0
    for k, it in enumerate(items):
        if it["label"] not in ANSWERS:
            raise ValueError(f"item {it.get('item_id')}: label must be Yes or No, got {it['label']!r}")
        ids, truncated = encode_genrm_prompt(tokenizer, it["context"], it["response"], it["principle"],
                                             max_prompt_length)
        cut += truncated
        rows.append({"prompt": prompt_text(tokenizer, ids), "label": it["label"],
                     "item_id": str(it.get("item_id", k))})
    return rows, cut


def train_grpo(cfg: GenRMGRPOConfig, model: str | Path, items: Sequence[dict], output_dir: str | Path,
               callbacks: list | None = None) -> tuple[dict, object, object]:
    """GRPO of the causal LM at ``model`` with :class:`JudgementReward`; returns (record, trainer, tokenizer).

    Writes ``output_dir/{checkpoints,model,training_log.json}``; the log's ``train`` curve holds,
    per logging step, ``loss``, ``reward`` (mean), ``reward_std``, ``accuracy``,
    ``judgement_missing``, ``kl``, ``completions/mean_length``, ... Call on every process.
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from rlbff_lib.models.tokenizer import load_tokenizer

    output_dir = Path(output_dir)
    tokenizer = load_tokenizer(model)
    ensure_principle_role(tokenizer)
    rows, cut = build_grpo_rows(items, tokenizer, cfg.max_prompt_length)
    reward = JudgementReward(tokenizer, cfg.missing_reward, cfg.top_logprobs, cfg.reward_batch_size)
    args = GRPOConfig(**cfg.trl_kwargs(output_dir / "checkpoints"))
    trainer = GRPOTrainer(model=str(model), reward_funcs=reward, args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer, callbacks=callbacks)
    reward.model = trainer.model  # the policy being trained (its plain forward; TRL's fused head is opt-in)
    record = run_trainer(trainer, output_dir, "genrm_grpo", {"n_train": len(rows), "train_truncated": cut})
    return record, trainer, tokenizer


def _finished(stage_dir: Path) -> dict | None:
    """The stage's training log when the stage completed (the log is written after the final model)."""
    try:
        record = json.loads((stage_dir / "training_log.json").read_text())
    except (OSError, ValueError):
        return None
    return record if (stage_dir / "model").is_dir() else None


def train_genrm(cfg: GenRMConfig, model: str | Path, items: Sequence[dict], output_dir: str | Path,
                eval_items: Sequence[dict] | None = None) -> dict:
    """Train the GenRM: the configured stages in order, each from the previous stage's model.

    A completed stage (its ``training_log.json`` present) is not run again; an interrupted one
    resumes from its newest complete checkpoint. With ``eval_items``, each stage's record gets
    ``extra.eval`` (:func:`evaluate_genrm`). Writes ``output_dir/training_log.json``
    ``{"stages": {name: record}, "model_dir": final model}``; returns it. Call on every process.
    """
    from accelerate import PartialState

    from rlbff_lib.core.io import write_json

    output_dir = Path(output_dir)
    current, stages = str(model), {}
    for stage in cfg.stages:
        stage_dir = output_dir / stage
        done = _finished(stage_dir)
        if done is not None:
            log(f"[genrm] stage {stage} already complete, using {stage_dir / 'model'}")
            stages[stage] = done
        else:
            train = train_sft if stage == "sft" else train_grpo
            record, trainer, tok = train(getattr(cfg, stage), current, items, stage_dir)
            metrics = _evaluate_trainer(trainer, tok, eval_items, cfg, cfg.grpo.max_prompt_length)
            if metrics is not None:
                record["extra"]["eval"] = metrics
                log(f"[genrm] {stage} eval: accuracy {metrics['accuracy']:.3f} (majority {metrics['majority']:.3f}), "
                    f"missing {metrics['missing_rate']:.3f}")
                write_json(stage_dir / "training_log.json", record)
            stages[stage] = record
        current = str(stage_dir / "model")
    summary = {"name": "genrm", "stages": stages, "model_dir": current}
    if PartialState().is_main_process:
        write_json(output_dir / "training_log.json", summary)
    return summary


def run_job(job: TrainJob) -> dict:
    """Run a :class:`~rlbff_lib.training.launch.TrainJob` whose files hold RM items (with ``sft_completion``
    from :func:`attach_reasoning` where available) and whose ``config`` is a :class:`GenRMConfig`."""
    from rlbff_lib.core.io import read_jsonl
    from rlbff_lib.core.params import build

    cfg = build(GenRMConfig, job.config, "genrm")
    eval_items = read_jsonl(job.eval_file) if job.eval_file else None
    return train_genrm(cfg, job.model, read_jsonl(job.train_file), job.output_dir, eval_items)


def main(argv: list[str] | None = None) -> int:
    return job_cli(argv, "rlbff_lib.reward_models.genrm", run_job)


if __name__ == "__main__":
    raise SystemExit(main())
