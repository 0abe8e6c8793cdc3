"""Scoring with a reward model of any kind: ``load_scorer(kind, path)`` gives one callable for the
scalar principle RM, the Bradley–Terry RM and the GenRM, used by rm_eval, the reward_models stage,
the GRPO reward, the smoke policy judge and the scoring command line alike.

API::

    scorer = load_scorer("scalar", "models/reward_models/scalar", max_length=1024, batch_size=8)
    res = scorer(conversations, responses, principles)   # N each (one principle string applies to all)
    res.scores      # N floats, input order
    res.truncated   # N flags: the conversation was cut from the left to fit max_length
    res.answers     # "Yes" where score > 0
    Scorer("bt", model, tokenizer, max_length=1024)      # the same around a model already in memory

Kinds (:data:`KINDS`) and their scores, in nats:

- ``scalar``: logit("Yes") − logit("No") at the first generated position of the RLBFF prompt
  (:func:`rlbff_lib.reward_models.prompt.encode_rm_prompt`), one forward pass with ``logits_to_keep=1``;
- ``bt``: the Bradley–Terry reward at the last token of conversation + response
  (:func:`rlbff_lib.reward_models.prompt.encode_response`); the principle is ignored (may be None);
- ``genrm``: greedy reasoning, then log P(" Yes") − log P(" No") at the judgement token, −50 when
  there is none (:func:`rlbff_lib.reward_models.genrm.genrm_score`; its result also holds ``texts``
  and ``judged``).

``max_length`` (one rule for every kind) counts the tokens of the model's whole sequence for one
input: the prompt plus what the model writes after it. That is the number each trainer calls
``max_length``, so a model is scored on the window it was trained on:

- scalar: the prompt + the one answer token, so prompts keep at most ``max_length − 1`` tokens;
- bt: conversation + response (the model writes nothing), at most ``max_length`` tokens;
- genrm: the prompt + up to ``max_new_tokens`` of reasoning, so prompts keep ``max_length − max_new_tokens``.

Over-long conversations are cut from the left (:func:`rlbff_lib.reward_models.prompt.fit_conversation`).
``max_length`` is capped at the model's ``max_position_embeddings`` (``None``: that many); ``info()``
reports both the requested and the used value. A prompt budget under :data:`MIN_PROMPT_TOKENS` is an error.

Device and dtype come from the model: inputs go to the device of its input embeddings, in the
dtype it was loaded in (:func:`load_model`: bf16 on CUDA, fp32 on CPU; ``device_map="auto"``
spreads a model too large for one GPU). Batching (:mod:`rlbff_lib.models.batching`): length-sorted,
left-padded batches under ``torch.inference_mode``; padding never changes a score.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from rlbff_lib.models.batching import batched_forward
from rlbff_lib.reward_models.prompt import as_messages, encode_response, encode_rm_prompt, per_response

KINDS = ("scalar", "bt", "genrm")
MIN_PROMPT_TOKENS = 16


@dataclass
class ScoreResult:
    """Scores of N inputs, in input order.

    scores: N floats (nats; > 0 means Yes for the log-odds kinds). truncated: N flags, the input
    was cut from the left to fit ``max_length``.
    """

    scores: list[float]
    truncated: list[bool] = field(default_factory=list)

    @property
    def n_truncated(self) -> int:
        return sum(self.truncated)

    @property
    def answers(self) -> list[str]:
        return ["Yes" if s > 0 else "No" for s in self.scores]


def max_positions(model) -> int | None:
    """The longest sequence the model has positions for (``max_position_embeddings``), if it says."""
    return getattr(model.config.get_text_config(), "max_position_embeddings", None)


@dataclass
class Scorer:
    """A reward model of ``kind`` with its tokenizer, called as ``scorer(conversations, responses, principles)``.

    max_length: the window per input (module docstring; None: the model's positions; capped at
    them, the value asked for kept in ``max_length_requested``).
    batch_size: sequences per forward pass / generation batch. max_new_tokens: the GenRM's
    reasoning budget (ignored by the others). path: where it was loaded from (for messages).
    show_progress: a progress line per batch (the command line turns it on).
    """

    kind: str
    model: Any
    tokenizer: Any
    max_length: int | None = None
    batch_size: int = 8
    max_new_tokens: int = 512
    path: str | None = None
    show_progress: bool = False
    server: Any = None  # genrm: an EndpointConfig serving the model (model may then be None)
    positions: int | None = None  # the model's positions when model is None

    def __post_init__(self):
        where = f" ({self.path})" if self.path else ""
        if self.kind not in KINDS:
            raise ValueError(f"kind: must be one of {list(KINDS)}, got {self.kind!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: must be >= 1, got {self.max_new_tokens}")
        positions = max_positions(self.model) if self.model is not None else self.positions
        if self.server is not None and self.kind != "genrm":
            raise ValueError(f"generation_server: only the genrm kind generates, not {self.kind!r}")
        self.max_length_requested = self.max_length
        if self.max_length is None or (positions and self.max_length > positions):
            self.max_length = positions
        budget = self.prompt_budget
        if budget is not None and budget < MIN_PROMPT_TOKENS:
            extra = f" minus {self.reserved} written tokens" if self.reserved else ""
            raise ValueError(f"max_length: {self.max_length}{extra} leaves {budget} prompt tokens (< {MIN_PROMPT_TOKENS})")

    @property
    def reserved(self) -> int:
        """Tokens of the window the model writes after the prompt: 1 (scalar), 0 (bt), max_new_tokens (genrm)."""
        return {"scalar": 1, "bt": 0, "genrm": self.max_new_tokens}[self.kind]

    @property
    def prompt_budget(self) -> int | None:
        """The most prompt tokens one input keeps (None: no limit)."""
        return None if self.max_length is None else self.max_length - self.reserved

    def __call__(self, conversations: Sequence[str | Sequence[dict]], responses: Sequence[str],
                 principles: str | Sequence[str] | None = None):
        """Scores of ``responses`` (N) to ``conversations`` (N) under ``principles`` (one or N; bt: ignored)."""
        if self.model is None and self.server is None:
            raise RuntimeError("scorer: the model was released")
        if self.kind == "bt":
            if len(conversations) != len(responses):
                raise ValueError(f"conversations: {len(conversations)} given for {len(responses)} responses")
            return self._bt(conversations, responses)
        if principles is None:
            raise ValueError(f"principles: the {self.kind} scorer needs a principle per response")
        principles = per_response(conversations, responses, principles)
        if self.kind == "scalar":
            return self._scalar(conversations, responses, principles)
        if self.server is not None:  # the GenRM behind vllm serve (rlbff_lib.models.generation)
            return genrm_score_served(conversations, responses, principles, self.tokenizer, self.server,
                                      max_new_tokens=self.max_new_tokens, max_prompt_length=self.prompt_budget)
        from rlbff_lib.reward_models.genrm import genrm_score

        return genrm_score(conversations, responses, principles, self.model, self.tokenizer,
                           max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                           max_prompt_length=self.prompt_budget)

    def _scalar(self, conversations, responses, principles) -> ScoreResult:
        from rlbff_lib.models.tokenizer import answer_token_ids

        yes, no = answer_token_ids(self.tokenizer)
        encoded = [encode_rm_prompt(self.tokenizer, as_messages(c), r, p, self.prompt_budget)
                   for c, r, p in zip(conversations, responses, principles)]

        def yes_minus_no(model, ids, mask, pos):
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False,
                           logits_to_keep=1).logits[:, -1, :]
            return logits[:, yes] - logits[:, no]

        tok = self.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return self._forward(encoded, pad_id, yes_minus_no)

    def _bt(self, conversations, responses) -> ScoreResult:
        encoded = [encode_response(self.tokenizer, c, r, self.prompt_budget) for c, r in zip(conversations, responses)]

        def reward(model, ids, mask, pos):
            return model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits[:, 0]

        pad_id = self.model.config.get_text_config().pad_token_id  # the head reads the last non-pad token
        if pad_id is None:
            pad_id = self.tokenizer.pad_token_id
        return self._forward(encoded, pad_id, reward)

    def _forward(self, encoded: Sequence[tuple[list[int], bool]], pad_id: int, read) -> ScoreResult:
        desc = f"{self.kind} scoring" if self.show_progress else None
        scores = batched_forward(self.model, [ids for ids, _ in encoded], pad_id, self.batch_size, read, desc)
        return ScoreResult(scores=scores, truncated=[t for _, t in encoded])

    def info(self) -> dict:
        """Facts for a report: path, kind, parameters, positions, max_length, prompt budget, device, dtype."""
        from rlbff_lib.models.lm import count_parameters

        if self.model is None:
            return {"path": self.path, "kind": self.kind, "server": f"{self.server.base_url} ({self.server.model})",
                    "max_position_embeddings": self.positions, "max_length": self.max_length,
                    "max_length_requested": self.max_length_requested, "prompt_budget": self.prompt_budget}
        weight = self.model.get_input_embeddings().weight
        return {"path": self.path, "kind": self.kind, "parameters": count_parameters(self.model),
                "max_position_embeddings": max_positions(self.model), "max_length": self.max_length,
                "max_length_requested": self.max_length_requested, "prompt_budget": self.prompt_budget,
                "device": str(weight.device), "dtype": str(weight.dtype)}

    def release(self) -> None:
        """Free the weights (CPU and GPU memory) before the next model loads."""
        self.model = self.server = None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def genrm_score_served(conversations: Sequence, responses: Sequence[str], principles: str | Sequence[str],
                       tokenizer, server, max_new_tokens: int = 512, max_prompt_length: int | None = None):
    """:func:`rlbff_lib.reward_models.genrm.genrm_score` through ``server`` (an
    :class:`~rlbff_lib.core.http.EndpointConfig` of the GenRM served, e.g. ``vllm serve`` of its folder):
    greedy completions of at most ``max_new_tokens`` with the top-20 log-probabilities per token, read by
    :func:`rlbff_lib.models.generation.judgement_score`; the same ``GenRMScoreResult`` (−50 when missing).
    ``tokenizer``: the GenRM's (prompts over ``max_prompt_length`` lose their oldest turns)."""
    from rlbff_lib.models.generation import judgement_score, served_chat
    from rlbff_lib.reward_models import genrm as G

    principles = per_response(conversations, responses, principles)
    G.ensure_principle_role(tokenizer)
    convs = [G.genrm_messages(as_messages(c), r, p) for c, r, p in zip(conversations, responses, principles)]
    answers = served_chat(convs, server, tokenizer, max_new_tokens, max_prompt_tokens=max_prompt_length,
                          top_logprobs=G.TOP_LOGPROBS, tail=2)
    scores = [judgement_score(a, G.TOP_LOGPROBS) for a in answers]
    return G.GenRMScoreResult(scores=[G.MISSING_REWARD if s is None else s for s in scores],
                              texts=[a["content"] for a in answers], judged=[s is not None for s in scores],
                              truncated=[a["prompt_truncated"] for a in answers])


def load_model(kind: str, path: str | Path, device_map: str | None = None):
    """(model in eval mode, tokenizer) of a ``kind`` reward model folder or hub name.

    A causal LM for scalar / genrm, a sequence classifier with one output for bt; safetensors only,
    no remote code; dtype and device of :func:`rlbff_lib.models.lm.device_and_dtype` (bf16 on CUDA,
    fp32 on CPU), or spread by ``device_map`` (e.g. ``"auto"``) over the visible GPUs.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from rlbff_lib.models.lm import attn_implementation, check_model_dir, device_and_dtype
    from rlbff_lib.models.tokenizer import load_tokenizer

    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {list(KINDS)}, got {kind!r}")
    check_model_dir(path)  # one line naming the path, not a hub lookup's traceback
    device, dtype = device_and_dtype()
    cls = AutoModelForSequenceClassification if kind == "bt" else AutoModelForCausalLM
    kwargs = {"device_map": device_map} if device_map else {}
    model = cls.from_pretrained(str(path), dtype=dtype, use_safetensors=True, trust_remote_code=False,
                                attn_implementation=attn_implementation(), **kwargs)
    if not device_map:
        model = model.to(device)
    return model.eval(), load_tokenizer(path)


def load_scorer(kind: str, path: str | Path, max_length: int | None = None, batch_size: int = 8,
                max_new_tokens: int = 512, device_map: str | None = None, show_progress: bool = False,
                server=None) -> Scorer:
    """The :class:`Scorer` of the ``kind`` reward model at ``path`` (see the module docstring).

    ``server`` (genrm only): the :class:`~rlbff_lib.core.http.EndpointConfig` of a server of that
    model (``vllm serve`` of ``path``): checked in seconds (it answers, serves the model, returns
    log-probabilities), then only the tokenizer and config are loaded and generation goes there."""
    if server is not None:
        from transformers import AutoConfig

        from rlbff_lib.models.lm import check_model_dir
        from rlbff_lib.models.tokenizer import load_tokenizer
        from rlbff_lib.reward_models.genrm import TOP_LOGPROBS

        if kind != "genrm":
            raise ValueError(f"generation_server: only the genrm kind generates, not {kind!r}")
        check_model_dir(path)
        server.check(need_logprobs=True, top_logprobs=TOP_LOGPROBS)
        config = AutoConfig.from_pretrained(str(path)).get_text_config()
        return Scorer(kind, None, load_tokenizer(path), max_length=max_length, batch_size=batch_size,
                      max_new_tokens=max_new_tokens, path=str(path), show_progress=show_progress, server=server,
                      positions=getattr(config, "max_position_embeddings", None))
    model, tokenizer = load_model(kind, path, device_map)
    return Scorer(kind, model, tokenizer, max_length=max_length, batch_size=batch_size,
                  max_new_tokens=max_new_tokens, path=str(path), show_progress=show_progress)
