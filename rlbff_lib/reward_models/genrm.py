"""The generative principle reward model (GenRM) of RLBFF: it reasons, then ends with "Final Judgement: Yes|No".

One judgement token, read the way NVIDIA's code reads it, in training, scoring and serving alike.

Format (reference §4): the conversation, the assistant response, then a message with role
``principle`` holding the principle, rendered with the chat template and the generation prompt.
Qwen's own template silently drops unknown roles: :func:`ensure_principle_role` checks, and
patches such a template so the principle is rendered. Thinking mode is ONE parameter,
``GenRMConfig.enable_thinking``: :func:`prepare_tokenizer` pins it into the chat template
(``{%- set enable_thinking = ... %}``), and the template is saved with the trained model, so
scoring (:func:`genrm_score`), ``rm_eval`` and the judge server (``vllm serve`` of the model
folder, or :mod:`rlbff_lib.reward_models.genrm_server`) render exactly what training rendered.

The judgement token (NVIDIA NeMo-RL, branch ``jiaqiz/nemo-posttraining-principle-rm`` at commit
0ba5d6de6eb7e995be2e43571e7b48632fd09969: ``nemo_rl/models/generation/vllm.py``
``_get_yes_no_logprobs_for_sequences`` and ``nemo_rl/environments/principle_genrm_environment.py``):
the LAST generated token before end of sequence (NeMo-RL re-runs ``sequence[:-2]`` and reads the
next-token distribution, temperature 1, top-20 log-probabilities). With
``d = log P(" Yes") − log P(" No")`` there (nats; leading spaces, as NeMo-RL's token ids):

- GRPO reward with label g (:class:`JudgementReward`, ``PrincipleGenrmVerifyWorker.calculate_rewards``):
  ``d`` for Yes, ``−d`` for No; −50 when " Yes" or " No" is not among the top-20 there. No
  "Final Judgement:" text is required: any completion ending in a token whose distribution
  ranks both answers gives a graded reward, so GRPO from a base model gets reward variance as
  soon as some completions end that way. Accuracy = share of rewards > 0 (NeMo-RL's
  ``principle_genrm_accuracy``). Ours: a completion cut at ``max_completion_length`` (no EOS)
  has no token before EOS and scores −50 (NeMo-RL reads its second-to-last token anyway).
- scoring (the model card: "the token before end of sequence; a missing token is clipped to
  −50"): ``score = d`` of the greedy completion; −50 when it has no EOS or either answer is
  outside the top-20.
- as the alignment judge (NeMo-RL ``principle_genrm_for_rlhf_environment.py``,
  :func:`rlhf_judge_reward`): ``d`` at the generated token before EOS, 0.0 (not −50) when
  "Final Judgement:" is not in the text or either answer is outside the top-20.

Training, two stages (either can be skipped, :class:`GenRMConfig` ``stages``):
1. ``sft`` warm start (TRL ``SFTTrainer``, loss on the completion only): completions are
   reasoning + ``"\\nFinal Judgement: X"`` (inside / after a think block per ``enable_thinking``).
   The reasoning comes from what a real run has: the extraction's evidence quote for the item's
   principle (``data/principles/candidates.jsonl``, :func:`attach_reasoning`), else one generic
   sentence; never from the synthetic world's ground truth.
2. ``grpo`` (TRL ``GRPOTrainer``) with :class:`JudgementReward`. TRL 1.16 hands a reward function
   only texts and completion token ids (HF generation returns no log-probabilities), so the reward
   runs one extra no-grad forward pass of the trainer's model on prompt + completion up to the
   judgement token, at temperature 1: the same extra pass NeMo-RL makes with vLLM. All ranks run
   the same number of forward batches, so ZeRO-3 parameter gathering stays in lockstep.

Output folder of :func:`train_genrm`::

    output_dir/sft/{checkpoints,model,training_log.json}    stage 1 (resumable)
    output_dir/grpo/{checkpoints,model,training_log.json}   stage 2 (resumable)
    output_dir/training_log.json                            both records + the final model folder

Command line (one process, or several through :func:`rlbff_lib.training.launch.launch`)::

    python -m rlbff_lib.reward_models.genrm train --config JOB.json      # JOB: rlbff_lib.training.launch.TrainJob
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from rlbff_lib.training.launch import GRPOSettings, TrainConfig, TrainJob, job_cli, run_trainer
from rlbff_lib.core.progress import log, progress
from rlbff_lib.reward_models.prompt import fit_conversation

MARKER = "Final Judgement:"
PRINCIPLE_ROLE = "principle"
MISSING_REWARD = -50.0
RLHF_MISSING_REWARD = 0.0
TOP_LOGPROBS = 20
ANSWERS = ("Yes", "No")
_JUDGEMENT_RE = re.compile(r"Final Judgement:\s*(Yes|No)\b")
_PROBE = "PRINCIPLE-ROLE-PROBE"
_PIN_RE = re.compile(r"^\{%- set enable_thinking = (true|false) %\}\n")


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


def pin_thinking(tokenizer, enable_thinking: bool) -> None:
    """Fix the template's ``enable_thinking`` (replacing an earlier pin): whatever a caller passes,
    the rendered prompt is the trained one. Qwen3 templates read the flag (off: an empty think
    block after the generation prompt; on: the model opens its own ``<think>``); others ignore it."""
    template = tokenizer.chat_template
    if not isinstance(template, str):
        raise ValueError("chat template: the tokenizer has no single chat template to pin enable_thinking in")
    tokenizer.chat_template = (f"{{%- set enable_thinking = {'true' if enable_thinking else 'false'} %}}\n"
                               + _PIN_RE.sub("", template))


def pinned_thinking(tokenizer) -> bool | None:
    """The ``enable_thinking`` pinned in the template (None when nothing is pinned)."""
    m = _PIN_RE.match(tokenizer.chat_template or "") if isinstance(tokenizer.chat_template, str) else None
    return None if m is None else m.group(1) == "true"


def prepare_tokenizer(name_or_path: str | Path, enable_thinking: bool):
    """The GenRM's tokenizer: loaded, the principle role rendered, thinking mode pinned."""
    from rlbff_lib.models.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(name_or_path)
    ensure_principle_role(tokenizer)
    pin_thinking(tokenizer, enable_thinking)
    return tokenizer


def encode_genrm_prompt(tokenizer, context: Sequence[dict], response: str, principle: str,
                        max_length: int | None) -> tuple[list[int], bool]:
    """Token ids of the GenRM prompt (ending with the generation prompt), and whether it was cut.

    Over-long conversations lose their oldest turns first; the response and the principle
    message stay whole while they fit (see :func:`rlbff_lib.reward_models.prompt.fit_conversation`).
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


def judgement_completion(reasoning: str, label: str, enable_thinking: bool = False) -> str:
    """The completion the GenRM is trained to write: reasoning, then ``Final Judgement: {label}``.

    Thinking mode: ``<think>\\n{reasoning}\\n</think>\\n\\nFinal Judgement: {label}`` (Qwen3's layout of
    an answer after its thoughts); otherwise ``{reasoning}\\nFinal Judgement: {label}`` (after the
    template's empty think block).
    """
    if label not in ANSWERS:
        raise ValueError(f"label: must be Yes or No, got {label!r}")
    if enable_thinking:
        return f"<think>\n{reasoning.strip()}\n</think>\n\n{MARKER} {label}"
    return f"{reasoning.rstrip()}\n{MARKER} {label}"


def parse_judgement(text: str) -> str | None:
    """The last ``Final Judgement: Yes|No`` in ``text`` ("Yes" / "No"), or None when none is written."""
    found = _JUDGEMENT_RE.findall(text or "")
    return found[-1] if found else None


def stop_token_ids(tokenizer, model=None) -> list[int]:
    """End-of-sequence ids: the tokenizer's EOS and the model's ``generation_config.eos_token_id``."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update([] if eos is None else [eos] if isinstance(eos, int) else eos)
    return sorted(ids)


def judgement_index(completion_ids: Sequence[int], stop_ids: Sequence[int]) -> int | None:
    """Index in ``completion_ids`` of the judgement token: the token right before the first
    end-of-sequence token. None when the completion has no EOS (cut at its length limit) or
    starts with it (no token before EOS)."""
    stops = set(stop_ids)
    end = next((k for k, t in enumerate(completion_ids) if t in stops), None)
    return None if end is None or end == 0 else end - 1


# ------------------------------------------------------------------ warm-start data


def generic_reasoning(principle: str, label: str) -> str:
    """The fallback reasoning of an item without evidence: one short sentence."""
    verdict = "satisfies" if label == "Yes" else "does not satisfy"
    return f'Judged against the principle as stated, the response {verdict} the principle "{principle}".'


def evidence_reasoning(principle: str, label: str, evidence: str) -> str:
    """Reasoning from the extraction's evidence quote: what an annotator wrote about the response, for this
    principle and label (the quote alone: short, so a warm start teaches the judgement format quickly)."""
    return evidence.strip()


def _candidate_key(record_id, response_index, principle: str) -> tuple:
    return str(record_id), str(response_index), " ".join(str(principle).split()).lower()


def attach_reasoning(items: Sequence[dict], candidates: Sequence[dict] = ()) -> tuple[list[dict], dict]:
    """Copies of RM ``items`` with ``sft_reasoning`` for the SFT warm start (training data only).

    ``candidates``: the principles stage's ``candidates.jsonl`` (every extracted principle with
    ``record_id``, ``response`` (1 or 2), ``principle``, ``evidence``, ``fulfillment``, ``fate``).
    An item whose (``record_id``, ``response_index``, principle) has a kept candidate with the
    item's label gets that candidate's evidence as reasoning (:func:`evidence_reasoning`); the
    others get :func:`generic_reasoning`. Nothing here reads the synthetic world's ground truth.
    Returns (items, counts): ``evidence``, ``generic``.
    """
    evidence: dict[tuple, str] = {}
    for c in candidates:
        if c.get("fate") == "kept" and c.get("evidence") and c.get("fulfillment") in ANSWERS:
            evidence.setdefault((*_candidate_key(c.get("record_id"), c.get("response"), c.get("principle", "")),
                                 c["fulfillment"]), c["evidence"])
    out, counts = [], {"evidence": 0, "generic": 0}
    for it in items:
        if it["label"] not in ANSWERS:
            raise ValueError(f"item {it.get('item_id')}: label must be Yes or No, got {it['label']!r}")
        quote = evidence.get((*_candidate_key(it.get("record_id"), it.get("response_index"), it["principle"]),
                              it["label"]))
        if quote:
            text = evidence_reasoning(it["principle"], it["label"], quote)
            counts["evidence"] += 1
        else:
            text = generic_reasoning(it["principle"], it["label"])
            counts["generic"] += 1
        out.append({**it, "sft_reasoning": text})
    return out, counts


def build_sft_rows(items: Sequence[dict], tokenizer, max_length: int,
                   enable_thinking: bool = False) -> tuple[list[dict], int]:
    """RM items → tokenized prompt–completion rows for ``SFTTrainer``, and the number of cut prompts.

    Row: ``input_ids`` [L] = prompt ids + completion ids + EOS; ``labels`` [L] = -100 on the
    prompt, the ids elsewhere (loss on the completion and EOS only). The completion is
    :func:`judgement_completion` of the item's ``sft_reasoning`` (see :func:`attach_reasoning`,
    else :func:`generic_reasoning`) and label. Prompts are cut from the left so that L <= ``max_length``.
    """
    eos = tokenizer.eos_token_id
    rows, cut = [], 0
    for it in items:
        if it["label"] not in ANSWERS:
            raise ValueError(f"item {it.get('item_id')}: label must be Yes or No, got {it['label']!r}")
        reasoning = it.get("sft_reasoning") or generic_reasoning(it["principle"], it["label"])
        text = judgement_completion(reasoning, it["label"], enable_thinking)
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

    from rlbff_lib.models.batching import left_pad, length_batches
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
    """The GenRM's GRPO reward (NeMo-RL's, see the module docstring) as a TRL 1.16 reward function.

    TRL calls ``reward(prompts=..., completions=..., completion_ids=..., label=..., log_metric=...,
    **other dataset columns)`` with N completions (prompt strings, decoded completions,
    completion token ids up to and including the first EOS, the items' labels). Returns N
    floats: with label g, ``log P(g) − log P(not g)`` at the token before EOS under the current
    policy; ``missing_reward`` when the completion has no EOS or " Yes"/" No" is not in the top
    ``top_k`` there. Set ``model`` to the trainer's model after building the trainer.
    Logs ``accuracy`` (share of rewards > 0), ``judgement_missing`` (share scored
    ``missing_reward``) and ``marker_rate`` (share whose text holds ``Final Judgement: Yes|No``).
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
        stops = stop_token_ids(self.tokenizer, self.model)
        positions = [judgement_index(c, stops) for c in completion_ids]
        # every completion gets a forward pass (the full sequence when it has no judgement token), so that all
        # ranks of a distributed run make the same number of calls
        seqs = [list(p) + list(c[:j] if j is not None else c) for p, c, j in zip(prompt_ids, completion_ids, positions)]
        diffs = judgement_logprob_diffs(self.model, self.tokenizer, seqs, self.batch_size, self.top_k)
        missing = [j is None or math.isnan(d) for d, j in zip(diffs, positions)]
        rewards = [self.missing_reward if m else (d if g == "Yes" else -d) for d, m, g in zip(diffs, missing, label)]
        if log_metric is not None and rewards:
            texts = [c if isinstance(c, str) else str(c) for c in completions]
            log_metric("accuracy", sum(r > 0 for r in rewards) / len(rewards))
            log_metric("judgement_missing", sum(missing) / len(rewards))
            log_metric("marker_rate", sum(parse_judgement(t) is not None for t in texts) / len(rewards))
        return rewards


def rlhf_judge_reward(text: str | None, tokens: Sequence[dict] | None, finish_reason: str | None) -> float:
    """The GenRM's reward as the alignment judge (NeMo-RL ``principle_genrm_for_rlhf_environment.py``,
    ``verify_with_principle``): log P(" Yes") − log P(" No") read from the top log-probabilities of
    the generated token before EOS; 0.0 (not −50) when ``Final Judgement:`` is not in ``text``, the
    generation did not end (``finish_reason`` other than ``stop``) or either answer is missing there.

    ``tokens``: the generated tokens as ``{"token", "logprob", "top": [{"token", "logprob"}]}``, the
    EOS token last (as the vLLM engine and :mod:`rlbff_lib.reward_models.genrm_server` return them).
    """
    if MARKER not in (text or "") or finish_reason != "stop" or not tokens or len(tokens) < 2:
        return RLHF_MISSING_REWARD
    top = {t["token"]: t["logprob"] for t in tokens[-2]["top"]}
    if " Yes" not in top or " No" not in top:
        return RLHF_MISSING_REWARD
    return float(top[" Yes"] - top[" No"])


# ------------------------------------------------------------------ scoring


@dataclass
class GenRMScoreResult:
    """GenRM scores of N inputs, in input order.

    scores: N floats, log P(" Yes") − log P(" No") at the token before EOS (nats; > 0 means Yes),
    −50 when missing. texts: the N generated completions (special tokens removed).
    judged: N flags, a score was read. truncated: N flags, the prompt was cut from the left.
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
    """Greedy completions (token ids, up to and including the first end-of-sequence token) of ``prompts``.

    Length-sorted batches of ``batch_size``, left-padded; results in input order. A completion
    that reached ``max_new_tokens`` has no EOS.
    """
    import torch

    from rlbff_lib.models.batching import left_pad, length_batches

    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    stop = stop_token_ids(tokenizer, model)
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
                    end = next((k for k, t in enumerate(row) if t in stop), None)
                    out[i] = row if end is None else row[:end + 1]
    finally:
        model.train(was_training)
    return out


def genrm_score(conversations: Sequence[str | Sequence[dict]], responses: Sequence[str],
                principles: str | Sequence[str], model, tokenizer, max_new_tokens: int = 512, batch_size: int = 8,
                max_prompt_length: int | None = None, missing_score: float = MISSING_REWARD,
                top_k: int = TOP_LOGPROBS) -> GenRMScoreResult:
    """GenRM scores of ``responses`` (N) to ``conversations`` (N) under ``principles`` (one or N).

    Greedy generation of at most ``max_new_tokens`` tokens, then one forward pass on prompt +
    completion up to the token before EOS; score = log P(" Yes") − log P(" No") there, or
    ``missing_score`` when the completion has no EOS or either answer is outside the top ``top_k``.
    Deterministic for a given model (greedy decoding, padding-independent positions). The
    tokenizer's chat template is patched in place if it drops the principle role
    (:func:`ensure_principle_role`); its pinned thinking mode (:func:`pin_thinking`) is used as saved.
    """
    from rlbff_lib.reward_models.prompt import as_messages, per_response

    principles = per_response(conversations, responses, principles)
    ensure_principle_role(tokenizer)
    encoded = [encode_genrm_prompt(tokenizer, as_messages(c), r, p, max_prompt_length)
               for c, r, p in zip(conversations, responses, principles)]
    prompts = [ids for ids, _ in encoded]
    completions = generate_completions(model, tokenizer, prompts, max_new_tokens, batch_size)
    stops = stop_token_ids(tokenizer, model)
    positions = [judgement_index(c, stops) for c in completions]
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
    """Accuracy of the GenRM on RM items: correct = a score was read and (score > 0) == (label == Yes).

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
    num_train_epochs: float = 0.5
    max_length: int = 1024


@dataclass
class GenRMGRPOConfig(GRPOSettings):
    """GRPO of the GenRM with TRL's ``GRPOTrainer`` (shared fields: :class:`rlbff_lib.training.launch.GRPOSettings`).

    Smoke defaults: 8 prompts × 4 completions per step, temperature 0.7, 20 steps (the pipeline's smoke GenRM is
    sized for time: it is no claim of the smoke run). With 60 steps (and 120 prompt / 56 completion tokens), GRPO took an SFT-warm-started 32-wide 2-layer Qwen3 (the
    tests' setup, world items on ``fenced_code``) from 0.81 to 0.90 held-out greedy accuracy.
    Paper template: LR 2e-6, 32 prompts × 16 generations, KL 0.01, clip 0.2 / 0.28.
    max_prompt_length: prompt tokens, cut from the left of the conversation.

    GenRM's own: missing_reward: reward without a judgement token (no EOS) or with " Yes"/" No"
    outside the top ``top_logprobs`` there (−50, NeMo-RL's). top_logprobs: 20 (vLLM's maximum,
    NeMo-RL's). reward_batch_size: sequences per reward forward pass.
    """

    learning_rate: float = 2e-4
    max_steps: int = 20
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
    ``eval_batch_size`` sequences per batch). enable_thinking: the GenRM's thinking mode, pinned
    into its chat template (:func:`prepare_tokenizer`) and so shared by training, scoring and
    serving; the warm-start completions put their reasoning in a think block when on."""

    sft: GenRMSFTConfig = field(default_factory=GenRMSFTConfig)
    grpo: GenRMGRPOConfig = field(default_factory=GenRMGRPOConfig)
    stages: list[str] = field(default_factory=lambda: ["sft", "grpo"])
    eval_max_new_tokens: int = 96
    eval_batch_size: int = 16
    enable_thinking: bool = False

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
              callbacks: list | None = None, enable_thinking: bool = False) -> tuple[dict, object, object]:
    """SFT warm start of the causal LM at ``model`` on ``items``; returns (record, trainer, tokenizer).

    Writes ``output_dir/{checkpoints,model,training_log.json}`` (resumes from the newest complete
    checkpoint); the saved tokenizer carries the pinned thinking mode. Call on every process.
    """
    from datasets import Dataset
    from rlbff_lib.training.sft import LabelPositionsSFTTrainer
    from rlbff_lib.training.trl_config import trl_config

    output_dir = Path(output_dir)
    tokenizer = prepare_tokenizer(model, enable_thinking)
    rows, cut = build_sft_rows(items, tokenizer, cfg.max_length, enable_thinking)
    trainer = LabelPositionsSFTTrainer(model=str(model), args=trl_config(cfg, output_dir / "checkpoints"),
                                       train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                                       callbacks=callbacks, peft_config=cfg.lora.peft_config())
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
               callbacks: list | None = None, enable_thinking: bool = False) -> tuple[dict, object, object]:
    """GRPO of the causal LM at ``model`` with :class:`JudgementReward`; returns (record, trainer, tokenizer).

    Writes ``output_dir/{checkpoints,model,training_log.json}``; the log's ``train`` curve holds,
    per logging step, ``loss``, ``reward`` (mean), ``reward_std``, ``frac_reward_zero_std`` (share
    of groups whose rewards are all equal: no learning signal), ``accuracy``, ``judgement_missing``,
    ``marker_rate``, ``kl``, ``completions/mean_length``, ... Call on every process.
    """
    from datasets import Dataset
    from trl import GRPOTrainer

    from rlbff_lib.training.trl_config import trl_config

    output_dir = Path(output_dir)
    tokenizer = prepare_tokenizer(model, enable_thinking)
    rows, cut = build_grpo_rows(items, tokenizer, cfg.max_prompt_length)
    reward = JudgementReward(tokenizer, cfg.missing_reward, cfg.top_logprobs, cfg.reward_batch_size)
    args = trl_config(cfg, output_dir / "checkpoints")
    trainer = GRPOTrainer(model=str(model), reward_funcs=reward, args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer, callbacks=callbacks, peft_config=cfg.lora.peft_config())
    reward.model = trainer.model  # the policy being trained (its plain forward; TRL's fused head is opt-in)
    record = run_trainer(trainer, output_dir, "genrm_grpo", {"n_train": len(rows), "train_truncated": cut})
    return record, trainer, tokenizer


def train_genrm(cfg: GenRMConfig, model: str | Path, items: Sequence[dict], output_dir: str | Path,
                eval_items: Sequence[dict] | None = None) -> dict:
    """Train the GenRM: the configured stages in order, each from the previous stage's model.

    A finished stage (:func:`rlbff_lib.training.runs.finished_run` of its folder) is not run again; an
    interrupted one resumes from its newest complete checkpoint. With ``eval_items``, each stage's record gets
    ``extra.eval`` (:func:`evaluate_genrm`). Writes ``output_dir/training_log.json``
    ``{"stages": {name: record}, "model_dir": final model}``; returns it. Call on every process.
    """
    from dataclasses import asdict

    from accelerate import PartialState

    from rlbff_lib.core.io import write_json
    from rlbff_lib.training.runs import finished_run

    output_dir = Path(output_dir)
    current, stages = str(model), {}
    for stage in cfg.stages:
        stage_dir = output_dir / stage
        done = finished_run(stage_dir, asdict(getattr(cfg, stage)))
        if done is not None:
            log(f"[genrm] stage {stage} already complete, using {stage_dir / 'model'}")
            stages[stage] = done
        else:
            train = train_sft if stage == "sft" else train_grpo
            record, trainer, tok = train(getattr(cfg, stage), current, items, stage_dir,
                                         enable_thinking=cfg.enable_thinking)
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
    """Run a :class:`~rlbff_lib.training.launch.TrainJob` whose files hold RM items (with ``sft_reasoning``
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
