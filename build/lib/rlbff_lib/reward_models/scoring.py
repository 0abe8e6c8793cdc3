"""Command line: score responses with a reward model, one column per principle.

    python -m rlbff_lib.reward_models.scoring --model PATH --principle "correctness" [--principle "is concise"] \\
        --input FILE.jsonl|FILE.json [--output OUT.jsonl] [--kind scalar|bt|genrm] [--response-field FIELD]

Scores come from :func:`rlbff_lib.reward_models.scorers.load_scorer` (the scalar principle RM by
default: logit(Yes) − logit(No)); ``--max-length`` is its window per input (the prompt plus the
answer token; default: the model's positions; more is refused before the weights load). A principle whose
question takes over half the prompt window is refused before any scoring: it would push the response out. Without
``--output`` a table goes to stdout; with it, one JSON line per response goes to the file and a short summary to
stdout. Progress goes to stderr.

Input records hold ``context`` (chat messages, last one from the user) or ``prompt`` (a
string, taken as one user turn), and the response to score: ``--response-field FIELD`` names
it; otherwise ``response`` is used, and a record without ``response`` (a HelpSteer3 record
such as the card's ``feedback_example.json``) is exploded into one row per ``response1``,
``response2``, ... field. A ``.json`` input is one object or a list of objects.

Threads: ``--threads`` (default 1 on CPU) sets torch's CPU threads; see :data:`DEFAULT_CPU_THREADS`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from pathlib import Path

from rlbff_lib.core.io import DataError, check_writable, iter_jsonl, read_text
from rlbff_lib.models.lm import check_model_dir

# One torch thread on CPU: the smoke-sized models spend their time in many small kernels, where a
# second OpenMP thread mostly waits (and on a busy shared machine spin-waits) for the first.
DEFAULT_CPU_THREADS = 1
_RESPONSE_FIELD_RE = re.compile(r"^response\d+$")


def read_inputs(path: str | Path, response_field: str | None = None) -> list[dict]:
    """Rows ``{"id", "context", "response", "response_field"}`` from a .json or .jsonl file.

    id: the record's ``id`` / ``item_id`` / ``pair_id``, else ``<file stem>[:<line or index>]``,
    with ``:<field>`` appended when a record is exploded into several responses.
    """
    path = Path(path)
    if path.suffix == ".json":  # (line for errors, default id, record)
        try:
            raw = json.loads(read_text(path))  # a byte that is not UTF-8: DataError naming the line
        except DataError:
            raise
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


def summary(rows: list[dict], principles: list[str], scores: list[list[float]], output: str) -> str:
    """A few lines instead of the table when the scores went to a file: per principle, the Yes share and the mean score."""
    lines = [f"scored {len(rows)} responses under {len(principles)} principle(s); written to {output}"]
    for p, col in zip(principles, scores):
        yes = sum(s > 0 for s in col)
        mean = sum(col) / len(col) if col else float("nan")
        lines.append(f"  {p!r}: Yes {yes}/{len(col)}, mean score {mean:+.3f}")
    return "\n".join(lines)


def model_positions(model: str) -> int | None:
    """The model's ``max_position_embeddings`` from its config alone (before the weights load); None if unknown."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model, trust_remote_code=False)
    except (OSError, ValueError):
        return None  # load_scorer names the problem
    return getattr(config.get_text_config(), "max_position_embeddings", None)


def check_principle_fits(tokenizer, principle: str, prompt_budget: int | None) -> None:
    """Raise ``ValueError`` when the principle's turn (the RLBFF question, rendered) takes more than half of the
    prompt window: the conversation and the response would be cut to make room for it."""
    from rlbff_lib.reward_models.prompt import principle_turn, render_ids

    if prompt_budget is None:
        return
    n = len(render_ids(tokenizer, [principle_turn(principle)], add_generation_prompt=True))
    if n > prompt_budget // 2:
        raise ValueError(f"--principle: {principle[:40]!r}... ({len(principle)} characters) takes {n} of the "
                         f"{prompt_budget} prompt tokens; over half, it would push the response out of the window "
                         "(shorten it, or raise --max-length)")


def set_threads(threads: int | None) -> int:
    """torch's CPU threads: ``threads``, else :data:`DEFAULT_CPU_THREADS` on CPU (torch's own on a GPU machine)."""
    import torch

    if threads is None and not torch.cuda.is_available():
        threads = DEFAULT_CPU_THREADS
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> int:
    from rlbff_lib.reward_models.scorers import KINDS

    parser = argparse.ArgumentParser(prog="python -m rlbff_lib.reward_models.scoring",
                                     description="Score responses with a principle reward model.")
    parser.add_argument("--model", required=True, help="model folder or hub name (model + tokenizer)")
    parser.add_argument("--principle", action="append", required=True, help="a principle; repeat for more columns")
    parser.add_argument("--input", required=True, help=".jsonl (one record per line) or .json (object or list)")
    parser.add_argument("--output", help="write one JSON line per response here (stdout then shows a summary)")
    parser.add_argument("--kind", choices=KINDS, default="scalar", help="reward model kind (default: scalar)")
    parser.add_argument("--response-field", help="the field holding the response (default: response, "
                        "else every responseN field)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens per input: prompt + answer token (default: the model's positions); "
                             "conversations are cut from the left")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="GenRM reasoning tokens (--kind genrm)")
    parser.add_argument("--threads", type=int, default=None,
                        help=f"torch CPU threads (default: {DEFAULT_CPU_THREADS} on CPU, torch's own with a GPU)")
    parser.add_argument("--device-map", default=None, help='e.g. "auto" to spread a large model over GPUs')
    args = parser.parse_args(argv)
    if len(set(args.principle)) != len(args.principle):
        parser.error("--principle: each principle may be given once")
    if not all(p.strip() for p in args.principle):
        parser.error("--principle: empty; give the principle's text")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads: must be >= 1, got {args.threads}")
    try:
        rows = read_inputs(args.input, args.response_field)
        if not rows:
            raise DataError(args.input, "no records (empty file)")
        if args.output:  # an unwritable output is named before any model loads
            check_writable([args.output])
        check_model_dir(args.model, "--model")
    except (DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import transformers

    from rlbff_lib.reward_models.scorers import load_scorer

    transformers.utils.logging.disable_progress_bar()
    set_threads(args.threads)
    positions = model_positions(args.model)
    if args.max_length and positions and positions < args.max_length:  # asked for more than the model can read
        print(f"error: --max-length: {args.max_length} tokens exceed the model's {positions} positions "
              f"(max_position_embeddings of {args.model})", file=sys.stderr)
        return 2
    try:
        scorer = load_scorer(args.kind, args.model, args.max_length, args.batch_size, args.max_new_tokens,
                             args.device_map, show_progress=True)
        if args.kind != "bt":  # the bt kind ignores the principle
            for p in args.principle:
                check_principle_fits(scorer.tokenizer, p, scorer.prompt_budget)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    columns, n_cut = [], 0
    with contextlib.redirect_stdout(sys.stderr):  # progress lines never mix with the table
        for p in args.principle:
            res = scorer([r["context"] for r in rows], [r["response"] for r in rows], p)
            columns.append(list(res.scores))
            n_cut = max(n_cut, sum(res.truncated))
    if n_cut:
        print(f"{n_cut} of {len(rows)} inputs were cut from the left to {scorer.prompt_budget} prompt tokens "
              f"(max_length {scorer.max_length})", file=sys.stderr)
    if args.output:
        from rlbff_lib.core.io import write_jsonl

        write_jsonl(args.output, [
            {"id": r["id"], "response_field": r["response_field"],
             "scores": {p: columns[j][i] for j, p in enumerate(args.principle)},
             "answers": {p: "Yes" if columns[j][i] > 0 else "No" for j, p in enumerate(args.principle)}}
            for i, r in enumerate(rows)])
        print(summary(rows, args.principle, columns, args.output))
    else:
        print(format_table(rows, args.principle, columns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
