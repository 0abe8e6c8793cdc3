"""Chat generation through an OpenAI-compatible server (``vllm serve``) for what HF ``generate`` does in-process.

A parameter ``generation_server`` (:func:`server_endpoint`) chooses: null generates in-process, a server otherwise.

Callers keep one output format either way: the policy benchmarks' answers
(:func:`rlbff_lib.evaluation.policy_bench.generate_answers`) become the same ``Generation`` records
as :func:`rlbff_lib.alignment.policy.generate` returns, GenRM scores
(:func:`rlbff_lib.reward_models.scorers.genrm_score_served`) the same ``GenRMScoreResult`` as
:func:`rlbff_lib.reward_models.genrm.genrm_score`. ``generation_server`` is ``{base_url, model,
api_key_env}`` (optionally ``concurrency``, ``timeout_s``); requests go through the project's one
client (:class:`rlbff_lib.core.http.ChatClient`). From an answer, ``content`` is the text (special
tokens removed, as HF decoding does), ``n_tokens`` the generated tokens counted from its
log-probability entries (EOS included when it stopped there, as vLLM and
:mod:`rlbff_lib.reward_models.genrm_server` return them), ``terminated`` is ``finish_reason == "stop"``.
Greedy decoding of the same model gives the same outputs on both paths.

Prompt length (ours): HF generation cuts rendered ids from the left; a chat server takes messages,
so :func:`served_chat` drops the oldest whole turns until the rendered prompt fits
(:func:`fit_messages`), and a last turn that alone is too long is sent whole; both flag it. A failed
request is counted by the client (past its failure share the run fails) and gives an empty,
unterminated answer.

The GenRM's judgement through a server (:func:`judgement_score`) is read as ``genrm_score`` reads
it: the generated token before EOS, ``log P(" Yes") − log P(" No")`` from its top-``top_k``
log-probabilities (vLLM: ``--max-logprobs 20 --logprobs-mode raw_logprobs``); None (missing) without
EOS, without a token before it, or with either answer outside them.
"""

from __future__ import annotations

from typing import Sequence

from rlbff_lib.core.http import ChatClient, EndpointConfig, RequestFailed

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
        if key in value and (not isinstance(value[key], kind) or isinstance(value[key], bool)):
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
    messages = list(messages)

    def fits(msgs):  # the prompt as HF generate renders it (alignment.policy.encode_prompt)
        text = tokenizer.apply_chat_template(list(msgs), tokenize=False, add_generation_prompt=True,
                                             **(chat_template_kwargs or {}))
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= max_tokens

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


def complete_all(server: EndpointConfig, requests: Sequence[dict]) -> list[dict | None]:
    """Answers (:func:`rlbff_lib.core.http.parse_completion`) of ``requests`` (keyword arguments of
    :meth:`ChatClient.complete`), in order, ``server.concurrency`` at a time; None for a failed one
    (counted: past the endpoint's failure share the run fails)."""
    with ChatClient(server) as client:
        def one(kwargs):
            try:
                return client.complete(**kwargs)
            except RequestFailed:
                return None
        return client.map(one, list(requests))


def served_chat(conversations: Sequence[Sequence[dict]], server: EndpointConfig, tokenizer=None,
                max_new_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0,
                seed: int = 0, chat_template_kwargs: dict | None = None, max_prompt_tokens: int | None = None,
                top_logprobs: int = 1, tail: int = 0) -> list[dict]:
    """One completion per conversation (N) from ``server``, in order: N answers
    ``{"content", "finish_reason", "tokens", "n_tokens", "terminated", "prompt_truncated"}``.

    temperature 0 is greedy; ``top_p``, ``top_k`` (0: off), ``seed`` and ``chat_template_kwargs``
    go as request fields (vLLM reads them all). ``tokenizer`` (the served model's) measures prompts
    against ``max_prompt_tokens`` (:func:`fit_messages`, never cutting the last ``tail`` messages);
    None sends them whole. ``top_logprobs``: alternatives per token (at least 1: the tokens are
    counted from them). A failed request gives empty content, no tokens, not terminated.
    """
    if max_new_tokens < 1 or top_logprobs < 1:
        raise ValueError(f"max_new_tokens/top_logprobs: must be >= 1, got {max_new_tokens}/{top_logprobs}")
    fitted = [fit_messages(tokenizer, c, max_prompt_tokens, chat_template_kwargs, tail) if tokenizer is not None
              else (list(c), False) for c in conversations]
    extra: dict = {"seed": seed}
    if temperature > 0:
        extra.update(top_p=top_p, **({"top_k": top_k} if top_k else {}))
    if chat_template_kwargs:
        extra["chat_template_kwargs"] = dict(chat_template_kwargs)
    answers = complete_all(server, [dict(messages=m, max_tokens=max_new_tokens, temperature=temperature,
                                         top_logprobs=top_logprobs, extra=extra) for m, _ in fitted])
    out = []
    for ans, (_, cut) in zip(answers, fitted):
        ans = ans or {"content": "", "finish_reason": None, "tokens": None}
        tokens = ans.get("tokens") or []
        out.append({**ans, "content": ans.get("content") or "", "n_tokens": len(tokens),
                    "terminated": ans.get("finish_reason") == "stop", "prompt_truncated": cut})
    return out


# ------------------------------------------------------------------ GenRM scoring through a server


def judgement_score(answer: dict | None, top_k: int) -> float | None:
    """``log P(" Yes") − log P(" No")`` (nats) at the generated token before EOS of a server answer
    (:func:`rlbff_lib.core.http.parse_completion` with tokens); None (missing) when it did not stop
    at EOS, has no token before it, or either answer is not among the ``top_k`` alternatives there."""
    if not answer or answer.get("finish_reason") != "stop":
        return None
    tokens = answer.get("tokens") or []
    if len(tokens) < 2:
        return None
    top = {t["token"]: t["logprob"] for t in tokens[-2]["top"][:top_k]}
    if " Yes" not in top or " No" not in top:
        return None
    return float(top[" Yes"] - top[" No"])
