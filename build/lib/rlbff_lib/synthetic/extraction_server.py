"""A simulated extraction LLM behind a local OpenAI-compatible server, noisy at known, seeded rates.

It stands in for DeepSeek-V3 in the ``principles`` stage's LLM code path (smoke, tests, rehearsal).
It sees only the request: it reads the feedback text in the extraction prompt, never the world's truth.

Reading (:func:`read_feedback`): the synthetic world's annotators write their remarks from fixed
templates (``world.COMMENTS``, ``OFFTOPIC``, ``NEUTRAL`` and the opening "The response is {level}
helpful."), so a feedback text is read back, sentence by sentence, into what each sentence says:
(property, stated fulfilment) for a property remark, a principle outside the world's properties for
an off-topic or neutral remark, the overall rating for the opening. A sentence no template matches
(real HelpSteer3 text) is read by the offline rules lexicon.

Answering (:class:`SimulatedExtractor`), in the extraction prompt's JSON format, with the noise a
real LLM shows; each draw is seeded by (``seed``, feedback text), so an answer does not depend on
the order in which requests arrive, and the rates below are the expected shares:

- a remark's principle is named by its usual name (``world.PRINCIPLE_NAMES[p][0]``) or, at
  ``paraphrase_rate``, by one of its paraphrases (near-identical to far in meaning);
- its label is flipped Yes <-> No at ``wrong_label_rate``, hedged to "Partially" at ``hedge_rate``;
  a remark that says "partially" is judged "Partially"; a remark is left out at ``miss_rate``;
- its evidence is the remark verbatim, or at ``misquote_rate`` a misquote (words dropped, swapped,
  replaced, or the case and punctuation changed), which may fail the evidence match;
- at ``invent_rate`` per text, one principle the feedback never judges, with an invented quote;
- the opening rating is listed as a helpfulness principle at ``helpfulness_rate`` per text;
- at ``malformed_rate`` per request (seeded by the text and how often it was asked), an answer that
  is not a valid JSON list (prose around it, cut short with ``finish_reason: length``, or an object).

Serving: :class:`ExtractionServer` (a thread, for tests) and :func:`serve_subprocess` (a child
process on a free port, for the stage) answer ``GET /v1/models``, ``GET /v1/stats`` (the noise
events counted) and ``POST /v1/chat/completions``. Command line::

    python -m rlbff_lib.synthetic.extraction_server --port 8000 [--config '{"seed": 1}']
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, Literal

from rlbff_lib.core.child import child_server
from rlbff_lib.core.io import stable_hash
from rlbff_lib.synthetic import world as W

SERVER_VERSION = "v1"  # bump when reading or noise changes: it is part of the served model name (cache key)
HELPFULNESS_NAMES = ("helpful", "helpfulness", "overall helpfulness")
LEVEL_LABELS = {"not": "No", "slightly": "No", "partially": "Partially", "mostly": "Yes", "perfectly": "Yes"}

# What the world's remarks outside its properties say, as an extractor would name them (principle, label).
OFFTOPIC_READINGS: dict[str, tuple[str, str] | None] = {
    "The tone feels a bit formal.": ("appropriate tone", "Partially"),
    "I would have liked a citation.": ("cites sources", "No"),
    "A link to further reading would be nice.": ("links to further reading", "No"),
    "The response could sound a bit warmer.": ("warm tone", "No"),
    "It might mention a reliable source.": ("cites sources", "No"),
    "The wording is slightly stiff in places.": ("natural wording", "Partially"),
    "A short summary at the end could be added.": ("ends with a summary", "No"),
    "The response addresses the user's request.": ("addresses the request", "Yes"),
    "It stays on the topic of the prompt.": ("relevance", "Yes"),
    "Overall, the response is reasonable.": None,  # judges nothing in particular
    "It understands what the user is asking for.": ("understands the request", "Yes"),
}
_FILLER_WORDS = ("really", "quite", "very", "also", "clearly", "just", "overall", "generally")


# ---------------------------------------------------------------- configuration

@dataclass
class ServeConfig:
    """The extraction server the ``principles`` stage starts and stops itself.

    kind: ``none`` (use ``extraction.base_url`` as given) or ``synthetic`` (this module's simulated
      LLM on a free local port; the stage replaces ``extraction.base_url``, ``model`` (by
      :meth:`served_model`, so the cache never mixes its answers with a real model's or with other
      noise settings) and ``api_key_env`` (none needed)).
    seed: the noise stream. The rates: see the module doc (per remark unless stated).
    """

    kind: Literal["none", "synthetic"] = "synthetic"
    seed: int = 0
    paraphrase_rate: float = 0.15
    wrong_label_rate: float = 0.05
    hedge_rate: float = 0.04
    miss_rate: float = 0.02
    misquote_rate: float = 0.1
    invent_rate: float = 0.15
    helpfulness_rate: float = 0.3
    malformed_rate: float = 0.02

    def __post_init__(self):
        for f in fields(self):
            if f.name.endswith("_rate") and not 0.0 <= getattr(self, f.name) <= 1.0:
                raise ValueError(f"{f.name}: must be in [0, 1], got {getattr(self, f.name)}")
        if self.wrong_label_rate + self.hedge_rate > 1.0:
            raise ValueError(f"wrong_label_rate: wrong_label_rate + hedge_rate must be <= 1, got "
                             f"{self.wrong_label_rate} + {self.hedge_rate}")

    def noise(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "kind"}

    def served_model(self) -> str:
        """The model name the server reports; it names the noise settings (the extraction cache key)."""
        return f"rlbff-simulated-extractor-{SERVER_VERSION}-{stable_hash(self.noise())[:8]}"


# ---------------------------------------------------------------- reading a feedback text

@dataclass(frozen=True)
class Remark:
    """One sentence of a feedback text and what it says. kind: ``opening`` | ``property`` | ``other``
    (a principle outside the world's properties) | ``none`` (judges nothing) | ``unknown``."""

    kind: str
    sentence: str
    principle: str | None = None   # other / opening: the principle; property: the property's name
    stated: str | None = None      # Yes | No | Partially


def _template_regex(template: str) -> str:
    parts = re.split(r"(\{\w+\})", template)
    return "".join(r".+?" if re.fullmatch(r"\{\w+\}", p) else re.escape(p) for p in parts)


def _templates() -> list[tuple[str, Remark]]:
    out = [(f"The response is {level} helpful.", Remark("opening", "", HELPFULNESS_NAMES[0], label))
           for level, label in LEVEL_LABELS.items()]
    for prop, by_label in W.COMMENTS.items():
        for stated, texts in by_label.items():
            out += [(t, Remark("property", "", prop, stated)) for t in texts]
    for text in W.OFFTOPIC + W.NEUTRAL:
        reading = OFFTOPIC_READINGS[text]
        out.append((text, Remark("none", "") if reading is None else Remark("other", "", *reading)))
    return out


_TEMPLATES = _templates()
# longest first, so that a template is never cut short by a shorter one it starts with
_ORDER = sorted(range(len(_TEMPLATES)), key=lambda i: -len(_TEMPLATES[i][0]))
_READER = re.compile("|".join(f"(?P<t{i}>{_template_regex(_TEMPLATES[i][0])})(?=\\s|$)" for i in _ORDER))
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def read_feedback(text: str) -> list[Remark]:
    """The sentences of ``text`` in order, each read by the world's templates (else ``unknown``)."""
    out, pos, n = [], 0, len(text)
    while pos < n:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            break
        m = _READER.match(text, pos)
        if m:
            proto = _TEMPLATES[int(m.lastgroup[1:])][1]
            out.append(Remark(proto.kind, m.group(0), proto.principle, proto.stated))
            pos = m.end()
            continue
        end = _SENTENCE_END.search(text, pos)
        stop = end.start() if end else n
        out.append(Remark("unknown", text[pos:stop]))
        pos = stop
    return out


# ---------------------------------------------------------------- answering

def misquote(sentence: str, rng: random.Random) -> str:
    """The sentence as an LLM might misquote it: a word or two dropped, two words swapped, a word
    replaced, or the case and punctuation changed."""
    words = sentence.split()
    how = rng.choice(("drop", "swap", "replace", "case"))
    if how == "case" or len(words) < 4:
        return sentence.lower().rstrip(".!?")
    if how == "drop":
        for _ in range(rng.randint(1, 2)):
            del words[rng.randrange(1, len(words))]
    elif how == "swap":
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    else:
        words.insert(rng.randrange(1, len(words)), rng.choice(_FILLER_WORDS))
        words[rng.randrange(len(words))] = rng.choice(_FILLER_WORDS)
    return " ".join(words)


class SimulatedExtractor:
    """The simulated LLM: :meth:`answer` gives the content of one chat completion; ``stats`` counts
    the noise events of the answers given (thread-safe)."""

    def __init__(self, cfg: ServeConfig | None = None):
        self.cfg = cfg or ServeConfig()
        self.stats: Counter = Counter()
        self._asked: Counter = Counter()
        self._lock = threading.Lock()

    def principles(self, text: str) -> list[dict]:
        """The principles the simulated LLM lists for a feedback text (deterministic per text)."""
        from rlbff_lib.principles.extraction import rules_extract

        cfg, events = self.cfg, Counter()
        rng = random.Random(stable_hash("rlbff-sim-extractor", cfg.seed, text))
        remarks = read_feedback(text)
        out: list[dict] = []
        for r in remarks:
            if r.kind == "opening":
                if rng.random() < cfg.helpfulness_rate:
                    out.append({"evidence": r.sentence, "principle": rng.choice(HELPFULNESS_NAMES),
                                "fulfillment": r.stated})
                    events["helpfulness_listed"] += 1
            elif r.kind == "other":
                out.append({"evidence": r.sentence, "principle": r.principle, "fulfillment": r.stated})
            elif r.kind == "unknown":
                events["unknown_sentences"] += 1
                out += [p for p in rules_extract(r.sentence) if p["principle"] != "helpful"]
            elif r.kind == "property":
                events["remarks"] += 1
                if rng.random() < cfg.miss_rate:
                    events["missed"] += 1
                    continue
                out.append(self._judge(r.principle, r.stated, r.sentence, rng, events))
        if rng.random() < cfg.invent_rate:
            said = {r.principle for r in remarks if r.kind == "property"}
            spare = sorted(set(W.PROPERTIES) - said)
            if spare:
                prop = rng.choice(spare)
                stated = rng.choice(("Yes", "No"))
                quote = rng.choice([t for t in W.COMMENTS[prop][stated] if "{" not in t] or W.COMMENTS[prop][stated])
                invented = {"evidence": quote, "principle": self._name(prop, rng, events), "fulfillment": stated}
                out.insert(rng.randint(0, len(out)), invented)
                events["invented"] += 1
        seen, unique = set(), []
        for p in out:  # one entry per distinct principle, as the prompt asks
            if p["principle"].lower() not in seen:
                seen.add(p["principle"].lower())
                unique.append(p)
        with self._lock:
            self.stats.update(events)
        return unique

    def _name(self, prop: str, rng: random.Random, events: Counter) -> str:
        names = W.PRINCIPLE_NAMES[prop]
        if rng.random() < self.cfg.paraphrase_rate:
            events["paraphrased"] += 1
            return rng.choice(names[1:])
        return names[0]

    def _judge(self, prop: str, stated: str, sentence: str, rng: random.Random, events: Counter) -> dict:
        name = self._name(prop, rng, events)
        label, u = stated, rng.random()
        if stated != "Partially":
            if u < self.cfg.wrong_label_rate:
                label = "No" if stated == "Yes" else "Yes"
                events["wrong_label"] += 1
            elif u < self.cfg.wrong_label_rate + self.cfg.hedge_rate:
                label = "Partially"
                events["hedged"] += 1
        evidence = sentence
        if rng.random() < self.cfg.misquote_rate:
            evidence = misquote(sentence, rng)
            events["misquoted"] += 1
        return {"evidence": evidence, "principle": name, "fulfillment": label}

    def answer(self, text: str, attempt: int | None = None) -> tuple[str, str]:
        """(content, finish_reason) of the ``attempt``-th request (0-based) for a feedback text; by
        default the number of requests for this text so far (the client asks for one text at a time,
        so this is its attempt whatever the order of other texts)."""
        if attempt is None:
            with self._lock:
                attempt = self._asked[text]
                self._asked[text] += 1
        body = json.dumps(self.principles(text), ensure_ascii=False)
        rng = random.Random(stable_hash("rlbff-sim-extractor-format", self.cfg.seed, text, attempt))
        with self._lock:
            self.stats["requests"] += 1
            if rng.random() >= self.cfg.malformed_rate:
                return body, "stop"
            self.stats["malformed"] += 1
        how = rng.choice(("prose", "truncated", "object"))
        if how == "prose":
            return f"Here are the principles the feedback judges:\n{body}\nLet me know if you need more.", "stop"
        if how == "truncated":
            return body[: max(1, len(body) // 2)], "length"
        return json.dumps({"principles": json.loads(body)}), "stop"


# ---------------------------------------------------------------- the prompt

def _prompt_frames() -> list[tuple[str, str]]:
    """(prefix, suffix) around ``{feedback}`` of every extraction prompt version."""
    from rlbff_lib.principles.extraction import PROMPT_DIR

    out = []
    for path in sorted(PROMPT_DIR.glob("extraction_*.txt")):
        head, _, tail = path.read_text(encoding="utf-8").partition("{feedback}")
        out.append((head, tail))
    return out


def feedback_of(messages: list[dict], frames: list[tuple[str, str]]) -> str | None:
    """The feedback text inside the first user message (None when it is not an extraction prompt)."""
    first = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
    if not isinstance(first, str):
        return None
    for head, tail in frames:
        if first.startswith(head) and first.endswith(tail) and len(first) >= len(head) + len(tail):
            return first[len(head): len(first) - len(tail)]
    return None


# ---------------------------------------------------------------- serving

class ExtractionServer:
    """The simulated extraction LLM on ``host:port`` (0: a free port) in a daemon thread.

    ``with ExtractionServer(cfg) as server:`` ... ``server.base_url`` (ends in ``/v1``).
    """

    def __init__(self, cfg: ServeConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.cfg = cfg or ServeConfig()
        self.extractor = SimulatedExtractor(self.cfg)
        self.model = self.cfg.served_model()
        self.frames = _prompt_frames()
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "ExtractionServer":
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    return self._send(200, {"object": "list", "data": [
                        {"id": server.model, "object": "model", "owned_by": "rlbff"}]})
                if self.path.rstrip("/").endswith("/stats"):
                    with server.extractor._lock:
                        return self._send(200, dict(server.extractor.stats))
                return self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                try:
                    payload = json.loads(body)
                    messages = payload["messages"]
                except (ValueError, KeyError, TypeError):
                    return self._send(400, {"error": {"message": "body must be JSON with 'messages'"}})
                text = feedback_of(messages, server.frames)
                if text is None:
                    return self._send(400, {"error": {"message": "not an extraction prompt (no known "
                                                                 "prompts/extraction_*.txt frame)"}})
                content, finish = server.extractor.answer(text)
                return self._send(200, {
                    "id": "chatcmpl-" + stable_hash(text, content)[:12], "object": "chat.completion",
                    "created": int(time.time()), "model": server.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                 "finish_reason": finish}],
                    "usage": {"prompt_tokens": len(str(messages)) // 4, "completion_tokens": len(content) // 4}})

            def _send(self, status: int, obj: dict) -> None:
                data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@contextmanager
def serve_subprocess(cfg: ServeConfig, timeout_s: float = 60.0) -> Iterator[str]:
    """Run the server in a child process on a free local port; yields its base URL, stops it on exit.

    Fails within ``timeout_s`` naming ``principles.serve`` when the child does not come up.
    """
    cmd = [sys.executable, "-m", "rlbff_lib.synthetic.extraction_server", "--port", "0",
           "--config", json.dumps(asdict(cfg))]
    with child_server(cmd, "principles.serve (the simulated extraction LLM)", "/models", timeout_s) as base_url:
        yield base_url


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rlbff_lib.synthetic.extraction_server",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0: a free port (printed on the first line)")
    p.add_argument("--config", default="{}", help="ServeConfig fields as JSON, e.g. '{\"seed\": 1}'")
    args = p.parse_args(argv)
    try:
        cfg = ServeConfig(**json.loads(args.config))
    except (ValueError, TypeError) as e:
        print(f"error: --config: {e}", file=sys.stderr)
        return 2
    server = ExtractionServer(cfg, args.host, args.port)
    print(f"serving {server.base_url} model {server.model}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
