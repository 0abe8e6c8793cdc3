"""Scoring with the scalar principle RM: a Python API and a command line.

API::

    model, tok = load_scorer("models/reward_models/scalar")       # any causal-LM folder or hub name
    res = score(conversations, responses, "is concise", model, tok, batch_size=8, max_length=4096)
    res.scores      # list[float]: logit("Yes") - logit("No") at the first generated position
    res.answers     # ["Yes" if s > 0 else "No", ...]
    res.n_truncated # inputs whose conversation was cut from the left to fit max_length

Batching: inputs are sorted by length, cut into batches of ``batch_size``, left-padded
(attention mask 0 on padding, position ids counted from each sequence's first real token),
scored under ``torch.inference_mode`` and put back in input order; padding never changes a
score. Only the last position's logits are computed (``logits_to_keep=1``).

Command line (one column per ``--principle``; a table on stdout, JSONL with ``--output``)::

    python -m rlbff_lib.reward_models.scoring --model PATH --principle "correctness" [--principle "is concise"] \\
        --input FILE.jsonl|FILE.json [--output OUT.jsonl] [--response-field FIELD]

Input records hold ``context`` (chat messages, last one from the user) or ``prompt`` (a
string, taken as one user turn), and the response to score: ``--response-field FIELD`` names
it; otherwise ``response`` is used, and a record without ``response`` (a HelpSteer3 record
such as the card's ``feedback_example.json``) is exploded into one row per ``response1``,
``response2``, ... field. A ``.json`` input is one object or a list of objects.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from rlbff_lib.core.io import DataError, iter_jsonl
from rlbff_lib.reward_models.prompt import encode_rm_prompt


@dataclass
class ScoreResult:
    """Scores of N inputs, in input order.

    scores: N floats, logit("Yes") − logit("No") (nats; > 0 means Yes is more likely).
    truncated: N flags, the input was cut from the left to fit ``max_length``.
    """

    scores: list[float]
    truncated: list[bool] = field(default_factory=list)

    @property
    def n_truncated(self) -> int:
        return sum(self.truncated)

    @property
    def answers(self) -> list[str]:
        return ["Yes" if s > 0 else "No" for s in self.scores]


def as_messages(conversation: str | Sequence[dict]) -> list[dict]:
    """A conversation as chat messages: a plain string becomes one user turn."""
    if isinstance(conversation, str):
        return [{"role": "user", "content": conversation}]
    return list(conversation)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length (longest first, so memory peaks at once), cut into batches."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device):
    """Left-pad to a batch: (input_ids [B, T], attention_mask [B, T], position_ids [B, T])."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[row, width - len(s):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


def batched_forward(model, seqs: Sequence[Sequence[int]], pad_id: int, batch_size: int,
                    read: Callable) -> list[float]:
    """``read(model, input_ids, attention_mask, position_ids) -> Tensor [B]`` over length-sorted
    left-padded batches; returns one float per sequence, in input order."""
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    device = model.get_input_embeddings().weight.device
    out: list[float] = [0.0] * len(seqs)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for idx in length_batches([len(s) for s in seqs], batch_size):
                ids, mask, pos = left_pad([seqs[i] for i in idx], pad_id, device)
                for i, v in zip(idx, read(model, ids, mask, pos).float().cpu().tolist()):
                    out[i] = v
    finally:
        model.train(was_training)
    return out



def per_response(conversations: Sequence, responses: Sequence[str], principles: str | Sequence[str]) -> list[str]:
    """One principle per response (a single string applies to every response); the three lengths must agree."""
    n = len(responses)
    if len(conversations) != n:
        raise ValueError(f"conversations: {len(conversations)} given for {n} responses")
    principles = [principles] * n if isinstance(principles, str) else list(principles)
    if len(principles) != n:
        raise ValueError(f"principles: {len(principles)} given for {n} responses")
    return principles

def score(conversations: Sequence[str | Sequence[dict]], responses: Sequence[str], principles: str | Sequence[str],
          model, tokenizer, batch_size: int = 8, max_length: int | None = 4096) -> ScoreResult:
    """Scalar principle-RM scores of ``responses`` (N) to ``conversations`` (N) under ``principles``.

    principles: one principle for all, or N. Each input is the RLBFF prompt
    (:func:`rlbff_lib.reward_models.scalar.encode_rm_prompt`), cut from the left of the conversation
    to ``max_length`` tokens; the score is logit(Yes) − logit(No) at the first generated position.
    """
    from rlbff_lib.models.tokenizer import answer_token_ids

    principles = per_response(conversations, responses, principles)
    yes, no = answer_token_ids(tokenizer)
    encoded = [encode_rm_prompt(tokenizer, as_messages(c), r, p, max_length)
               for c, r, p in zip(conversations, responses, principles)]

    def yes_minus_no(model, ids, mask, pos):
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False,
                       logits_to_keep=1).logits[:, -1, :]
        return logits[:, yes] - logits[:, no]

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scores = batched_forward(model, [ids for ids, _ in encoded], pad_id, batch_size, yes_minus_no)
    return ScoreResult(scores=scores, truncated=[t for _, t in encoded])


def load_scorer(path: str | Path, device_map: str | None = None):
    """(model, tokenizer) of a causal-LM folder or hub name, in eval mode.

    device_map: ``None`` puts the model on the one device of
    :func:`rlbff_lib.models.lm.device_and_dtype` (bf16 on CUDA, fp32 on CPU); ``"auto"`` spreads
    a model too large for one GPU (Llama-3.3-70B) over all visible GPUs.
    """
    from rlbff_lib.models.lm import attn_implementation, device_and_dtype, load_causal_lm
    from rlbff_lib.models.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(path)
    if device_map is None:
        model = load_causal_lm(path)
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=device_and_dtype()[1], device_map=device_map,
                                                     use_safetensors=True, trust_remote_code=False,
                                                     attn_implementation=attn_implementation())
    return model.eval(), tokenizer


# ------------------------------------------------------------------ command line

_RESPONSE_FIELD_RE = re.compile(r"^response\d+$")


def read_inputs(path: str | Path, response_field: str | None = None) -> list[dict]:
    """Rows ``{"id", "context", "response", "response_field"}`` from a .json or .jsonl file.

    id: the record's ``id`` / ``item_id`` / ``pair_id``, else ``<file stem>[:<line or index>]``,
    with ``:<field>`` appended when a record is exploded into several responses.
    """
    path = Path(path)
    if path.suffix == ".json":  # (line for errors, default id, record)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DataError(path, f"cannot read JSON ({e})") from None
        if isinstance(raw, list):
            records = [(None, f"{path.stem}:{k}", r) for k, r in enumerate(raw, 1)]
        else:
            records = [(None, path.stem, raw)]
    else:
        records = [(i, f"{path.stem}:{i}", r) for i, r in enumerate(iter_jsonl(path), 1)]
    rows = []
    for where, default_id, rec in records:
        if not isinstance(rec, dict):
            raise DataError(path, f"record {default_id} is not a JSON object", line=where)
        if isinstance(rec.get("context"), list) and rec["context"]:
            context = rec["context"]
            for m in context:
                if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                    raise DataError(path, "each message needs string 'role' and 'content'", line=where, field="context")
        elif isinstance(rec.get("prompt"), str):
            context = [{"role": "user", "content": rec["prompt"]}]
        else:
            raise DataError(path, "needs 'context' (list of messages) or 'prompt' (string)", line=where)
        if response_field:
            fields = [response_field]
        elif "response" in rec:
            fields = ["response"]
        else:
            fields = sorted((f for f in rec if _RESPONSE_FIELD_RE.match(f)), key=lambda f: int(f[8:]))
        if not fields:
            raise DataError(path, "no 'response' (or response1, response2, ...) field; use --response-field",
                            line=where)
        base = str(rec.get("id") or rec.get("item_id") or rec.get("pair_id") or default_id)
        for f in fields:
            if not isinstance(rec.get(f), str):
                raise DataError(path, "missing or not a string", line=where, field=f)
            rows.append({"id": base if len(fields) == 1 and f == "response" else f"{base}:{f}",
                         "context": context, "response": rec[f], "response_field": f})
    return rows


def format_table(rows: list[dict], principles: list[str], scores: list[list[float]]) -> str:
    """A plain-text table: one row per response, one ``score answer`` column per principle."""
    legend = [f"[{j + 1}] {p}" for j, p in enumerate(principles)]
    header = ["id"] + [f"[{j + 1}]" for j in range(len(principles))]
    body = [[r["id"]] + [f"{scores[j][i]:+.3f} {'Yes' if scores[j][i] > 0 else 'No'}" for j in range(len(principles))]
            for i, r in enumerate(rows)]
    widths = [max(len(line[c]) for line in [header] + body) for c in range(len(header))]
    fmt = lambda line: "  ".join(x.ljust(w) if c == 0 else x.rjust(w) for c, (x, w) in enumerate(zip(line, widths)))
    return "\n".join(["principles:"] + ["  " + s for s in legend] + [fmt(header)] + [fmt(line) for line in body])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlbff_lib.reward_models.scoring",
                                     description="Score responses with a scalar principle reward model.")
    parser.add_argument("--model", required=True, help="model folder or hub name (causal LM + tokenizer)")
    parser.add_argument("--principle", action="append", required=True, help="a principle; repeat for more columns")
    parser.add_argument("--input", required=True, help=".jsonl (one record per line) or .json (object or list)")
    parser.add_argument("--output", help="write one JSON line per response here")
    parser.add_argument("--response-field", help="the field holding the response (default: response, "
                        "else every responseN field)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=4096, help="tokens per input (cut from the left)")
    parser.add_argument("--device-map", default=None, help='e.g. "auto" to spread a large model over GPUs')
    args = parser.parse_args(argv)
    if len(set(args.principle)) != len(args.principle):
        parser.error("--principle: each principle may be given once")
    try:
        rows = read_inputs(args.input, args.response_field)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import transformers

    transformers.utils.logging.disable_progress_bar()
    model, tok = load_scorer(args.model, args.device_map)
    columns, n_cut = [], 0
    for p in args.principle:
        res = score([r["context"] for r in rows], [r["response"] for r in rows], p, model, tok,
                    batch_size=args.batch_size, max_length=args.max_length)
        columns.append(res.scores)
        n_cut = max(n_cut, res.n_truncated)
    print(format_table(rows, args.principle, columns))
    if n_cut:
        print(f"{n_cut} of {len(rows)} inputs were cut from the left to {args.max_length} tokens", file=sys.stderr)
    if args.output:
        from rlbff_lib.core.io import write_jsonl

        write_jsonl(args.output, [
            {"id": r["id"], "response_field": r["response_field"],
             "scores": {p: columns[j][i] for j, p in enumerate(args.principle)},
             "answers": {p: "Yes" if columns[j][i] > 0 else "No" for j, p in enumerate(args.principle)}}
            for i, r in enumerate(rows)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
