"""Principle extraction: one feedback text -> binary principles with quoted evidence.

RLBFF (arXiv 2509.21319, section 2) has an LLM read each single HelpSteer3 feedback
text and list the principles it judges, each as
``{"evidence": verbatim quote, "principle": short phrase, "fulfillment": Yes|No|Partially}``.
The later filters (evidence check, helpfulness, Partially, consensus) live elsewhere.

Backends (``ExtractionConfig.backend``):

- ``openai``: any OpenAI-compatible chat-completions endpoint (DeepSeek-V3-0324 in the
  paper, a local vLLM/SGLang server, a hosted API), zero-shot with the versioned prompt
  ``prompts/extraction_<version>.txt``, through the project's one client
  (:mod:`rlbff_lib.core.http`): a preflight before the first request, a bounded pool of
  workers, retries of what a retry can mend, and a stop at the first 401/403/404. Answers
  are parsed strictly and validated; a bad answer is asked again a bounded number of
  times, then recorded as failed with its reason. The API key is read from the
  environment variable named by ``api_key_env`` and is never written anywhere.
- ``rules``: an offline, transparent extractor (a phrase lexicon of common principle
  concepts, polarity and "partially" cues, the sentence as evidence). Smoke uses ``openai`` against
  the simulated LLM the ``principles`` stage serves itself (``rlbff_lib.synthetic.extraction_server``).

Every answer goes to an append-only JSONL cache (:class:`rlbff_lib.core.cache.JsonlCache`) keyed by
``stable_hash(backend, model, prompt_version, feedback_text)``: a killed run resumes
without asking again for what was answered, a finished run reproduces without the
endpoint, and a line cut by a crash is counted, reported and its item asked again.

Command line::

    python -m rlbff_lib.principles.extraction --backend openai --base-url URL --model NAME \\
        --api-key-env VAR --input FEEDBACK.jsonl --cache CACHE.jsonl --out OUT.jsonl \\
        --concurrency N --max-failure-share X
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from rlbff_lib.core.cache import JsonlCache
from rlbff_lib.core.http import ChatClient, EndpointConfig, EndpointError, RequestFailed, api_key
from rlbff_lib.core.io import DataError, OutputError, check_writable, read_jsonl, stable_hash, write_jsonl
from rlbff_lib.core.progress import quiet_mode

log = logging.getLogger("rlbff.extraction")

PROMPT_DIR = Path(__file__).resolve().parent / "prompts"
FULFILLMENT = ("Yes", "No", "Partially")
ANSWER_KEYS = ("evidence", "principle", "fulfillment")
HELPFULNESS_PRINCIPLE = "helpful"
RULES_MODEL = "rules-lexicon-v1"  # bump when the lexicon changes: it is part of the cache key
RULES_PROMPT_VERSION = "none"
PARAMS = "principles.extraction"  # where params.yaml sets this config (named in error messages)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ---------------------------------------------------------------- configuration

@dataclass
class ExtractionConfig:
    """The ``extraction`` stage.

    backend: ``rules`` (offline lexicon) or ``openai`` (any
      OpenAI-compatible chat-completions endpoint).
    base_url: the endpoint's base URL, e.g. ``http://127.0.0.1:8000/v1``; ``/chat/completions``
      is appended.
    model: the served model name (paper: DeepSeek-V3-0324).
    api_key_env: the NAME of the environment variable that holds the API key ("" for no key).
    prompt_version: selects ``prompts/extraction_<version>.txt``; part of the cache key.
    concurrency: requests in flight at once.
    max_retries: HTTP retries per request (429, 5xx, timeouts, dropped connections).
    max_parse_retries: times a malformed, truncated or empty answer is asked again.
    timeout_s: per-request timeout. temperature, max_tokens: sampling settings.
    failure_threshold: share of failed (non-skipped) items above which the stage fails.
    retry_failed: on a rerun, ask again for items whose cached answer failed.
    backoff_base_s, backoff_max_s: exponential backoff ``base * 2**attempt`` capped, with jitter.
    max_retry_after_s: cap on a server's ``Retry-After``.
    max_feedback_chars: longer feedback texts are skipped (HelpSteer3 texts are 2-10 sentences).
    max_principle_chars: longest accepted principle phrase.
    """

    backend: Literal["rules", "openai"] = "rules"
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "deepseek-ai/DeepSeek-V3-0324"
    api_key_env: str = "OPENAI_API_KEY"
    prompt_version: str = "v1"
    concurrency: int = 8
    max_retries: int = 6
    max_parse_retries: int = 2
    timeout_s: float = 120.0
    temperature: float = 0.0
    max_tokens: int = 2048
    failure_threshold: float = 0.02
    retry_failed: bool = True
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 300.0
    max_feedback_chars: int = 20_000
    max_principle_chars: int = 100

    def __post_init__(self):
        if self.backend not in ("rules", "openai"):
            raise ValueError(f"backend: must be 'rules' or 'openai', got {self.backend!r}")
        if self.backend == "openai":
            if not re.match(r"^https?://[^\s/]+", self.base_url or ""):
                raise ValueError(f"base_url: must start with http:// or https://, got {self.base_url!r}")
            if not (self.model or "").strip():
                raise ValueError("model: must name the served model")
        if self.api_key_env and not _ENV_NAME.match(self.api_key_env):
            # never echo the value: a user may have pasted the key itself here
            raise ValueError("api_key_env: must be the NAME of an environment variable (letters, digits, _), "
                             "not the key itself")
        if not re.match(r"^[A-Za-z0-9_.-]+$", self.prompt_version or ""):
            raise ValueError(f"prompt_version: must be a short name like 'v1', got {self.prompt_version!r}")
        if self.backend == "openai" and not prompt_path(self.prompt_version).exists():
            raise ValueError(f"prompt_version: no prompt file {prompt_path(self.prompt_version)}")
        for name in ("concurrency", "max_tokens", "max_feedback_chars", "max_principle_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("max_retries", "max_parse_retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("timeout_s", "backoff_max_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("backoff_base_s", "max_retry_after_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature: must be in [0, 2], got {self.temperature}")
        if not 0.0 <= self.failure_threshold <= 1.0:
            raise ValueError(f"failure_threshold: must be in [0, 1], got {self.failure_threshold}")

    @property
    def cache_model(self) -> str:
        """The model part of the cache key (the lexicon version for ``rules``)."""
        return RULES_MODEL if self.backend == "rules" else self.model

    @property
    def cache_prompt_version(self) -> str:
        return RULES_PROMPT_VERSION if self.backend == "rules" else self.prompt_version

    def endpoint(self) -> EndpointConfig:
        """The ``openai`` backend's endpoint (:class:`rlbff_lib.core.http.EndpointConfig`)."""
        return EndpointConfig(
            self.base_url, self.model, self.api_key_env, timeout_s=self.timeout_s, max_retries=self.max_retries,
            backoff_base_s=self.backoff_base_s, backoff_max_s=self.backoff_max_s,
            max_retry_after_s=self.max_retry_after_s, concurrency=self.concurrency,
            max_failure_share=self.failure_threshold, service="extraction endpoint",
            url_param=f"{PARAMS}.base_url", model_param=f"{PARAMS}.model", key_param=f"{PARAMS}.api_key_env")

    def preflight(self) -> None:
        """``openai`` backend: fail in seconds, naming the parameter, when the key's variable is unset
        or the endpoint is unreachable or does not serve ``model`` (:func:`rlbff_lib.core.http.check_endpoint`)."""
        if self.backend == "openai":
            self.endpoint().check()


def prompt_path(version: str) -> Path:
    return PROMPT_DIR / f"extraction_{version}.txt"


def load_prompt(version: str) -> str:
    """The versioned zero-shot prompt; ``{feedback}`` marks where the feedback goes."""
    text = prompt_path(version).read_text(encoding="utf-8")
    if "{feedback}" not in text:
        raise ValueError(f"prompt_version: {prompt_path(version)} has no {{feedback}} placeholder")
    return text


def cache_key(cfg: ExtractionConfig, text: str) -> str:
    return stable_hash(cfg.backend, cfg.cache_model, cfg.cache_prompt_version, text)


# ---------------------------------------------------------------- input

def feedback_items(records: Iterable[dict]) -> list[dict]:
    """One item per feedback text of HelpSteer3-Feedback records.

    ``item_id`` is ``"{record_id}:{response}:{annotator}"`` where ``record_id`` is the
    record's ``id`` (its index when absent), ``response`` is 1 or 2 and ``annotator``
    the 0-based position in ``feedback1`` / ``feedback2``.
    """
    items = []
    for index, rec in enumerate(records):
        record_id = rec.get("id", index)
        for response in (1, 2):
            for annotator, text in enumerate(rec.get(f"feedback{response}") or []):
                items.append({
                    "item_id": f"{record_id}:{response}:{annotator}",
                    "record_id": record_id,
                    "response": response,
                    "annotator": annotator,
                    "text": text,
                })
    return items


def validate_record(path: str | os.PathLike, rec: dict, line: int) -> None:
    """Check the fields extraction relies on; raises :class:`DataError` (file, line, field)."""
    for key in ("domain", "language", "context", "response1", "response2"):
        if key not in rec:
            raise DataError(path, "missing field", line=line, field=key)
    for key in ("domain", "language", "response1", "response2"):
        if not isinstance(rec[key], str):
            raise DataError(path, f"must be a string, got {type(rec[key]).__name__}", line=line, field=key)
    if not isinstance(rec["context"], list) or not all(isinstance(m, dict) for m in rec["context"]):
        raise DataError(path, "must be a list of chat messages", line=line, field="context")
    if "id" in rec and (isinstance(rec["id"], bool) or not isinstance(rec["id"], (str, int))):
        raise DataError(path, f"must be a string or an integer, got {rec['id']!r}", line=line, field="id")
    for key in ("feedback1", "feedback2"):  # [] when an annotator wrote none, never absent (HelpSteer3's schema)
        if key not in rec:
            raise DataError(path, "missing field", line=line, field=key)
        if not isinstance(rec[key], list) or not all(isinstance(t, str) for t in rec[key]):
            raise DataError(path, "must be a list of strings", line=line, field=key)


def read_feedback_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read and validate a whole HelpSteer3-Feedback JSONL file (before any request).

    Record ids must be unique; a record without ``id`` gets its 0-based record index.
    """
    records = read_jsonl(path, validate=lambda rec, line: validate_record(path, rec, line))
    seen: dict[Any, int] = {}
    for index, rec in enumerate(records):
        rid = rec.get("id", index)
        if rid in seen:
            raise DataError(path, f"duplicate id {rid!r} (also record {seen[rid] + 1})", field="id")
        seen[rid] = index
    return records


# ---------------------------------------------------------------- answer parsing

class AnswerError(ValueError):
    """An answer that is not a valid principle list; the message is the reason."""


_FENCE = re.compile(r"^```[ \t]*(?:json)?\s*(.*?)\s*```$", re.S | re.I)


def parse_answer(raw: str | None, max_principle_chars: int = 100) -> list[dict]:
    """Parse a model's answer strictly: a JSON list (a ```json fence is tolerated) of
    objects with exactly ``evidence, principle, fulfillment``, non-empty strings,
    fulfillment one of Yes/No/Partially (case-insensitive, returned canonical).
    Raises :class:`AnswerError` with the reason.
    """
    if raw is None or not raw.strip():
        raise AnswerError("empty answer")
    text = raw.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AnswerError(f"invalid JSON ({e.msg} at char {e.pos} of {len(text)})") from None
    if not isinstance(data, list):
        raise AnswerError(f"expected a JSON list, got {type(data).__name__}")
    return [_check_principle(obj, i, max_principle_chars) for i, obj in enumerate(data)]


def _check_principle(obj: Any, i: int, max_principle_chars: int) -> dict:
    if not isinstance(obj, dict):
        raise AnswerError(f"item {i}: expected an object, got {type(obj).__name__}")
    if set(obj) != set(ANSWER_KEYS):
        missing = sorted(set(ANSWER_KEYS) - set(obj))
        extra = sorted(set(obj) - set(ANSWER_KEYS))
        raise AnswerError(f"item {i}: keys must be exactly {list(ANSWER_KEYS)} (missing {missing}, extra {extra})")
    for key in ANSWER_KEYS:
        if not isinstance(obj[key], str) or not obj[key].strip():
            raise AnswerError(f"item {i}: {key} must be a non-empty string")
    fulfillment = {f.lower(): f for f in FULFILLMENT}.get(obj["fulfillment"].strip().lower())
    if fulfillment is None:
        raise AnswerError(f"item {i}: fulfillment must be one of {list(FULFILLMENT)}, got {obj['fulfillment'][:40]!r}")
    principle = " ".join(obj["principle"].split())
    if len(principle) > max_principle_chars:
        raise AnswerError(f"item {i}: principle longer than {max_principle_chars} characters")
    return {"evidence": obj["evidence"].strip(), "principle": principle, "fulfillment": fulfillment}


# ---------------------------------------------------------------- rules backend

@dataclass(frozen=True)
class Concept:
    """One principle of the lexicon: phrases that affirm it and phrases that deny it."""

    principle: str
    positive: tuple[str, ...]
    negative: tuple[str, ...] = ()


# Regex fragments, matched case-insensitively between word boundaries. Where matches
# overlap the longest wins ("grammatical errors" is grammar, not correctness).
LEXICON: tuple[Concept, ...] = (
    Concept("correctness",
            (r"correct(?:ly|ness)?", r"accura(?:te|tely|cy)", r"factual(?:ly)?(?: (?:correct|accurate))?",
             r"error[- ]free", r"free (?:of|from) (?:any )?(?:errors?|mistakes?|bugs?)", r"valid",
             r"(?:is|are|was|were|got|gets|get) (?:\w+ )?right", r"right answer", r"truthful"),
            (r"incorrect(?:ly|ness)?", r"inaccura(?:te|tely|cy|cies)", r"wrong(?:ly)?", r"mistakes?", r"mistaken",
             r"errors?", r"erroneous(?:ly)?", r"bugs?", r"buggy", r"flaw(?:s|ed)?", r"hallucinat\w*",
             r"misinformation", r"invalid", r"false (?:claims?|information|statements?)", r"miscalculat\w*")),
    Concept("conciseness",
            (r"concise(?:ly|ness)?", r"succinct(?:ly|ness)?", r"to the point", r"brief(?:ly)?",
             r"(?:length|size) is appropriate", r"appropriate length"),
            (r"verbose", r"verbosity", r"lengthy", r"wordy", r"(?:too|overly|somewhat|rather|quite|a bit|very|"
             r"unnecessarily|excessively) long", r"long[- ]winded", r"rambl\w+", r"padding", r"padded",
             r"filler(?: sentences| text| words)?", r"unnecessary (?:details?|information|text|content|explanations?|"
             r"sentences?|verbiage)", r"superfluous", r"excessive(?:ly)? (?:details?|length)", r"trimmed",
             r"shortened", r"cut (?:down|by half)")),
    Concept("clarity",
            (r"clear(?:ly)?", r"clarity", r"easy to (?:understand|follow|read)", r"understandable",
             r"well[- ](?:explained|written|articulated)", r"readable", r"coherent", r"straightforward"),
            (r"unclear", r"confusing", r"hard to (?:understand|follow|read)", r"difficult to (?:understand|follow|read)",
             r"vague(?:ly)?", r"ambiguous", r"ambiguity", r"incoherent", r"convoluted")),
    Concept("completeness",
            (r"complete", r"thorough(?:ly|ness)?", r"comprehensive(?:ly)?", r"covers all", r"addresses all",
             r"detailed", r"in detail", r"in depth"),
            (r"incomplete(?:ly)?", r"omits?", r"omitted", r"omissions?", r"left out", r"leaves out",
             r"too (?:short|brief)", r"superficial", r"shallow", r"lacks? (?:depth|detail)")),
    Concept("instruction following",
            (r"instructions?", r"requirements?", r"constraints?", r"as (?:instructed|requested|asked)",
             r"adheres?", r"adhered", r"adherence", r"compl(?:y|ies|ied|iance)", r"follows? the (?:prompt|request)",
             r"meets the (?:user's )?(?:needs|request)"),
            (r"ignor(?:es?|ed|ing) the (?:prompt|request|instructions?|user)", r"disregard\w*", r"deviat\w+",
             r"misunderst\w+ the (?:prompt|request|question|task)", r"misinterpret\w*")),
    Concept("contains inline comments",
            (r"(?:inline |code )?comments?", r"commented", r"commenting", r"annotat(?:es|ed|ions?)"),
            (r"uncommented",)),
    Concept("documents functions with docstrings",
            (r"docstrings?", r"documentation strings?", r"documents? (?:the|each|every|its) functions?",
             r"function-level documentation", r"documentation of the functions?"),
            ()),
    Concept("provides examples",
            (r"(?<!for )examples?", r"sample (?:cases?|code|usage|output)", r"usage examples?", r"worked example",
             r"illustrat(?:es|ed|ing|ion)"),
            ()),
    Concept("includes an explanation",
            (r"explanations?", r"explains?", r"explained", r"walks? through"),
            (r"unexplained",)),
    Concept("working code",
            (r"runs (?:fine|correctly|successfully|well|without (?:any )?(?:errors?|issues?))",
             r"compiles", r"executes (?:correctly|successfully)", r"(?:fully )?functional", r"working code",
             r"works (?:correctly|as expected|fine|well)", r"runnable"),
            (r"non[- ]?functional", r"crash(?:es|ed)?", r"syntax errors?", r"does(?: not|n't) (?:run|compile|work)",
             r"fails to (?:run|compile)", r"broken code")),
    Concept("uses code blocks",
            (r"(?:fenced |markdown )?code blocks?", r"code fences?", r"fenced", r"fences",
             r"(?:triple )?backticks"),
            ()),
    Concept("uses bullet points",
            (r"bullet(?:ed)?(?: points?| lists?)?", r"bullets", r"numbered lists?", r"list (?:structure|format)",
             r"lists?(?! of\b)", r"list of (?:points|steps|items|bullets)"),
            (r"wall of (?:text|prose)", r"block of prose")),
    Concept("formatting",
            (r"format(?:s|ted|ting)?", r"well[- ](?:structured|organi[sz]ed)", r"structured?", r"organi[sz]ed",
             r"layout", r"headings?", r"headers?", r"tables?"),
            (r"unformatted", r"disorgani[sz]ed", r"messy", r"cluttered")),
    Concept("uses bold for key terms",
            (r"bold(?:ed|ing|face)?", r"(?:highlighted|emphasi[sz]ed) in bold", r"emphasi[sz](?:es|ed|ing|e)",
             r"stand out"),
            ()),
    Concept("uses markdown appropriately",
            (r"markdown(?: formatting)?", r"italics?"),
            ()),
    Concept("responds in the prompt's language",
            (r"(?:same|correct|requested|user's|prompt's) language", r"language of the (?:prompt|user|request|question)",
             r"(?:matching|matches) the prompt's language",
             r"(?:answers|responds|replies|stays|written) (?:entirely )?in (?:spanish|french|german|chinese|japanese|"
             r"korean|italian|portuguese|russian|arabic|hindi|dutch|polish|turkish|vietnamese|indonesian|thai)"),
            (r"(?:wrong|different|incorrect) language", r"language mismatch", r"mix(?:es|ed|ing)? languages",
             r"switch(?:es|ed|ing)? (?:to|into) english", r"(?:response|answer|reply) (?:is|was) (?:written |entirely )?"
             r"in english")),
    Concept("avoids repetition",
            (),
            (r"repetiti(?:ve|veness|on|ons)", r"repeats?", r"repeated(?:ly)?", r"repeating", r"redundan(?:t|cy|cies)",
             r"reiterat\w+", r"duplicat(?:e|ed|es|ion)", r"restat(?:e|es|ed|ing)")),
    Concept("answers directly without preamble",
            (r"(?:dives|gets|goes|jumps) straight (?:in)?to the (?:answer|point)", r"answers? directly",
             r"direct answer", r"starts with the (?:substance|answer)"),
            (r"preambles?", r"pleasantr(?:y|ies)", r"chatty", r"(?:starts|opens|begins) with (?:filler|fluff|small talk)",
             r"(?:unnecessary|lengthy) (?:introduction|intro|opening)")),
    Concept("ends with a follow-up question",
            (r"follow[- ]up questions?", r"(?:closing|final) question", r"invit(?:es?|ing) (?:the user )?(?:to continue|"
             r"further questions|a follow[- ]up)", r"ask(?:s|ing)? (?:the user )?(?:whether|if) (?:they|the user) needs?",
             r"asking a question at the end", r"invites? a follow[- ]up"),
            ()),
    Concept("asks clarifying questions",
            (r"clarifying questions?", r"ask(?:s|ed|ing)? (?:the user )?for clarification", r"clarification questions?",
             r"ask(?:s|ed|ing)? (?:the user )?(?:for )?(?:more|further) (?:details|information)"),
            ()),
    Concept("relevance",
            (r"relevant", r"relevance", r"on[- ]topic", r"pertinent"),
            (r"irrelevant", r"irrelevance", r"off[- ]topic", r"unrelated", r"tangential")),
    Concept("safety",
            (r"safe", r"harmless"),
            (r"harmful", r"unsafe", r"dangerous", r"offensive", r"toxic")),
    Concept("grammar and spelling",
            (r"grammar", r"grammatical(?:ly)?(?: correct)?", r"spelling", r"punctuation"),
            (r"grammatical (?:errors?|mistakes?|issues?)", r"typos?", r"misspell\w*", r"spelling (?:errors?|mistakes?)",
             r"ungrammatical")),
    Concept("appropriate tone",
            (r"tone", r"polite(?:ly)?", r"friendly", r"professional(?:ly)?", r"respectful", r"empath\w+"),
            (r"rude", r"condescending", r"preachy", r"robotic", r"patronizing")),
    Concept("adherence to word count requirement",
            (r"word (?:count|limit)", r"\w+[- ]word (?:limit|count|requirement)", r"length (?:requirement|limit|constraint)",
             r"character (?:count|limit)", r"number of words"),
            ()),
    Concept("cites sources",
            (r"sources?(?! code)", r"citations?", r"cites?", r"references?"),
            (r"unsourced", r"uncited")),
    Concept("up-to-date information",
            (r"up[- ]to[- ]date", r"current information", r"latest (?:version|information)"),
            (r"outdated", r"out[- ]of[- ]date", r"deprecated", r"obsolete")),
    Concept("creativity",
            (r"creative(?:ly)?", r"creativity", r"engaging", r"imaginative"),
            (r"generic", r"bland", r"uninspired", r"cliched")),
)

_HELPFUL = re.compile(r"\b(?:(not|slightly|partially|somewhat|mostly|perfectly|very|highly|extremely|fully|completely)\s+)?"
                      r"(un)?helpful\b", re.I)
HELPFULNESS_LEVELS = {"not": "No", "slightly": "No", "partially": "Partially", "somewhat": "Partially",
                      "mostly": "Yes", "perfectly": "Yes", "very": "Yes", "highly": "Yes", "extremely": "Yes",
                      "fully": "Yes", "completely": "Yes", None: "Yes"}

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CLAUSE_BREAK = re.compile(r"\s*(?:;|:\s|\bbut\b|\bhowever\b|\balthough\b|\bthough\b|\bwhereas\b|\bwhile\b|"
                           r"\bdespite\b|\bexcept\b|\byet\b|\brather than\b|,(?=\s+(?:it|this|that|they|which|the (?:code|"
                           r"response|answer|model|output)|there)\b))\s*", re.I)
_TOKEN = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)?|\d+|[^\sA-Za-z\d]")

# Cue words. Negators flip a phrase ("not concise", "no errors"); deficit cues deny a
# desirable phrase ("lacks comments"); partial cues make it "Partially".
NEGATORS = {"not", "no", "never", "without", "none", "nothing", "neither", "nor", "cannot", "hardly", "barely",
            "avoid", "avoids", "avoided", "avoiding", "free",
            "noy"}  # "noy": a frequent typo of "not" in HelpSteer3 feedback
DEFICIT_CUES = {"lack", "lacks", "lacking", "lacked", "fail", "fails", "failed", "failing", "failure", "missing",
                "misses", "missed", "miss", "omit", "omits", "omitted", "prevent", "prevents", "prevented", "absent",
                "absence", "poor", "poorly", "bad", "badly", "improper", "improperly", "unnecessary", "unnecessarily",
                "excessive", "excessively", "awkward", "awkwardly", "insufficient", "insufficiently", "inadequate",
                "inadequately", "overuse", "overuses", "overused", "misuse", "misuses", "incorrect", "incorrectly",
                "wrong", "wrongly", "ignore", "ignores", "ignored", "ignoring", "instead", "abruptly"}
POST_CUES = {"missing", "lacking", "absent", "needed", "omitted", "not", "lacks", "insufficient", "inadequate",
             "necessary", "required", "lacked", "would", "should", "could"}  # "comments would help": a suggestion
PARTIAL_CUES = {"partially", "partly", "partial", "somewhat", "mostly", "largely", "moderately", "fairly",
                "slightly", "semi", "half", "incompletely", "inconsistent", "inconsistently", "thin", "sparse",
                "minimal", "rather"}
FULLY = {"fully", "entirely", "completely", "always", "quite", "totally", "all", "100"}
CONJUNCTIONS = {",", "and", "or", "nor", "/", "&"}
_PARTIAL_PHRASE = re.compile(r"\b(?:to (?:some|a (?:certain|limited)) extent|in part|in places|(?:only )?some of the|"
                             r"only some|(?:only )?part of the|parts of the|some (?:lines|parts|ideas|points|sections|steps)|a bit|"
                             r"a little|a hint of|more than needed)\b", re.I)
_IMPROVE = re.compile(r"\b(?:could|would|should|can|might|may)(?:\s+\w+){0,2}?\s+(?:be(?:en)?\s+)?"
                      r"(?:better|improved?|enhanced?|benefit\w*|more|added|included|have|good|nice|easier|clearer|"
                      r"help\w*|liked|mention|add|include|use)\b|"
                      r"\bneeds?\s+(?:to|more|improvement|some)\b|\b(?:is|are|was|were)\s+(?:necessary|needed|required)\b|"
                      r"\bshould\s+(?:include|add|use|have|provide|be)\b", re.I)
PRE_WINDOW, POST_WINDOW, NEG_TERM_WINDOW = 6, 5, 3


def _compile_lexicon(lexicon: tuple[Concept, ...]) -> list[tuple[re.Pattern, str, bool]]:
    """(pattern, principle, is_positive): one alternation per concept and polarity."""
    out = []
    for concept in lexicon:
        for phrases, positive in ((concept.positive, True), (concept.negative, False)):
            if phrases:
                pattern = re.compile(rf"(?<![\w-])(?:{'|'.join(phrases)})(?![\w-])", re.I)
                out.append((pattern, concept.principle, positive))
    return out


_LEXICON_PATTERNS = _compile_lexicon(LEXICON)


def _spans(text: str, breaker: re.Pattern) -> list[tuple[int, int]]:
    """(start, end) of the non-blank pieces of ``text`` between ``breaker`` matches."""
    spans, start = [], 0
    for m in breaker.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        piece = text[s:e]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            out.append((s + lead, s + len(piece.rstrip())))
    return out


def _matches(clause: str) -> list[tuple[int, int, str, bool]]:
    """Non-overlapping lexicon matches (start, end, principle, positive); the longest wins."""
    found = [(m.start(), m.end(), principle, positive)
             for pattern, principle, positive in _LEXICON_PATTERNS for m in pattern.finditer(clause)]
    chosen: list[tuple[int, int, str, bool]] = []
    for f in sorted(found, key=lambda f: -(f[1] - f[0])):
        if all(f[1] <= c[0] or f[0] >= c[1] for c in chosen):
            chosen.append(f)
    return sorted(chosen)


def _tokens(text: str) -> list[str]:
    return [t.lower().replace("’", "'") for t in _TOKEN.findall(text)]


def _is_negator(token: str) -> bool:
    return token in NEGATORS or token.endswith("n't")


def _after(clause: str, end: int) -> list[str]:
    """The tokens after a match, up to the next conjunction or comma (at most POST_WINDOW)."""
    out = []
    for token in _tokens(clause[end:]):
        if token in CONJUNCTIONS or token in {"but", "."}:
            break
        out.append(token)
    return out[:POST_WINDOW]


def _polarity(clause: str, start: int, end: int, positive: bool, window_start: int) -> str:
    """Fulfillment of one lexicon match from the cue words around it in its clause.

    Cues are looked for in the few tokens before the match (from ``window_start``) and
    after it (up to the next conjunction or comma); a phrase such as "only some of the"
    anywhere in the clause makes it Partially; a suggestion earlier in the clause
    ("could have been better if there were comments") denies it.
    """
    before = _tokens(clause[window_start:start])[-PRE_WINDOW:]
    after = _after(clause, end)
    if not positive:  # a defect phrase: "no errors" / "avoids repetition" affirm the principle
        near = before[-NEG_TERM_WINDOW:]
        if any(_is_negator(t) for t in near):
            return "Yes"
        if any(t in PARTIAL_CUES for t in near + after + _tokens(clause[start:end])) \
                or _PARTIAL_PHRASE.search(clause):
            return "Partially"
        return "No"
    for i, token in enumerate(before):
        if token in FULLY and any(_is_negator(t) for t in before[:i]):
            return "Partially"  # "does not fully follow"
    if any(t in PARTIAL_CUES for t in before[-3:] + after) or _PARTIAL_PHRASE.search(clause):
        return "Partially"
    if any(_is_negator(t) or t in DEFICIT_CUES for t in before) or any(t in POST_CUES for t in after):
        return "No"
    if _IMPROVE.search(clause[:start]):
        return "No"
    return "Yes"


def _groups(matches: list[tuple[int, int, str, bool]], clause: str) -> list[list[tuple[int, int, str, bool]]]:
    """Consecutive matches joined only by commas/and/or form one list ("comments and examples")."""
    groups: list[list[tuple[int, int, str, bool]]] = []
    for m in matches:
        if groups and all(t in CONJUNCTIONS for t in _tokens(clause[groups[-1][-1][1]:m[0]])):
            groups[-1].append(m)
        else:
            groups.append([m])
    return groups


def _clause_principles(clause: str) -> list[tuple[str, str]]:
    """(principle, fulfillment) for each lexicon match of one clause, in order.

    The items of a list ("lacks comments and examples", "clear and complete code is
    needed") share the cues before the list and after it; a defect word right before a
    phrase denies it ("the incomplete explanation"); a negator consumed by a defect
    phrase ("no errors and is well commented") does not reach later phrases.
    """
    out: list[tuple[str, str]] = []
    window_start = 0
    for group in _groups(_matches(clause), clause):
        start, end = group[0][0], group[-1][1]
        for i, (m_start, _, principle, positive) in enumerate(group):
            prev = group[i - 1] if i else None
            if prev and positive and not prev[3] and not clause[prev[1]:m_start].strip():
                fulfillment = "No"  # a defect word as adjective: "the incomplete explanation"
            else:
                fulfillment = _polarity(clause, start, end, positive, window_start)
            out.append((principle, fulfillment))
        if not group[-1][3]:
            window_start = end
    return out


def helpfulness_principle(sentence: str) -> dict | None:
    """The generic helpfulness judgement of an opening sentence ("The response is mostly helpful.")."""
    m = _HELPFUL.search(sentence)
    if not m:
        return None
    level = "not" if m.group(2) else (m.group(1) or "").lower() or None
    return {"evidence": sentence, "principle": HELPFULNESS_PRINCIPLE, "fulfillment": HELPFULNESS_LEVELS[level]}


def rules_extract(text: str) -> list[dict]:
    """Principles of one feedback text by the offline lexicon.

    The opening sentence gives the generic helpfulness principle; every sentence is
    cut into clauses at contrast words (but, however, although, ...), each lexicon
    phrase found gets its polarity from the cue words around it, and the sentence
    (verbatim) is the evidence. The first judgement of a principle wins.
    """
    principles: list[dict] = []
    seen: set[str] = set()
    for n, (s, e) in enumerate(_spans(text, _SENTENCE_END)):
        sentence = text[s:e]
        if n == 0:
            helpful = helpfulness_principle(sentence)
            if helpful:
                principles.append(helpful)
                seen.add(HELPFULNESS_PRINCIPLE)
        for cs, ce in _spans(sentence, _CLAUSE_BREAK):
            for principle, fulfillment in _clause_principles(sentence[cs:ce]):
                if principle not in seen:
                    seen.add(principle)
                    principles.append({"evidence": sentence, "principle": principle, "fulfillment": fulfillment})
    return principles


# ---------------------------------------------------------------- openai backend

@dataclass
class Stats:
    """Counters of one run (reported in the summary; HTTP requests and retries come from the client)."""

    requests: int = 0
    http_retries: int = 0
    parse_retries: int = 0
    cache_hits: int = 0
    corrupt_cache_lines: int = 0


def _correction(reason: str) -> str:
    return (f"Your answer could not be used: {reason}. Answer again with only the JSON list of "
            '{"evidence", "principle", "fulfillment"} objects, nothing else.')


async def ask_openai(client: ChatClient, prompt: str, text: str, cfg: ExtractionConfig, stats: Stats) -> dict:
    """Extract one feedback text; returns a cache row body (status, reason, raw, principles, attempts).

    A failed request is recorded as failed with its reason; an :class:`EndpointError` propagates."""
    base = [{"role": "user", "content": prompt.replace("{feedback}", text)}]
    messages, raw, reason = base, None, ""
    for attempt in range(cfg.max_parse_retries + 1):
        if attempt:
            stats.parse_retries += 1
        try:
            out = await client.acomplete(messages, cfg.max_tokens, cfg.temperature)
        except RequestFailed as e:
            return {"status": "failed", "reason": client.redact(str(e)), "raw": client.redact(raw or ""),
                    "principles": [], "attempts": attempt + 1}
        raw, finish = out["content"], out["finish_reason"]
        try:
            principles = parse_answer(raw, cfg.max_principle_chars)
            return {"status": "ok", "reason": "", "raw": client.redact(raw), "principles": principles,
                    "attempts": attempt + 1}
        except AnswerError as e:
            reason = f"truncated answer (finish_reason=length): {e}" if finish == "length" else str(e)
        if attempt < cfg.max_parse_retries:
            log.info("unusable answer (%s); asking again (%d/%d)", reason, attempt + 1, cfg.max_parse_retries)
        messages = base + [{"role": "assistant", "content": raw or "(empty)"},
                           {"role": "user", "content": _correction(reason)}]
    return {"status": "failed", "reason": f"no valid answer in {cfg.max_parse_retries + 1} attempts: {reason}",
            "raw": client.redact(raw or ""), "principles": [], "attempts": cfg.max_parse_retries + 1}


# ---------------------------------------------------------------- cache

CACHE_STATUSES = ("ok", "failed")


class ExtractionCache(JsonlCache):
    """The answer cache (:class:`rlbff_lib.core.cache.JsonlCache`), keyed by :func:`cache_key`;
    a row also needs ``status`` (ok | failed) and ``principles``."""

    def __init__(self, path: str | os.PathLike | None, fsync: bool = True):
        super().__init__(path, fsync, valid=lambda row: row.get("status") in CACHE_STATUSES
                         and isinstance(row.get("principles"), list))


# ---------------------------------------------------------------- running

def _skip_reason(text: Any, cfg: ExtractionConfig) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return "empty feedback text"
    if len(text) > cfg.max_feedback_chars:
        return f"feedback text longer than max_feedback_chars={cfg.max_feedback_chars} ({len(text)})"
    return None


def _cache_row(cfg: ExtractionConfig, key: str, text: str, answer: dict) -> dict:
    return {"key": key, "backend": cfg.backend, "model": cfg.cache_model, "prompt_version": cfg.cache_prompt_version,
            "text_hash": stable_hash(text)[:16], "time": round(time.time(), 3), **answer}


async def _ask_all(client: ChatClient, todo: dict[str, str], cfg: ExtractionConfig, cache: ExtractionCache,
                   stats: Stats, on_done: Callable[[str], None]) -> None:
    """Ask the endpoint for every (key -> text) with ``cfg.concurrency`` workers; cache each answer.

    An item counts as done (``on_done``) only once its answer is durably in the cache (group
    commit, :meth:`JsonlCache.writer`). The first :class:`EndpointError` cancels every worker and
    propagates: nothing more is sent.
    """
    prompt = load_prompt(cfg.prompt_version)
    queue: asyncio.Queue = asyncio.Queue()
    for pair in todo.items():
        queue.put_nowait(pair)
    pending: asyncio.Queue = asyncio.Queue()
    writer = asyncio.create_task(cache.writer(pending))

    async def worker() -> None:
        while True:
            try:
                key, text = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            answer = await ask_openai(client, prompt, text, cfg, stats)
            written = asyncio.get_running_loop().create_future()
            pending.put_nowait((_cache_row(cfg, key, text, answer), written))
            await written
            on_done(key)

    workers = [asyncio.create_task(worker()) for _ in range(min(cfg.concurrency, max(1, len(todo))))]
    try:
        done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        pending.put_nowait(None)  # answers already received are written before the run ends
        await writer


def run_extraction(items: list[dict], cfg: ExtractionConfig, cache_path: str | os.PathLike | None,
                   progress: Callable[[int, int], None] | None = None) -> tuple[list[dict], dict]:
    """Extract principles for every item; returns ``(rows, summary)``.

    ``rows`` has exactly one row per item, in order: the item's fields plus ``status``
    (``ok`` | ``failed`` | ``skipped``), ``reason`` (empty when ok) and ``principles``.
    Answers come from the cache when present (failed ones are asked again when
    ``cfg.retry_failed``); identical texts are asked once. ``progress(done, total)`` is
    called as items finish. ``summary`` holds the counts, cache hits, requests made,
    retries and corrupt cache lines, and ``passed`` (failure share within the threshold).
    """
    start = time.time()
    stats = Stats()
    cache = ExtractionCache(cache_path, fsync=cfg.backend == "openai")
    stats.corrupt_cache_lines = cache.corrupt_count
    keys: list[str | None] = []
    todo: dict[str, str] = {}
    waiting: dict[str, int] = {}
    for item in items:
        if _skip_reason(item.get("text"), cfg):
            keys.append(None)
            continue
        key = cache_key(cfg, item["text"])
        keys.append(key)
        cached = cache.get(key)
        if cached is not None and (cached["status"] == "ok" or not cfg.retry_failed):
            stats.cache_hits += 1
        else:
            todo.setdefault(key, item["text"])
            waiting[key] = waiting.get(key, 0) + 1
    total = len(items)
    done = total - sum(waiting.values())
    if progress:
        progress(done, total)

    def on_done(key: str) -> None:
        nonlocal done
        done += waiting[key]
        if progress:
            progress(done, total)

    if todo and cfg.backend == "rules":
        for key, text in todo.items():
            answer = {"status": "ok", "reason": "", "raw": "", "principles": rules_extract(text), "attempts": 1}
            cache.put(_cache_row(cfg, key, text, answer))
            on_done(key)
    elif todo:
        cfg.preflight()  # seconds: the endpoint is reachable, serves cfg.model and takes the key
        with ChatClient(cfg.endpoint()) as client:
            try:
                client.run(_ask_all(client, todo, cfg, cache, stats, on_done))
            finally:
                stats.requests, stats.http_retries = client.stats.requests, client.stats.retries
    rows = [_result_row(item, key, cache, cfg) for item, key in zip(items, keys)]
    return rows, _summary(rows, stats, cfg, time.time() - start)


def _result_row(item: dict, key: str | None, cache: ExtractionCache, cfg: ExtractionConfig) -> dict:
    base = {k: item[k] for k in ("item_id", "record_id", "response", "annotator", "text") if k in item}
    if key is None:
        return {**base, "status": "skipped", "reason": _skip_reason(item.get("text"), cfg), "principles": []}
    answer = cache.get(key)
    return {**base, "status": answer["status"], "reason": answer.get("reason", ""),
            "principles": answer["principles"] if answer["status"] == "ok" else []}


def _summary(rows: list[dict], stats: Stats, cfg: ExtractionConfig, elapsed: float) -> dict:
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "skipped")}
    asked = counts["ok"] + counts["failed"]
    share = counts["failed"] / asked if asked else 0.0
    return {
        "backend": cfg.backend, "model": cfg.cache_model, "prompt_version": cfg.cache_prompt_version,
        "items": len(rows), **counts,
        "principles": sum(len(r["principles"]) for r in rows),
        "cache_hits": stats.cache_hits, "requests": stats.requests, "http_retries": stats.http_retries,
        "parse_retries": stats.parse_retries, "corrupt_cache_lines": stats.corrupt_cache_lines,
        "failure_share": round(share, 6), "failure_threshold": cfg.failure_threshold,
        "passed": share <= cfg.failure_threshold, "elapsed_s": round(elapsed, 2),
    }


# ---------------------------------------------------------------- progress and command line

def make_progress(desc: str = "extraction", every: float = 0.1) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback: tqdm on a terminal, else a line every ``every``
    (also inside papermill, see :func:`rlbff_lib.core.progress.quiet_mode`)."""
    state: dict[str, Any] = {"bar": None, "next": 0.0, "start": time.time()}

    def report(done: int, total: int) -> None:
        if not quiet_mode():
            if state["bar"] is None:
                from tqdm.auto import tqdm

                state["bar"] = tqdm(total=total, desc=desc)
            state["bar"].update(done - state["bar"].n)
            if done >= total:
                state["bar"].close()
            return
        share = done / total if total else 1.0
        if share >= state["next"] or done >= total:
            print(f"{desc}: {done}/{total} ({100 * share:.0f}%) {time.time() - state['start']:.0f}s",
                  file=sys.stderr, flush=True)
            state["next"] = (int(share / every) + 1) * every

    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rlbff_lib.principles.extraction", description=__doc__.split("\n\n")[0])
    defaults = ExtractionConfig()
    p.add_argument("--backend", choices=["rules", "openai"], default=defaults.backend)
    p.add_argument("--base-url", default=defaults.base_url)
    p.add_argument("--model", default=defaults.model)
    p.add_argument("--api-key-env", default=defaults.api_key_env,
                   help="NAME of the environment variable holding the API key ('' for none)")
    p.add_argument("--prompt-version", default=defaults.prompt_version)
    p.add_argument("--input", required=True, help="HelpSteer3-Feedback JSONL")
    p.add_argument("--cache", required=True, help="append-only answer cache (JSONL)")
    p.add_argument("--out", required=True, help="output JSONL, one line per feedback text")
    p.add_argument("--concurrency", type=int, default=defaults.concurrency)
    p.add_argument("--max-failure-share", type=float, default=defaults.failure_threshold)
    p.add_argument("--max-retries", type=int, default=defaults.max_retries)
    p.add_argument("--max-parse-retries", type=int, default=defaults.max_parse_retries)
    p.add_argument("--timeout", type=float, default=defaults.timeout_s)
    p.add_argument("--temperature", type=float, default=defaults.temperature)
    p.add_argument("--max-tokens", type=int, default=defaults.max_tokens)
    p.add_argument("--backoff-base", type=float, default=defaults.backoff_base_s)
    p.add_argument("--backoff-max", type=float, default=defaults.backoff_max_s)
    p.add_argument("--no-retry-failed", action="store_true", help="keep cached failures instead of asking again")
    return p


def config_from_args(args: argparse.Namespace) -> ExtractionConfig:
    return ExtractionConfig(
        backend=args.backend, base_url=args.base_url, model=args.model, api_key_env=args.api_key_env,
        prompt_version=args.prompt_version, concurrency=args.concurrency, max_retries=args.max_retries,
        max_parse_retries=args.max_parse_retries, timeout_s=args.timeout, temperature=args.temperature,
        max_tokens=args.max_tokens, failure_threshold=args.max_failure_share, retry_failed=not args.no_retry_failed,
        backoff_base_s=args.backoff_base, backoff_max_s=args.backoff_max)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (1: failure share above the threshold, 2: bad input,
    a missing key or an unusable endpoint)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_from_args(args)
        if cfg.backend == "openai":
            api_key(cfg.api_key_env, "--api-key-env")  # fail before reading anything when the key is missing
        check_writable([args.out, args.cache])  # named now, not after every request
        records = read_feedback_jsonl(args.input)
        if not records:
            raise DataError(args.input, "no feedback records (empty file)")
        items = feedback_items(records)
        rows, summary = run_extraction(items, cfg, args.cache, progress=make_progress())
    except (ValueError, DataError, EndpointError, OutputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_jsonl(args.out, rows)
    print(json.dumps({"out": str(args.out), **summary}), flush=True)
    if not summary["passed"]:
        print(f"error: failure share {summary['failure_share']:.4f} exceeds {cfg.failure_threshold}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
