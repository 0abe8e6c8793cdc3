"""Chat generation through HF ``generate`` (CPU, small models) or an OpenAI-compatible server (``vllm serve``).

One call, :func:`generate_chat`, one record type either way (:class:`~rlbff_lib.alignment.policy.Generation`).

A parameter ``generation_server`` chooses the path: null generates with the model in memory
(:func:`rlbff_lib.alignment.policy.generate`); ``{base_url, model, api_key_env}`` (optionally
``concurrency``, ``timeout_s``) sends each conversation to that server through the project's one
client (:class:`rlbff_lib.core.http.ChatClient`) and builds the same records from its answer:
``text`` is the message content (special tokens removed, as HF decoding does), ``n_tokens`` the
generated tokens counted from the answer's log-probability entries (EOS included when it stopped
there, as vLLM and :mod:`rlbff_lib.reward_models.genrm_server` return them), ``terminated`` is
``finish_reason == "stop"``. Greedy decoding of the same model gives the same records on both paths.

Prompt length: the HF path cuts the rendered ids from the left to ``max_prompt_tokens``; a chat
server takes messages, so the server path (ours) drops the oldest whole turns until the rendered
prompt fits (:func:`fit_messages`), and a last turn that alone is too long is sent whole; both
flag ``prompt_truncated``. A request that fails is counted by the client (past its failure share
the run fails) and gives an empty, unterminated record.

GenRM scoring through a server (:func:`genrm_score_served`) reads the judgement token the way
:func:`rlbff_lib.reward_models.genrm.genrm_score` does: the generated token before EOS, score
``log P(" Yes") − log P(" No")`` from its top-``top_k`` log-probabilities (vLLM: ``--max-logprobs 20
--logprobs-mode raw_logprobs``), ``missing_score`` without EOS or with either answer outside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from rlbff_lib.core.http import EndpointConfig, RequestFailed

SERVER_KEYS = {"base_url": str, "model": str, "api_key_env": str, "concurrency": int, "timeout_s": (int, float)}


def server_endpoint(value: dict | None, param: str, service: str) -> EndpointConfig | None:
    """The :class:`EndpointConfig` of a ``generation_server`` parameter (None: generate in-process).

    ``value``: ``{base_url, model[, api_key_env, concurrency, timeout_s]}``; errors and the
    endpoint's own messages name ``param`` (e.g. ``rm_eval.models.genrm.generation_server``)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{param}: must be null or a mapping {{base_url, model, api_key_env}}, got {value!r}")
    unknown = set(value) - set(SERVER_KEYS)
    if unknown:
        raise ValueError(f"{param}: unknown keys {sorted(unknown)} (allowed: {sorted(SERVER_KEYS)})")
    for key in ("base_url", "model"):
        if not isinstance(value.get(key), str) or not value[key].strip():
            raise ValueError(f"{param}.{key}: must be a non-empty string")
    for key, kind in SERVER_KEYS.items():
        if key in value and not isinstance(value[key], kind):
            raise ValueError(f"{param}.{key}: must be {getattr(kind, '__name__', 'a number')}, got {value[key]!r}")
    if value.get("concurrency", 1) < 1 or value.get("timeout_s", 1) <= 0:
        raise ValueError(f"{param}: concurrency must be >= 1 and timeout_s > 0")
    return EndpointConfig(value["base_url"], value["model"], value.get("api_key_env", ""),
                          timeout_s=float(value.get("timeout_s", 600.0)), concurrency=value.get("concurrency", 16),
                          service=service, url_param=f"{param}.base_url", model_param=f"{param}.model",
                          key_param=f"{param}.api_key_env")


def fit_messages(tokenizer, messages: Sequence[dict], max_tokens: int | None,
                 chat_template_kwargs: dict | None = None, tail: int = 0) -> tuple[list[dict], bool]:
    """``messages`` with the oldest whole turns dropped (a leading system message kept; the last
    ``tail`` messages never dropped) until the rendered prompt, generation prompt included, has at
    most ``max_tokens`` tokens: (messages, truncated). Stops at the last user turn even if too long."""
    from rlbff_lib.alignment.policy import encode_prompt

    messages = list(messages)

    def fits(msgs):
        return len(encode_prompt(tokenizer, msgs, chat_template_kwargs)[0]) <= max_tokens

    if max_tokens is None or fits(messages):
        return messages, False
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    body, end = messages[len(system):], messages[len(messages) - tail:] if tail else []
    body = body[:len(body) - tail] if tail else body
    starts = [i for i, m in enumerate(body) if m["role"] == "user"] or [0]
    kept = [*system, *body[starts[-1]:], *end]
    for i in starts[1:]:
        kept = [*system, *body[i:], *end]
        if fits(kept):
            break
    return kept, True


def _client(server: EndpointConfig):
    from rlbff_lib.core.http import ChatClient

    return ChatClient(server)


def complete_all(server: EndpointConfig, requests: Sequence[dict]) -> list[dict | None]:
    """Answers (:func:`rlbff_lib.core.http.parse_completion`) of ``requests`` (keyword arguments of
    :meth:`ChatClient.complete`), in order, ``server.concurrency`` at a time; None for a failed one
    (counted: past the endpoint's failure share the run fails)."""
    with _client(server) as client:
        def one(kwargs):
            try:
                return client.complete(**kwargs)
            except RequestFailed:
                return None
        return client.map(one, list(requests))


def generate_chat(conversations: Sequence[Sequence[dict]], max_new_tokens: int = 256, temperature: float = 0.0,
                  top_p: float = 1.0, top_k: int = 0, seed: int = 0, chat_template_kwargs: dict | None = None,
                  max_prompt_tokens: int | None = None, batch_size: int = 16, *, model=None, tokenizer=None,
                  server: EndpointConfig | None = None) -> list:
    """One completion per conversation (N) → N :class:`~rlbff_lib.alignment.policy.Generation`, in order.

    ``server`` None: HF ``generate`` of ``model`` (:func:`rlbff_lib.alignment.policy.generate`, batches of
    ``batch_size``); else the server (``model`` unused; ``tokenizer``, the served model's, measures
    prompts). temperature 0 is greedy; ``top_p``/``top_k`` (0: off)/``seed`` as the HF path; the
    server gets them as request fields (vLLM's ``top_k``, ``seed``, ``chat_template_kwargs``).
    """
    from rlbff_lib.alignment.policy import THINK_END, THINK_START, Generation, final_answer, generate

    if server is None:
        if model is None or tokenizer is None:
            raise ValueError("generate_chat: the HF path needs model and tokenizer (or name a generation_server)")
        return generate(model, tokenizer, conversations, max_new_tokens=max_new_tokens, temperature=temperature,
                        top_p=top_p, top_k=top_k, batch_size=batch_size, seed=seed,
                        chat_template_kwargs=chat_template_kwargs, max_prompt_tokens=max_prompt_tokens)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: must be >= 1, got {max_new_tokens}")
    fitted = [fit_messages(tokenizer, c, max_prompt_tokens, chat_template_kwargs) if tokenizer is not None
              else (list(c), False) for c in conversations]
    extra = {"seed": seed}
    if temperature > 0:
        extra.update(top_p=top_p, **({"top_k": top_k} if top_k else {}))
    if chat_template_kwargs:
        extra["chat_template_kwargs"] = dict(chat_template_kwargs)
    answers = complete_all(server, [dict(messages=m, max_tokens=max_new_tokens, temperature=temperature,
                                         top_logprobs=1, extra=extra) for m, _ in fitted])
    out = []
    for i, (ans, (_, cut)) in enumerate(zip(answers, fitted)):
        text = (ans or {}).get("content") or ""
        thinking = text.rsplit(THINK_END, 1)[0] if THINK_END in text else text if THINK_START in text else ""
        out.append(Generation(prompt_index=i, text=text, thinking=thinking.replace(THINK_START, "").strip(),
                              answer=final_answer(text), n_tokens=len((ans or {}).get("tokens") or []),
                              terminated=bool(ans) and ans.get("finish_reason") == "stop", prompt_truncated=cut))
    return out


# ------------------------------------------------------------------ GenRM scoring through a server


def judgement_score(answer: dict | None, missing_score: float, top_k: int) -> float | None:
    """``log P(" Yes") − log P(" No")`` at the generated token before EOS of a server answer
    (:func:`rlbff_lib.core.http.parse_completion` with tokens), None (→ ``missing_score`` by the
    caller) when it did not stop at EOS, has no token before it, or either answer is not among the
    ``top_k`` alternatives there."""
    if not answer or answer.get("finish_reason") != "stop":
        return None
    tokens = answer.get("tokens") or []
    if len(tokens) < 2:
        return None
    top = {t["token"]: t["logprob"] for t in tokens[-2]["top"][:top_k]}
    if " Yes" not in top or " No" not in top:
        return None
    return float(top[" Yes"] - top[" No"])


def genrm_score_served(conversations: Sequence, responses: Sequence[str], principles: str | Sequence[str],
                       tokenizer, server: EndpointConfig, max_new_tokens: int = 512,
                       max_prompt_length: int | None = None, missing_score: float | None = None,
                       top_k: int | None = None):
    """:func:`rlbff_lib.reward_models.genrm.genrm_score` through ``server`` (the GenRM served, e.g.
    ``vllm serve`` of its folder): greedy completion of at most ``max_new_tokens`` with the top
    ``top_k`` log-probabilities per token; the same :class:`~rlbff_lib.reward_models.genrm.GenRMScoreResult`.
    ``tokenizer``: the GenRM's (measures prompts against ``max_prompt_length``; see :func:`fit_messages`)."""
    from rlbff_lib.reward_models import genrm as G
    from rlbff_lib.reward_models.prompt import as_messages, per_response

    missing_score = G.MISSING_REWARD if missing_score is None else missing_score
    top_k = G.TOP_LOGPROBS if top_k is None else top_k
    principles = per_response(conversations, responses, principles)
    G.ensure_principle_role(tokenizer)
    fitted = [fit_messages(tokenizer, G.genrm_messages(as_messages(c), r, p), max_prompt_length, tail=2)
              for c, r, p in zip(conversations, responses, principles)]
    answers = complete_all(server, [dict(messages=m, max_tokens=max_new_tokens, temperature=0.0, top_logprobs=top_k)
                                    for m, _ in fitted])
    scores = [judgement_score(a, missing_score, top_k) for a in answers]
    return G.GenRMScoreResult(scores=[missing_score if s is None or math.isnan(s) else s for s in scores],
                              texts=[(a or {}).get("content") or "" for a in answers],
                              judged=[s is not None for s in scores], truncated=[cut for _, cut in fitted])
