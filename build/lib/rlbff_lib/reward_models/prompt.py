"""The RLBFF principle prompt shared by every reward model: chat layout, rendering, left truncation.

The scalar RM, the Bradley-Terry RM, the GenRM, their scorers and the GRPO reward all build their
inputs here, so that a prompt is cut the same way in training and in scoring.
"""

from __future__ import annotations

from typing import Sequence

PRINCIPLE_PROMPT = ("Evaluate the response to the previous prompt in terms of whether it satisfies this "
                    "principle: {principle}. Only answer Yes or No.")
ANSWERS = ("Yes", "No")


def as_messages(conversation: str | Sequence[dict]) -> list[dict]:
    """A conversation as chat messages: a plain string becomes one user turn."""
    if isinstance(conversation, str):
        return [{"role": "user", "content": conversation}]
    return list(conversation)


def per_response(conversations: Sequence, responses: Sequence[str], principles: str | Sequence[str]) -> list[str]:
    """One principle per response (a single string applies to every response); the three lengths must agree."""
    n = len(responses)
    if len(conversations) != n:
        raise ValueError(f"conversations: {len(conversations)} given for {n} responses")
    principles = [principles] * n if isinstance(principles, str) else list(principles)
    if len(principles) != n:
        raise ValueError(f"principles: {len(principles)} given for {n} responses")
    return principles


def principle_turn(principle: str) -> dict:
    """The extra user turn that asks the RLBFF question."""
    return {"role": "user", "content": PRINCIPLE_PROMPT.format(principle=principle)}


def rm_messages(context: Sequence[dict], response: str, principle: str) -> list[dict]:
    """Conversation + assistant response + principle turn (the scalar RM's chat)."""
    return [*context, {"role": "assistant", "content": response}, principle_turn(principle)]


def render_ids(tokenizer, messages: Sequence[dict], add_generation_prompt: bool) -> list[int]:
    """Token ids of ``messages`` through the chat template (its own BOS etc., no extra specials)."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt,
                                         enable_thinking=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def fit_conversation(tokenizer, context: Sequence[dict], tail: Sequence[dict], max_length: int | None,
                     add_generation_prompt: bool = True) -> tuple[list[int], bool]:
    """Render ``context + tail`` in at most ``max_length`` tokens: (ids, truncated).

    ``tail`` (the response, and for the scalar RM the principle turn) is never cut while it
    fits. Over-long inputs lose the LEFT of the conversation, in this order:
    1. the oldest turns (keeping a leading system message), so that it starts at a user turn;
    2. then the system message and the start of the remaining (last) user turn's text;
    3. if even the tail alone is too long, the rendered ids are cut from the left
       (the principle turn, short and last, still survives).
    """
    ids = render_ids(tokenizer, [*context, *tail], add_generation_prompt)
    if max_length is None or len(ids) <= max_length:
        return ids, False
    context = list(context)
    system = context[:1] if context and context[0]["role"] == "system" else []
    body = context[len(system):]
    starts = [i for i, m in enumerate(body) if m["role"] == "user"] or [0]
    for i in starts[1:]:  # 1. drop the oldest turns
        ids = render_ids(tokenizer, [*system, *body[i:], *tail], add_generation_prompt)
        if len(ids) <= max_length:
            return ids, True
    head = body[starts[-1]:]  # 2. the last user turn (and anything after it), its text cut from the left
    if head:
        first, rest = head[0], head[1:]
        content = tokenizer(first["content"], add_special_tokens=False)["input_ids"]
        ids = render_ids(tokenizer, [{**first, "content": ""}, *rest, *tail], add_generation_prompt)
        keep = min(len(content), max_length - len(ids))
        while keep > 0:  # re-tokenizing a cut text can merge differently: shrink until it fits
            cut = tokenizer.decode(content[len(content) - keep:])
            ids = render_ids(tokenizer, [{**first, "content": cut}, *rest, *tail], add_generation_prompt)
            if len(ids) <= max_length:
                return ids, True
            keep -= max(1, len(ids) - max_length)
        head = [{**first, "content": ""}, *rest]
    ids = render_ids(tokenizer, [*head, *tail], add_generation_prompt)  # 3. the tail alone is too long
    return ids[-max_length:], True


def encode_rm_prompt(tokenizer, context: Sequence[dict], response: str, principle: str,
                     max_length: int | None) -> tuple[list[int], bool]:
    """Token ids of the RLBFF prompt (ending with the generation prompt), and whether it was cut."""
    return fit_conversation(tokenizer, context, rm_messages([], response, principle), max_length,
                            add_generation_prompt=True)


def encode_response(tokenizer, context: str | Sequence[dict], response: str, max_length: int | None
                    ) -> tuple[list[int], bool]:
    """Token ids of ``context + assistant response`` (no generation prompt: the Bradley–Terry input), cut
    from the left, and whether it was cut."""
    return fit_conversation(tokenizer, as_messages(context), [{"role": "assistant", "content": response}], max_length,
                            add_generation_prompt=False)
