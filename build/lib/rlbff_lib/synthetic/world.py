"""The synthetic feedback world: a HelpSteer3-Feedback stand-in whose ground truth is known.

Every response is composed from parts so that a set of checkable *properties*
(``concise``, ``inline_comments``, ``arithmetic_correct``, ...) holds or fails by
construction, and annotators write HelpSteer3-style feedback texts about them,
with realistic noise (shared salience, "partially" remarks, off-topic remarks,
mistakes). Because every property has a checker that works on any text, later
stages can be scored against the truth: principle extraction (did we recover
the property and its polarity?), reward models (does the score agree with the
checker?) and alignment (does the policy satisfy the principle more often?).

Layout, top to bottom:
1. text helpers and the property checkers (``PROPERTIES``, ``check``, ``reasoning``), and the names an
   extractor gives each property (``PRINCIPLE_NAMES``: one usual name, paraphrases near and far);
2. content banks (topics, arithmetic, code tasks, four languages);
3. prompts (``sample_prompt``) and the response renderer (``render_response``);
4. annotators (feedback texts, preferences);
5. ``WorldConfig``, ``generate_world`` (records carry HelpSteer3's ``split``, by prompt),
   ``sample_policy_prompts``.

Pure Python + stdlib ``random``; the same config gives the same world byte for byte.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from rlbff_lib.core.io import read_jsonl, stable_hash, write_json, write_jsonl

DOMAINS = ("general", "stem", "code", "multilingual")
LEVELS = ("not", "slightly", "partially", "mostly", "perfectly")  # "The response is {level} helpful."
CONCISE_WORD_LIMIT = 70  # default word limit of `concise` when prompt_info has no "word_limit"
MIN_WORD_LIMIT, MAX_WORD_LIMIT = 60, 300  # the renderer can honour `concise` for limits in this range

# ---------------------------------------------------------------- text helpers

_FENCE_RE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
_INDENT_RE = re.compile(r"^(?: {4}|\t)")
_BULLET_RE = re.compile(r"^\s{0,3}(?:[-*\u2022]|\d{1,3}[.)])\s+(?=\S)")
_SPLIT_RE = re.compile(r"(?<=[.!?])\s+")
_BOLD_RE = re.compile(r"\*\*[^*\n]+?\*\*|__[^_\n]+?__")
_WORD_RE = re.compile(r"[^\W\d_]+")


def _norm(s: str) -> str:
    """Lowercase, punctuation to spaces, spaces collapsed: the key for sentence and phrasing matches."""
    return re.sub(r"[\W_]+", " ", s.lower()).strip()


def _split_code(text: str) -> tuple[str, str]:
    """(prose, code): code = bodies of ``` fences + lines indented by 4 spaces or a tab outside them."""
    code = _FENCE_RE.findall(text)
    prose = []
    for line in _FENCE_RE.sub("\n", text).split("\n"):
        (code if _INDENT_RE.match(line) else prose).append(line)
    return "\n".join(prose), "\n".join(code)


def _sentences(prose: str) -> list[str]:
    """Sentences of a prose text: one per line piece split after . ! ?, list markers removed."""
    out = []
    for line in prose.split("\n"):
        line = _BULLET_RE.sub("", line).strip()
        out += [s.strip() for s in _SPLIT_RE.split(line) if s.strip()]
    return out


def _quote(s: str, n: int = 60) -> str:
    s = " ".join(s.split())
    return f"'{s if len(s) <= n else s[: n - 3] + '...'}'"


# Stopword lexicons for language identification; words shared by two languages are dropped below.
_STOPWORDS = {
    "en": "the is are was were and of to it that this with you your for be can by on as at from or an how what "
          "which when each also more they their have has will would not into its do does if so than then here "
          "there these those about helps make makes we i in",
    "es": "el los las del y es son una por para con su sus más como al lo muy también puede pueden tu te este "
          "esta esto estos hay sobre cuando entre pero sin ser está qué cómo quieres mejor cada ayuda otra otro "
          "hace un en la de que se",
    "fr": "le les des du et est sont une pour avec sur dans ce cette ces qui plus pas vous votre tu te aussi au "
          "aux il elle ne ou mais comme être peut son sa ses très chaque l d j qu c un en la de que se",
    "de": "der die das den dem des ist sind und von zu ein eine einen einem mit für auf sich nicht auch im wie "
          "bei oder sie werden wird du dir dich ich noch nach über aus kann man wenn hilft mehr sehr es zum beim "
          "in",
}
_LEX = {k: set(v.split()) for k, v in _STOPWORDS.items()}
_SHARED = {w for a in _LEX for b in _LEX if a < b for w in _LEX[a] & _LEX[b]}
_LEX = {k: v - _SHARED for k, v in _LEX.items()}


def lang_id(text: str) -> str | None:
    """Language ("en", "es", "fr", "de") of the prose of ``text`` by stopword counts; None if unclear."""
    words = _WORD_RE.findall(_split_code(text)[0].lower())
    counts = {k: sum(w in lex for w in words) for k, lex in _LEX.items()}
    best = max(counts.values())
    winners = [k for k, c in counts.items() if c == best]
    return winners[0] if best > 0 and len(winners) == 1 else None


# ---------------------------------------------------------------- property checkers
# Each `_ev_*(text, info) -> (holds, evidence sentence)`; the checker is its first element.

_EXAMPLE_RE = re.compile(r"\b(for example|for instance|por ejemplo|par exemple|zum beispiel)\b", re.I)
_ANSWER_RE = re.compile(
    r"(?:the (?:final )?answer is|la respuesta es|la r[ée]ponse est|die antwort ist)\s*:?\s*(-?\d[\d,]*(?:\.\d+)?)",
    re.I)
_NUM_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_DOCSTRING_RE = re.compile(r"def\s+(\w+)\s*\(.*?\)\s*(?:->[^:\n]*)?:[ \t]*\n\s*[rRuUbB]{0,2}(?:\"\"\"|''')")
_DEF_RE = re.compile(r"def\s+(\w+)\s*\(")
_COMMENT_RE = re.compile(r"(?:^|\s)#")
LANGUAGE_NAMES = {"en": "English", "es": "Spanish", "fr": "French", "de": "German"}
_FILLER_STARTS = tuple(_norm(s) for s in (
    "great question", "good question", "what a great question", "sure", "certainly", "of course", "absolutely",
    "thanks for asking", "i'd be happy", "i would be happy", "happy to help", "glad you asked",
    "buena pregunta", "excelente pregunta", "claro", "por supuesto", "con gusto",
    "excellente question", "bonne question", "bien sûr", "bien sur", "avec plaisir",
    "gute frage", "natürlich", "gerne", "sehr gern", "klar"))


def prose_words(text: str) -> int:
    """Whitespace-separated words outside code (what `concise` counts)."""
    return len(_split_code(text)[0].split())


def _ev_concise(text, info):
    n, lim = prose_words(text), int(info.get("word_limit", CONCISE_WORD_LIMIT))
    where = "" if n == len(text.split()) else " outside its code"
    return n <= lim, f"The response has {n} words{where}, {'within' if n <= lim else 'above'} the {lim}-word limit."


def _ev_bulleted(text, info):
    n = sum(bool(_BULLET_RE.match(line)) for line in _split_code(text)[0].split("\n"))
    if n >= 2:
        return True, f"The response has {n} lines that start with a list marker."
    return False, "The response has no list lines." if n == 0 else "Only one line starts with a list marker."


def _ev_example(text, info):
    m = _EXAMPLE_RE.search(_split_code(text)[0])
    if m:
        return True, f"The response gives an explicit example introduced by '{m.group(1)}'."
    return False, "The response never introduces an explicit example."


def _ev_comments(text, info):
    code = _split_code(text)[1]
    if not code.strip():
        return False, "The response contains no code, so there are no code comments."
    lines = [l.strip() for l in code.split("\n") if _COMMENT_RE.search(l)]
    if lines:
        return True, f"The code has {len(lines)} commented line(s), such as {_quote(lines[0])}."
    return False, "The response contains code, but none of its lines has a # comment."


def _ev_fenced(text, info):
    if _FENCE_RE.search(text):
        return True, "The code is inside a ``` fenced block."
    if _split_code(text)[1].strip():
        return False, "The code is indented, not inside a ``` fenced block."
    return False, "The response contains no fenced code block."


def _ev_docstring(text, info):
    m = _DOCSTRING_RE.search(text)
    if m:
        return True, f"The function {m.group(1)} opens with a triple-quoted docstring."
    d = _DEF_RE.search(text)
    if d:
        return False, f"The function {d.group(1)} has no docstring."
    return False, "The response defines no function, so there is no docstring."


def _to_num(s: str) -> float | None:
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return None


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _ev_arithmetic(text, info):
    ans, expr = info.get("answer"), info.get("expression", "the expression")
    if isinstance(ans, bool) or not isinstance(ans, (int, float)):
        return False, "The prompt asks no arithmetic question to check."
    flat = text.replace("**", "")
    stated = [_to_num(s) for s in _ANSWER_RE.findall(flat)]
    if not stated:  # no explicit answer sentence: take the last number written
        nums = _NUM_RE.findall(flat)
        stated = [_to_num(nums[-1])] if nums else []
    stated = [s for s in stated if s is not None]
    if not stated:
        return False, "The response never states a numeric answer."
    wrong = [s for s in stated if abs(s - ans) > 1e-9]
    if wrong:
        return False, f"The response states the answer {_fmt(wrong[0])}, but {expr} = {_fmt(ans)}."
    return True, f"The response states the answer {_fmt(stated[0])}, which is correct for {expr}."


def _ev_language(text, info):
    want, got = info.get("lang", "en"), lang_id(text)
    want_name = LANGUAGE_NAMES.get(want, str(want))
    if got is None:
        return False, f"The prompt is in {want_name}, but the response's language cannot be identified."
    verb = "also" if got == want else "instead"
    return got == want, f"The prompt is in {want_name} and the response is {verb} written in {LANGUAGE_NAMES[got]}."


def _ev_repetition(text, info):
    seen = {}
    for s in _sentences(_split_code(text)[0]):
        key = _norm(s)
        if len(key.split()) < 3:  # fragments ("Yes.", "Thanks!") are not counted
            continue
        if key in seen:
            return False, f"The sentence {_quote(s)} appears twice."
        seen[key] = s
    return True, "No sentence is repeated."


def _ev_direct(text, info):
    sents = _sentences(_split_code(text)[0])
    if not sents:
        return False, "The response has no prose at all, so it gives no direct answer."
    first = _norm(sents[0])
    if any(first == f or first.startswith(f + " ") for f in _FILLER_STARTS):
        return False, f"The response opens with the filler {_quote(sents[0])}."
    return True, f"The response opens directly with {_quote(sents[0])}."


def _ev_followup(text, info):
    end = text.rstrip().rstrip("*_\"')\u00bb\u201d").rstrip()
    sents = _sentences(_split_code(text)[0])
    last = _quote(sents[-1]) if sents else "nothing"
    if end.endswith(("?", "\uff1f")):
        return True, f"The response ends with the question {last}."
    return False, f"The response ends with {last}, which is not a question to the user."


def _ev_bold(text, info):
    terms = _BOLD_RE.findall(_split_code(text)[0])
    if terms:
        return True, f"The response puts {len(terms)} term(s) in bold, such as {terms[0]}."
    return False, "The response has no bold text."


@dataclass(frozen=True)
class Property:
    """A checkable response property: the ground truth behind principles.

    Holds its name, the domains it applies to, a one-line description, positive
    principle phrasings (Yes = the property holds), an evidence function
    ``explain(text, prompt_info) -> (holds, evidence sentence)``, and the verb
    phrases ``holds`` / ``fails`` used in preference reasons ("@Response 1 is concise").
    """

    name: str
    domains: tuple[str, ...]
    description: str
    phrasings: tuple[str, ...]
    explain: Callable[[str, dict], tuple[bool, str]]
    holds: str
    fails: str

    def checker(self, response_text, prompt_info: dict | None = None) -> bool:
        """Does ``response_text`` (any text) have this property?"""
        text = response_text if isinstance(response_text, str) else str(response_text or "")
        return self.explain(text, prompt_info if isinstance(prompt_info, dict) else {})[0]


_ALL, _NOCODE = DOMAINS, ("general", "stem", "multilingual")
PROPERTIES: dict[str, Property] = {p.name: p for p in (
    Property("concise", _ALL, "The text outside code blocks has at most `word_limit` words.",
             ("is concise", "keeps the answer brief", "avoids unnecessary verbosity", "gets to the point quickly"),
             _ev_concise, "is concise", "is too long"),
    Property("bulleted_list", _NOCODE, "At least two lines start with a list marker ('- ').",
             ("uses a bulleted list", "organizes key points as bullet points",
              "presents information in a list format", "breaks the content into bullets"),
             _ev_bulleted, "organizes its points in a list", "is a wall of prose"),
    Property("worked_example", DOMAINS, "Contains an explicit example sentence ('For example, ...').",
             ("includes a concrete example", "illustrates the idea with an example", "gives a worked example",
              "demonstrates usage with a sample case"),
             _ev_example, "gives a concrete example", "gives no example"),
    Property("inline_comments", ("code",), "The code has at least one # comment.",
             ("contains inline comments", "the code is commented", "explains the code with comments",
              "annotates code lines with remarks"),
             _ev_comments, "comments its code", "leaves its code uncommented"),
    Property("fenced_code", ("code",), "The code is in a ``` fenced block (not just indented).",
             ("puts code in a fenced code block", "uses markdown code fences", "formats the code as a fenced block",
              "wraps code in triple backticks"),
             _ev_fenced, "fences its code", "leaves its code unfenced"),
    Property("code_docstring", ("code",), "The function opens with a triple-quoted docstring.",
             ("the function has a docstring", "documents the function with a docstring",
              "includes a docstring describing the function", "provides function-level documentation"),
             _ev_docstring, "documents the function with a docstring", "omits the docstring"),
    Property("arithmetic_correct", ("stem",), "The stated final answer equals the true result of the question.",
             ("the final answer is correct", "computes the result accurately", "gets the arithmetic right",
              "the calculation is correct"),
             _ev_arithmetic, "gets the right answer", "gets the answer wrong"),
    Property("same_language", ("multilingual",), "The response is written in the language of the prompt.",
             ("responds in the same language as the prompt", "answers in the user's language",
              "matches the language of the question", "does not switch to English"),
             _ev_language, "answers in the user's language", "switches to English"),
    Property("no_repetition", _ALL, "No sentence (of three words or more) appears twice.",
             ("avoids repetition", "does not repeat itself", "has no redundant sentences",
              "each point is stated only once"),
             _ev_repetition, "avoids repetition", "repeats itself"),
    Property("direct_answer", _ALL, "The first sentence is not a filler preamble ('Great question!').",
             ("answers directly without filler", "avoids an unnecessary preamble", "starts with the answer right away",
              "skips pleasantries at the start"),
             _ev_direct, "answers directly", "opens with filler"),
    Property("followup_question", _ALL, "The response ends with a question to the user.",
             ("ends with a follow-up question", "invites the user to continue the conversation",
              "closes by asking the user a question", "checks whether the user needs more help"),
             _ev_followup, "ends with a follow-up question", "ends without inviting a follow-up"),
    Property("bold_key_terms", ("general", "stem"), "Some text is in **bold** markdown.",
             ("highlights key terms in bold", "uses bold formatting for important words",
              "emphasizes main concepts with bold text", "makes key terms stand out with markdown emphasis"),
             _ev_bold, "highlights key terms in bold", "uses no bold emphasis"),
)}
DOMAIN_PROPERTIES: dict[str, list[str]] = {d: [n for n, p in PROPERTIES.items() if d in p.domains] for d in DOMAINS}

# The names an extractor (an LLM reading the feedback) gives each property. The first is the name it uses
# most (the rules lexicon's); the others are paraphrases, from near-identical to far in meaning for a
# sentence embedder. The simulated extraction server draws from them; the synthetic evaluation maps each
# name back to its property (`match_property`).
PRINCIPLE_NAMES: dict[str, tuple[str, ...]] = {
    "concise": ("conciseness", "is concise", "being concise", "concise and to the point", "concise response",
                "avoids verbosity", "brevity"),
    "bulleted_list": ("uses bullet points", "use of bullet points", "bullet points", "uses bulleted lists",
                      "uses a bulleted list", "uses lists", "list format"),
    "worked_example": ("provides examples", "provides an example", "provides concrete examples", "uses examples",
                       "example usage", "includes examples", "illustrative example"),
    "inline_comments": ("contains inline comments", "includes inline comments", "has inline comments",
                        "inline comments", "code comments", "commented code", "well-commented code"),
    "fenced_code": ("uses code blocks", "uses a code block", "code blocks", "uses markdown code blocks",
                    "markdown code block", "fenced code block", "code in backticks"),
    "code_docstring": ("documents functions with docstrings", "function docstrings", "docstrings",
                       "includes docstrings", "documents the function", "has a docstring", "documentation"),
    "arithmetic_correct": ("correctness", "mathematical correctness", "factual correctness", "accuracy",
                           "correct final answer", "accurate calculation", "correct answer"),
    "same_language": ("responds in the prompt's language", "language of the prompt", "same language as the prompt",
                      "responds in the user's language", "responds in the same language", "uses the user's language",
                      "language consistency"),
    "no_repetition": ("avoids repetition", "avoids repetitiveness", "lack of repetition", "no repetition",
                      "non-repetitive", "avoids redundancy", "no redundancy"),
    "direct_answer": ("answers directly without preamble", "avoids preamble", "no unnecessary preamble",
                      "answers directly", "no preamble", "direct answer", "directness"),
    "followup_question": ("ends with a follow-up question", "includes a follow-up question",
                          "asks a follow-up question", "follow-up question", "ends with a question",
                          "engages the user at the end", "invites further questions"),
    "bold_key_terms": ("uses bold for key terms", "bolds key terms", "bold key terms", "uses bold text",
                       "uses bold formatting", "bold formatting", "highlights key terms"),
}
_PHRASING_INDEX = {_norm(ph): p.name for p in PROPERTIES.values() for ph in p.phrasings}
_PHRASING_INDEX |= {_norm(n): name for name, names in PRINCIPLE_NAMES.items() for n in names}


def check(name: str, response: str, prompt_info: dict | None = None) -> bool:
    """Does ``response`` have property ``name``?"""
    return PROPERTIES[name].checker(response, prompt_info)


def check_all(domain: str, response: str, prompt_info: dict | None = None) -> dict[str, bool]:
    """All properties that apply to ``domain``: name -> bool."""
    return {n: check(n, response, prompt_info) for n in DOMAIN_PROPERTIES[domain]}


def match_property(principle_text: str) -> str | None:
    """The property a principle phrasing (``Property.phrasings``) or extractor name (:data:`PRINCIPLE_NAMES`)
    names (case/punctuation-insensitive exact match), else None."""
    return _PHRASING_INDEX.get(_norm(principle_text or ""))


def all_phrasings() -> list[tuple[str, str]]:
    """Every (property name, phrasing) pair."""
    return [(p.name, ph) for p in PROPERTIES.values() for ph in p.phrasings]


def reasoning(name: str, response: str, prompt_info: dict | None = None,
              phrasing: str | None = None) -> tuple[str, bool]:
    """A short evidence-based judgement of ``response`` on property ``name``: (text, holds).

    Written from the checker, e.g. "The response has 74 words, above the 70-word limit.
    So the response does not satisfy the principle "is concise"."
    """
    prop = PROPERTIES[name]
    text = response if isinstance(response, str) else str(response or "")
    ok, evidence = prop.explain(text, prompt_info if isinstance(prompt_info, dict) else {})
    verdict = "satisfies" if ok else "does not satisfy"
    return f'{evidence} So the response {verdict} the principle "{phrasing or prop.phrasings[0]}".', ok


# ---------------------------------------------------------------- content banks

@dataclass(frozen=True)
class Topic:
    """A general-domain topic: prompt name, kind (concept/skill), bold terms, facts (first = lead), bullets, example."""

    name: str
    kind: str
    terms: tuple[str, ...]
    facts: tuple[str, ...]
    bullets: tuple[str, ...]
    example: str


TOPICS: dict[str, Topic] = {
    "photosynthesis": Topic("photosynthesis", "concept", ("chlorophyll", "glucose"), (
        "Photosynthesis is how plants turn light into chemical energy.",
        "Chlorophyll in the leaves captures sunlight.",
        "The plant uses that energy to build glucose from carbon dioxide and water."),
        ("Leaves absorb sunlight.", "Roots supply the water.", "Oxygen is released as a by-product."),
        "For example, a pond plant in sunlight gives off small oxygen bubbles."),
    "water_cycle": Topic("the water cycle", "concept", ("evaporation", "condensation"), (
        "The water cycle moves water between oceans, air and land.",
        "Heat from the sun drives evaporation from lakes and seas.",
        "Condensation forms clouds that later release rain or snow."),
        ("Water evaporates from the surface.", "Vapor condenses into clouds.", "Precipitation returns it to the ground."),
        "For example, a puddle dries in the sun and later falls as rain."),
    "compound_interest": Topic("compound interest", "concept", ("principal", "interest rate"), (
        "Compound interest means you also earn interest on earlier interest.",
        "The principal grows faster the longer the money stays invested.",
        "A higher interest rate or more frequent compounding speeds this up."),
        ("Start saving early.", "Reinvest the earnings.", "Compare annual rates carefully."),
        "For example, 100 dollars at 10 percent becomes 121 dollars after two years."),
    "sleep": Topic("sleeping well", "skill", ("circadian rhythm", "sleep schedule"), (
        "Good sleep depends mostly on regular habits.",
        "A fixed sleep schedule keeps your circadian rhythm stable.",
        "Dark, cool and quiet rooms make it easier to fall asleep."),
        ("Go to bed at the same time.", "Avoid screens late at night.", "Limit caffeine after noon."),
        "For example, a fixed bedtime of eleven helps you wake without an alarm."),
    "time_management": Topic("time management", "skill", ("prioritization", "time blocking"), (
        "Time management is about spending attention on what matters most.",
        "Prioritization helps you pick the few tasks that really count.",
        "Time blocking reserves fixed calendar slots for focused work."),
        ("List your tasks each morning.", "Do the hardest task first.", "Batch small chores together."),
        "For example, blocking nine to eleven for writing protects your best hours."),
    "public_speaking": Topic("public speaking", "skill", ("rehearsal", "eye contact"), (
        "Confident public speaking comes mostly from preparation.",
        "Rehearsal out loud reveals awkward transitions early.",
        "Steady eye contact helps the audience stay engaged."),
        ("Know your opening by heart.", "Practice with a timer.", "Pause instead of saying um."),
        "For example, rehearsing a short talk three times removes most stumbles."),
    "budgeting": Topic("budgeting", "skill", ("fixed costs", "emergency fund"), (
        "A budget is a plan for where each month's income goes.",
        "Start by listing fixed costs such as rent and insurance.",
        "Build an emergency fund before spending on extras."),
        ("Track every expense.", "Set spending limits.", "Review the plan monthly."),
        "For example, the 50/30/20 rule splits income into needs, wants and savings."),
    "vaccines": Topic("vaccines", "concept", ("immune system", "antibodies"), (
        "Vaccines train the body to recognize a germ before a real infection.",
        "They show the immune system a harmless piece or copy of the germ.",
        "The body then keeps memory cells that make antibodies quickly."),
        ("Exposure to a harmless antigen.", "Production of matching antibodies.", "Long-lasting immune memory."),
        "For example, the measles vaccine usually protects for life."),
    "black_holes": Topic("black holes", "concept", ("event horizon", "gravity"), (
        "A black hole is a region where gravity is so strong that nothing escapes.",
        "Its boundary is called the event horizon.",
        "Many form when very massive stars collapse at the end of their lives."),
        ("Extremely dense mass.", "No light can escape.", "Detected through effects on nearby matter."),
        "For example, our galaxy's central black hole weighs about four million suns."),
    "renewable_energy": Topic("renewable energy", "concept", ("solar panels", "wind turbines"), (
        "Renewable energy comes from sources that refill naturally.",
        "Solar panels turn sunlight directly into electricity.",
        "Wind turbines convert moving air into power."),
        ("Solar power from sunlight.", "Wind power from moving air.", "Hydropower from flowing water."),
        "For example, a rooftop solar system can cover much of a household's daytime use."),
    "composting": Topic("composting at home", "skill", ("greens", "browns"), (
        "Composting turns kitchen and garden scraps into rich soil.",
        "Mix nitrogen-rich greens with carbon-rich browns.",
        "Turning the pile adds air and speeds up decay."),
        ("Add vegetable scraps.", "Mix in dry leaves.", "Keep the pile moist."),
        "For example, coffee grounds and dry leaves make an easy first mix."),
    "learning_language": Topic("learning a new language", "skill", ("spaced repetition", "immersion"), (
        "Learning a language works best with a little practice every day.",
        "Spaced repetition helps new words stick in memory.",
        "Immersion through films and conversation builds listening skills."),
        ("Practice every single day.", "Speak from the first week.", "Review vocabulary regularly."),
        "For example, ten daily minutes of flashcards add up to hundreds of words."),
    "healthy_eating": Topic("healthy eating", "skill", ("whole grains", "portion size"), (
        "Healthy eating is mostly about balance and variety.",
        "Fill half your plate with vegetables and fruit.",
        "Choose whole grains and watch the portion size."),
        ("Eat more vegetables.", "Drink water instead of soda.", "Cook at home more often."),
        "For example, swapping white rice for brown rice adds fiber to a meal."),
    "recycling": Topic("recycling", "concept", ("contamination", "sorting"), (
        "Recycling turns used materials into new products.",
        "Careful sorting keeps paper, glass and plastic streams clean.",
        "Contamination with food can spoil a whole batch."),
        ("Rinse containers first.", "Flatten cardboard boxes.", "Check the local rules."),
        "For example, an aluminum can may be back on the shelf within two months."),
    "stock_market": Topic("the stock market", "concept", ("shares", "diversification"), (
        "The stock market is where people buy and sell shares of companies.",
        "Share prices move with expectations about future profits.",
        "Diversification spreads risk across many companies."),
        ("Invest for the long term.", "Keep costs low.", "Avoid panic selling."),
        "For example, an index fund holds hundreds of companies in a single purchase."),
    "meditation": Topic("meditation", "skill", ("breathing", "mindfulness"), (
        "Meditation trains attention by returning focus to one anchor.",
        "Slow breathing is the simplest anchor for beginners.",
        "Regular mindfulness practice can lower stress."),
        ("Sit comfortably.", "Notice each breath.", "Start with five minutes."),
        "For example, counting ten breaths and starting again is a common first exercise."),
    "job_interviews": Topic("job interviews", "skill", ("STAR method", "research"), (
        "Interview success comes from preparation and clear stories.",
        "The STAR method structures answers about past experience.",
        "Company research lets you ask sharper questions."),
        ("Research the company.", "Prepare three stories.", "Ask thoughtful questions."),
        "For example, describing a missed deadline and how you fixed it shows reflection."),
    "marathon": Topic("training for a first marathon", "skill", ("long run", "tapering"), (
        "Marathon training builds endurance gradually over several months.",
        "A weekly long run is the core of most plans.",
        "Tapering in the final weeks lets the body recover."),
        ("Increase mileage slowly.", "Rest at least one day a week.", "Practice your race-day nutrition."),
        "For example, many plans add about ten percent distance per week."),
    "climate_change": Topic("climate change", "concept", ("greenhouse gases", "carbon dioxide"), (
        "Climate change is the long-term warming of the planet.",
        "Greenhouse gases trap heat in the atmosphere.",
        "Burning fossil fuels is the main source of extra carbon dioxide."),
        ("Rising average temperatures.", "Melting glaciers and ice sheets.", "More extreme weather."),
        "For example, summer sea ice in the Arctic has shrunk sharply since 1980."),
    "french_revolution": Topic("the French Revolution", "concept", ("Estates-General", "monarchy"), (
        "The French Revolution began in 1789 and reshaped France.",
        "A financial crisis led the king to call the Estates-General.",
        "Within a few years the monarchy was abolished."),
        ("Storming of the Bastille.", "Declaration of the Rights of Man.", "Rise of Napoleon."),
        "For example, Bastille Day on 14 July is still a national holiday."),
    "houseplants": Topic("caring for houseplants", "skill", ("drainage", "indirect light"), (
        "Most houseplants need less water than people think.",
        "Pots need drainage so the roots do not rot.",
        "Bright indirect light suits most common species."),
        ("Check the soil before watering.", "Use pots with holes.", "Rotate plants occasionally."),
        "For example, a snake plant can go two weeks without water."),
    "remote_work": Topic("working from home", "skill", ("routine", "workspace"), (
        "Remote work productivity depends on clear boundaries.",
        "A dedicated workspace signals that it is time to focus.",
        "A steady daily routine replaces the structure of the office."),
        ("Start at a fixed time.", "Take real breaks.", "Close the laptop at the end of the day."),
        "For example, a short walk before starting can act like a commute."),
}

# Multilingual topics: key (into TOPICS for the English version) -> language -> (name, facts, bullets, example).
# German names are in the accusative (they follow "über", "erklären", ...).
ML_TOPICS: dict[str, dict[str, tuple]] = {
    "photosynthesis": {
        "es": ("la fotosíntesis", ("La fotosíntesis es el proceso por el cual las plantas convierten la luz en energía.",
                                   "La clorofila de las hojas captura la luz del sol."),
               ("Las hojas absorben la luz.", "Las raíces aportan el agua.", "Se libera oxígeno al aire."),
               "Por ejemplo, una planta acuática al sol suelta pequeñas burbujas de oxígeno."),
        "fr": ("la photosynthèse", ("La photosynthèse est le processus par lequel les plantes transforment la lumière en énergie.",
                                    "La chlorophylle des feuilles capte la lumière du soleil."),
               ("Les feuilles absorbent la lumière.", "Les racines apportent l'eau.", "De l'oxygène est libéré."),
               "Par exemple, une plante aquatique au soleil libère de petites bulles d'oxygène."),
        "de": ("die Photosynthese", ("Die Photosynthese ist der Vorgang, bei dem Pflanzen Licht in Energie umwandeln.",
                                     "Das Chlorophyll in den Blättern fängt das Sonnenlicht ein."),
               ("Die Blätter nehmen Licht auf.", "Die Wurzeln liefern das Wasser.", "Sauerstoff wird dabei freigesetzt."),
               "Zum Beispiel gibt eine Wasserpflanze in der Sonne kleine Sauerstoffblasen ab."),
    },
    "water_cycle": {
        "es": ("el ciclo del agua", ("El ciclo del agua mueve el agua entre los océanos, el aire y la tierra.",
                                     "El calor del sol provoca la evaporación de mares y lagos."),
               ("El agua se evapora.", "El vapor forma las nubes.", "La lluvia devuelve el agua al suelo."),
               "Por ejemplo, un charco se seca al sol y vuelve después como lluvia."),
        "fr": ("le cycle de l'eau", ("Le cycle de l'eau fait circuler l'eau entre les océans, l'air et la terre.",
                                     "La chaleur du soleil provoque l'évaporation des mers et des lacs."),
               ("L'eau s'évapore des mers.", "La vapeur forme des nuages.", "La pluie ramène l'eau au sol."),
               "Par exemple, une flaque sèche au soleil puis revient sous forme de pluie."),
        "de": ("den Wasserkreislauf", ("Der Wasserkreislauf bewegt das Wasser zwischen Meeren, Luft und Land.",
                                       "Die Wärme der Sonne lässt Wasser aus Meeren und Seen verdunsten."),
               ("Das Wasser verdunstet.", "Der Dampf bildet die Wolken.", "Der Regen bringt das Wasser zurück."),
               "Zum Beispiel trocknet eine Pfütze in der Sonne und das Wasser kommt später als Regen zurück."),
    },
    "sleep": {
        "es": ("los hábitos de sueño", ("Dormir bien depende sobre todo de hábitos regulares.",
                                        "Un horario fijo mantiene estable el ritmo del cuerpo."),
               ("Acuéstate siempre a la misma hora.", "Evita las pantallas por la noche.", "Reduce el café por la tarde."),
               "Por ejemplo, acostarse a las once cada noche ayuda a despertar sin alarma."),
        "fr": ("les habitudes de sommeil", ("Bien dormir dépend surtout d'habitudes régulières.",
                                            "Un horaire fixe garde le rythme du corps stable."),
               ("Couche-toi toujours à la même heure.", "Évite les écrans le soir.", "Limite le café l'après-midi."),
               "Par exemple, se coucher à vingt-trois heures chaque soir aide à se réveiller sans réveil."),
        "de": ("gesunde Schlafgewohnheiten", ("Guter Schlaf hängt vor allem von festen Gewohnheiten ab.",
                                              "Ein fester Zeitplan hält den Rhythmus des Körpers stabil."),
               ("Geh immer zur gleichen Zeit ins Bett.", "Meide Bildschirme am Abend.", "Trink nachmittags keinen Kaffee."),
               "Zum Beispiel hilft es, jeden Abend um elf ins Bett zu gehen."),
    },
    "healthy_eating": {
        "es": ("la alimentación saludable", ("Comer bien consiste sobre todo en equilibrio y variedad.",
                                             "La mitad del plato debería ser verduras y fruta."),
               ("Come más verduras.", "Bebe agua en lugar de refrescos.", "Cocina en casa más a menudo."),
               "Por ejemplo, cambiar el arroz blanco por integral añade fibra a la comida."),
        "fr": ("l'alimentation saine", ("Bien manger est surtout une question d'équilibre et de variété.",
                                        "La moitié de l'assiette devrait être composée de légumes et de fruits."),
               ("Mange plus de légumes.", "Bois de l'eau plutôt que des sodas.", "Cuisine plus souvent à la maison."),
               "Par exemple, remplacer le riz blanc par du riz complet ajoute des fibres au repas."),
        "de": ("die gesunde Ernährung", ("Gesunde Ernährung ist vor allem eine Frage von Ausgewogenheit und Vielfalt.",
                                         "Die Hälfte des Tellers sollte aus Gemüse und Obst bestehen."),
               ("Iss mehr Gemüse.", "Trink Wasser statt Limonade.", "Koch öfter selbst zu Hause."),
               "Zum Beispiel bringt Vollkornreis statt weißem Reis mehr Ballaststoffe auf den Teller."),
    },
    "recycling": {
        "es": ("el reciclaje", ("El reciclaje convierte materiales usados en productos nuevos.",
                                "Separar bien el papel, el vidrio y el plástico evita la contaminación."),
               ("Enjuaga los envases.", "Aplana las cajas de cartón.", "Consulta las normas locales."),
               "Por ejemplo, una lata de aluminio puede volver a la tienda en dos meses."),
        "fr": ("le recyclage", ("Le recyclage transforme les matériaux usagés en nouveaux produits.",
                                "Bien trier le papier, le verre et le plastique évite la contamination."),
               ("Rince les emballages.", "Aplatis les cartons.", "Vérifie les règles locales."),
               "Par exemple, une canette en aluminium peut revenir en rayon en deux mois."),
        "de": ("das Recycling", ("Beim Recycling werden gebrauchte Materialien zu neuen Produkten.",
                                 "Sauberes Trennen von Papier, Glas und Plastik verhindert Verunreinigung."),
               ("Spül die Verpackungen aus.", "Falte die Kartons flach.", "Prüf die örtlichen Regeln."),
               "Zum Beispiel kann eine Aluminiumdose nach zwei Monaten wieder im Regal stehen."),
    },
    "learning_language": {
        "es": ("el aprendizaje de idiomas", ("Aprender un idioma funciona mejor con un poco de práctica cada día.",
                                             "Repasar las palabras a intervalos ayuda a recordarlas."),
               ("Practica todos los días.", "Habla desde la primera semana.", "Repasa el vocabulario con frecuencia."),
               "Por ejemplo, diez minutos de tarjetas cada mañana suman cientos de palabras."),
        "fr": ("l'apprentissage des langues", ("Apprendre une langue marche mieux avec un peu de pratique chaque jour.",
                                               "Réviser les mots à intervalles réguliers aide à les retenir."),
               ("Pratique tous les jours.", "Parle dès la première semaine.", "Révise le vocabulaire souvent."),
               "Par exemple, dix minutes de cartes chaque matin font des centaines de mots."),
        "de": ("das Sprachenlernen", ("Eine Sprache lernt man am besten mit ein wenig Übung jeden Tag.",
                                      "Wiederholung in Abständen hilft, neue Wörter zu behalten."),
               ("Übe jeden Tag ein wenig.", "Sprich ab der ersten Woche.", "Wiederhole die Vokabeln regelmäßig."),
               "Zum Beispiel ergeben zehn Minuten Karteikarten jeden Morgen Hunderte von Wörtern."),
    },
}

# Per-language phrase packs. `pad` templates start lowercase ({t} = topic), except German (full clauses).
LANGS: dict[str, dict] = {
    "en": dict(
        hs3="english",
        fillers=("Great question!", "Sure, I'd be happy to help with that.", "Certainly!", "Of course!",
                 "What a great question!", "Absolutely, let me help."),
        followups=("Would you like more detail on any point?", "Do you want me to go deeper on one part?",
                   "Anything else you would like to know?", "Should I suggest some further reading?"),
        closings=("I hope this helps.", "Good luck with it.", "That covers the main points."),
        pad_prefixes=("", "Also, ", "In addition, ", "Beyond that, ", "On top of that, ", "Keep in mind that "),
        pad=("it helps to approach {t} one step at a time.",
             "many people understand {t} better once they see the bigger picture.",
             "keeping notes while working through {t} can be useful.",
             "the details can vary from one situation to the next.",
             "practice makes the main ideas feel natural.",
             "it is worth revisiting {t} after a short break.",
             "small misunderstandings about {t} are common at first.",
             "reading a second source on {t} can fill in gaps."),
        turns=(("I have a question about {t}.", "Happy to help. What would you like to know?"),
               ("Give me a one-sentence summary of {t}.", "{fact}"),
               ("Is {t} hard to get into?", "Not really, it mostly takes a bit of patience."),
               ("Where should a beginner start with {t}?", "Starting with the basic ideas and building up slowly works well.")),
    ),
    "es": dict(
        hs3="spanish",
        fillers=("¡Buena pregunta!", "¡Claro, con gusto te ayudo!", "¡Por supuesto!", "¡Excelente pregunta!"),
        followups=("¿Quieres más detalles sobre algún punto?", "¿Te ayudo con algo más?", "¿Tienes alguna otra duda?"),
        closings=("Espero que esto te sirva.", "Mucho éxito con ello."),
        pad_prefixes=("", "Además, ", "También, ", "Por otro lado, ", "Asimismo, ", "En general, "),
        pad=("conviene abordar {t} paso a paso.",
             "muchas personas entienden mejor {t} con una visión general.",
             "tomar notas sobre {t} puede ser muy útil.",
             "los detalles cambian de un caso a otro.",
             "con la práctica todo resulta más natural.",
             "vale la pena repasar {t} después de una pausa.",
             "es normal tener dudas sobre {t} al principio.",
             "leer otra fuente sobre {t} ayuda a completar las ideas."),
        turns=(("Tengo una pregunta sobre {t}.", "Claro, ¿qué te gustaría saber?"),
               ("Resúmeme {t} en una frase.", "{fact}"),
               ("¿Es difícil empezar con {t}?", "No mucho, sobre todo requiere algo de paciencia."),
               ("¿Por dónde empiezo con {t}?", "Lo mejor es empezar por las ideas básicas.")),
        asks=("¿Puedes explicarme {t}?", "¿Qué debería saber sobre {t}?", "Quiero entender mejor {t}.",
              "Necesito ayuda para entender {t}."),
    ),
    "fr": dict(
        hs3="french",
        fillers=("Excellente question !", "Bien sûr, avec plaisir !", "Avec plaisir !", "Bonne question !"),
        followups=("Veux-tu plus de détails sur un point ?", "Puis-je t'aider avec autre chose ?",
                   "As-tu d'autres questions ?"),
        closings=("J'espère que cela t'aide.", "Bonne continuation à toi."),
        pad_prefixes=("", "De plus, ", "Aussi, ", "Par ailleurs, ", "En outre, ", "En général, "),
        pad=("il vaut mieux aborder {t} étape par étape.",
             "beaucoup de gens comprennent mieux {t} avec une vue d'ensemble.",
             "prendre des notes sur {t} peut être très utile.",
             "les détails varient d'un cas à l'autre.",
             "avec de la pratique, tout devient plus naturel.",
             "il vaut la peine de revoir {t} après une pause.",
             "il est normal d'avoir des doutes sur {t} au début.",
             "lire une autre source sur {t} aide à compléter les idées."),
        turns=(("J'ai une question sur {t}.", "Bien sûr, que veux-tu savoir ?"),
               ("Résume-moi {t} en une phrase.", "{fact}"),
               ("Est-ce difficile de comprendre {t} ?", "Pas vraiment, il faut surtout un peu de patience."),
               ("Par où commencer pour comprendre {t} ?", "Le mieux est de commencer par les idées de base.")),
        asks=("Peux-tu m'expliquer {t} ?", "Que faut-il savoir sur {t} ?", "J'aimerais mieux comprendre {t}.",
              "Explique-moi {t}, s'il te plaît."),
    ),
    "de": dict(
        hs3="german",
        fillers=("Gute Frage!", "Natürlich, gerne helfe ich dabei!", "Sehr gern!", "Klar, ich helfe gern!"),
        followups=("Möchtest du mehr Details zu einem Punkt?", "Kann ich dir noch bei etwas helfen?",
                   "Hast du noch weitere Fragen?"),
        closings=("Ich hoffe, das hilft dir.", "Viel Erfolg damit."),
        pad_prefixes=("", "Übrigens: ", "Dazu kommt: ", "Wichtig ist auch: ", "Ebenso gilt: ", "Kurz gesagt: "),
        pad=("Es hilft, {t} Schritt für Schritt anzugehen.",
             "Viele Menschen verstehen {t} besser mit einem Überblick.",
             "Notizen über {t} können sehr nützlich sein.",
             "Die Details können sich von Fall zu Fall unterscheiden.",
             "Mit etwas Übung wird alles natürlicher.",
             "Es lohnt sich, {t} nach einer Pause zu wiederholen.",
             "Am Anfang sind Zweifel über {t} ganz normal.",
             "Eine zweite Quelle über {t} hilft, Lücken zu füllen."),
        turns=(("Ich habe eine Frage über {t}.", "Gern, was möchtest du wissen?"),
               ("Fass {t} in einem Satz zusammen.", "{fact}"),
               ("Ist es schwer, {t} zu verstehen?", "Nicht wirklich, es braucht vor allem etwas Geduld."),
               ("Wo fange ich am besten an?", "Am besten beginnst du mit den Grundideen.")),
        asks=("Kannst du mir {t} erklären?", "Was sollte ich über {t} wissen?", "Ich möchte {t} besser verstehen.",
              "Erklär mir bitte {t}."),
    ),
}
_EN_ASKS = {"concept": ("Can you explain {t}?", "How does {t} work?", "What is {t}, in simple terms?",
                        "Tell me about {t}."),
            "skill": ("Any tips for {t}?", "What advice do you have on {t}?", "What should I know about {t}?",
                      "Help me get started with {t}.")}
_EN_FOLLOWUPS = {"stem": ("Would you like me to check another calculation?", "Do you want a step-by-step breakdown?",
                          "Shall I show another way to compute it?"),
                 "code": ("Would you like me to add unit tests?", "Do you want a version with type hints?",
                          "Should I explain any line in more detail?")}

# Arithmetic: operator -> (method sentences, bullets, example, bold terms, word problems). {a} {b} are operands.
ARITHMETIC: dict[str, tuple] = {
    "*": (("Multiplying {a} by {b} means adding {a} to itself {b} times.",
           "Splitting {b} into tens and ones gives two partial products.",
           "Adding the partial products gives the result."),
          ("Multiply {a} by the tens digit.", "Multiply {a} by the ones digit.", "Add the two partial products."),
          "For example, 3 * 4 = 12 because three fours make twelve.", ("partial products",),
          ("A box holds {b} pencils. How many pencils are in {a} boxes?",)),
    "+": (("Adding works column by column using place value.",
           "Start with the ones digits and carry when a column passes nine.",
           "Checking the sum by estimation catches slips."),
          ("Line up the digits.", "Add the ones, then the tens.", "Carry whenever a column passes nine."),
          "For example, 58 + 67 needs a carry and gives 125.", ("place value", "carry"),
          ("A library has {a} books and buys {b} more. How many books does it have now?",)),
    "-": (("Subtraction works column by column using place value.",
           "Borrow from the next column when the top digit is smaller.",
           "Adding the result back to {b} checks the answer."),
          ("Line up the digits.", "Subtract from the right.", "Borrow when the top digit is smaller."),
          "For example, 52 - 17 needs a borrow and gives 35.", ("place value", "borrow"),
          ("I had {a} dollars and spent {b}. How much do I have left?",)),
    "/": (("Dividing {a} by {b} asks how many groups of {b} fit into {a}.",
           "Multiplying the quotient by {b} checks the result.",
           "Estimating first keeps the quotient in the right range."),
          ("Estimate how many times {b} fits.", "Multiply back to check.", "Adjust the estimate if needed."),
          "For example, 84 / 7 = 12 because 7 * 12 = 84.", ("quotient", "groups"),
          ("{a} apples are shared equally among {b} children. How many apples does each child get?",)),
}
_STEM_ASKS = ("What is {e}?", "Compute {e}.", "Can you work out {e} for me?")
_STEM_SUFFIXES = (" Please explain your steps.", " Show how you got it.", " How do you do it?")
_STEM_LEADS = ("The answer is {n}.", "The final answer is {n}.", "Doing the math, the answer is {n}.")
_STEM_TURNS = (("I'm practicing mental math.", "Great, send me a problem whenever you are ready."),
               ("What is {x} + {y}?", "The answer is {z}."),
               ("Can you help me check my homework?", "Of course, what is the question?"),
               ("Do you show your work?", "Yes, I can explain each step if you like."))


@dataclass(frozen=True)
class CodeTask:
    """A code-domain task: signature, what it does (infinitive), docstring, body (comments after '  # '),
    how it works, and an example call with its result."""

    sig: str
    desc: str
    doc: str
    body: str
    how: str
    example: str


CODE_TASKS: dict[str, CodeTask] = {t.sig.split("(")[0]: t for t in (
    CodeTask("is_even(n)", "check whether a number is even", "Return True if n is even.",
             "return n % 2 == 0  # no remainder means even", "It uses the modulo operator to test the remainder.",
             "`is_even(4)` returns `True`"),
    CodeTask("reverse_string(text)", "reverse a string", "Return text reversed.",
             "return text[::-1]  # a step of -1 walks backwards", "Slicing with a negative step reverses the string.",
             "`reverse_string('abc')` returns `'cba'`"),
    CodeTask("factorial(n)", "compute the factorial of a number", "Return n factorial.",
             "result = 1\nfor i in range(2, n + 1):\n    result *= i  # grow the product\nreturn result",
             "It multiplies the numbers from 2 up to n.", "`factorial(5)` returns `120`"),
    CodeTask("count_vowels(text)", "count the vowels in a string", "Return the number of vowels.",
             "return sum(ch in 'aeiou' for ch in text.lower())  # True counts as 1",
             "It lowercases the text and counts vowel characters.", "`count_vowels('Hello')` returns `2`"),
    CodeTask("is_palindrome(text)", "check whether a string is a palindrome", "Return True if text reads the same backwards.",
             "s = text.lower()  # ignore case\nreturn s == s[::-1]", "It compares the lowercased string with its reverse.",
             "`is_palindrome('Level')` returns `True`"),
    CodeTask("largest(numbers)", "find the largest number in a list", "Return the biggest item.",
             "best = numbers[0]\nfor x in numbers:\n    best = x if x > best else best  # keep the maximum\nreturn best",
             "It walks the list and keeps the biggest value seen.", "`largest([3, 9, 2])` returns `9`"),
    CodeTask("fibonacci(n)", "return the n-th Fibonacci number", "Return the n-th Fibonacci number.",
             "a, b = 0, 1\nfor _ in range(n):\n    a, b = b, a + b  # shift the pair forward\nreturn a",
             "It keeps only the last two numbers of the sequence.", "`fibonacci(7)` returns `13`"),
    CodeTask("celsius_to_fahrenheit(c)", "convert Celsius to Fahrenheit", "Convert degrees Celsius to Fahrenheit.",
             "return c * 9 / 5 + 32  # the standard formula", "It applies the usual conversion formula.",
             "`celsius_to_fahrenheit(100)` returns `212.0`"),
    CodeTask("digit_sum(n)", "add up the digits of an integer", "Return the sum of the digits of n.",
             "return sum(int(d) for d in str(abs(n)))  # abs drops the sign",
             "It turns the number into text and adds each digit.", "`digit_sum(123)` returns `6`"),
    CodeTask("flatten(lists)", "flatten a list of lists", "Return one list with all the items.",
             "return [x for sub in lists for x in sub]  # inner lists in order",
             "A nested comprehension walks every inner list.", "`flatten([[1], [2, 3]])` returns `[1, 2, 3]`"),
    CodeTask("unique(items)", "remove duplicates from a list while keeping order", "Return items without duplicates.",
             "return list(dict.fromkeys(items))  # keys keep first-seen order",
             "Dictionary keys drop repeats but keep insertion order.", "`unique([1, 2, 1])` returns `[1, 2]`"),
    CodeTask("word_count(text)", "count the words in a sentence", "Return the number of words.",
             "return len(text.split())  # split on any whitespace", "Splitting on whitespace separates the words.",
             "`word_count('a b c')` returns `3`"),
    CodeTask("gcd(a, b)", "compute the greatest common divisor of two numbers", "Return the greatest common divisor.",
             "while b:\n    a, b = b, a % b  # Euclid's step\nreturn a",
             "It applies Euclid's algorithm until the remainder is zero.", "`gcd(12, 18)` returns `6`"),
    CodeTask("is_prime(n)", "check whether a number is prime", "Return True if n is prime.",
             "return n > 1 and all(n % d for d in range(2, n))  # no divisor found",
             "It tests every possible divisor below n.", "`is_prime(7)` returns `True`"),
    CodeTask("average(numbers)", "compute the average of a list of numbers", "Return the mean of numbers.",
             "if not numbers:\n    return 0.0  # avoid dividing by zero\nreturn sum(numbers) / len(numbers)",
             "It divides the total by the count and handles an empty list.", "`average([2, 4])` returns `3.0`"),
    CodeTask("title_case(text)", "capitalize every word in a sentence", "Return text with each word capitalized.",
             "return ' '.join(w.capitalize() for w in text.split())  # one word at a time",
             "It capitalizes each word and joins them with spaces.", "`title_case('hi there')` returns `'Hi There'`"),
    CodeTask("chunk(items, size)", "split a list into chunks of a given size", "Return consecutive slices of length size.",
             "return [items[i:i + size] for i in range(0, len(items), size)]  # step by size",
             "It slices the list at every multiple of size.", "`chunk([1, 2, 3], 2)` returns `[[1, 2], [3]]`"),
    CodeTask("count_words(text)", "count how often each word appears", "Return a dict of word counts.",
             "counts = {}\nfor w in text.lower().split():\n    counts[w] = counts.get(w, 0) + 1  # new words start at 0\nreturn counts",
             "A dictionary maps each word to its running count.", "`count_words('a a b')` returns `{'a': 2, 'b': 1}`"),
)}
_CODE_ASKS = ("Write a Python function to {d}.", "I need a Python function to {d}.",
              "How do I write a Python function to {d}?", "Could you give me Python code to {d}?")
_CODE_LEADS = ("Here is a function to {d}.", "The function below will {d}.", "You can use this function to {d}.")
_CODE_TURNS = (("I'm writing a small Python utility module.", "Sounds good. What do you need?"),
               ("Which Python version should I target?", "Python 3.10 or newer is a safe choice."),
               ("Can you help me with a helper function?", "Sure, what should it do?"),
               ("Should I add type hints?", "They are optional, but they help readers and tools."))

# ---------------------------------------------------------------- prompts


def sample_prompt(domain: str, rng: random.Random, word_limit: int = CONCISE_WORD_LIMIT,
                  max_turns: int = 3) -> tuple[list[dict], dict]:
    """A prompt of ``domain``: (context, prompt_info).

    ``context`` is 1..max_turns user turns (earlier user/assistant exchanges on
    the same topic; the last message is from the user).
    ``prompt_info`` holds what checkers and the renderer need: ``domain``,
    ``language`` (the HelpSteer3 field), ``lang`` (ISO code of the prompt's
    natural language), ``topic``, ``word_limit``, plus ``answer``/``expression``
    (stem) or the task name (code).
    """
    info: dict = {"domain": domain, "lang": "en", "language": "english", "word_limit": word_limit}
    if domain == "general":
        key = rng.choice(sorted(TOPICS))
        topic = TOPICS[key]
        info["topic"] = key
        sub = {"t": topic.name, "fact": topic.facts[0]}
        turns, ask = LANGS["en"]["turns"], rng.choice(_EN_ASKS[topic.kind]).format(**sub)
    elif domain == "multilingual":
        key, lang = rng.choice(sorted(ML_TOPICS)), rng.choice(("es", "fr", "de"))
        name, facts, _, _ = ML_TOPICS[key][lang]
        info.update(topic=key, lang=lang, language=LANGS[lang]["hs3"])
        sub = {"t": name, "fact": facts[0]}
        turns, ask = LANGS[lang]["turns"], rng.choice(LANGS[lang]["asks"]).format(**sub)
    elif domain == "stem":
        op = rng.choice(sorted(ARITHMETIC))
        if op == "*":
            a, b = rng.randint(11, 99), rng.choice([n for n in range(11, 100) if n % 10])
        elif op == "+":
            a, b = rng.randint(100, 999), rng.randint(100, 999)
        elif op == "-":
            a = rng.randint(200, 999)
            b = rng.randint(10, a - 50)
        else:
            b, q = rng.randint(3, 19), rng.randint(11, 99)
            a = b * q
        answer = {"*": a * b, "+": a + b, "-": a - b, "/": a // b}[op]
        expr = f"{a} {op} {b}"
        info.update(topic=f"arithmetic {op}", op=op, a=a, b=b, expression=expr, answer=answer)
        x, y = rng.randint(2, 20), rng.randint(2, 20)
        sub = {"x": x, "y": y, "z": x + y}
        word_problems = ARITHMETIC[op][4]
        ask = (rng.choice(word_problems).format(a=a, b=b) if rng.random() < 0.3
               else rng.choice(_STEM_ASKS).format(e=expr))
        if rng.random() < 0.5:
            ask += rng.choice(_STEM_SUFFIXES)
        turns = _STEM_TURNS
    elif domain == "code":
        key = rng.choice(sorted(CODE_TASKS))
        info.update(topic=key, function=key, language="python")
        sub = {}
        turns, ask = _CODE_TURNS, rng.choice(_CODE_ASKS).format(d=CODE_TASKS[key].desc)
    else:
        raise ValueError(f"domain: must be one of {list(DOMAINS)}, got {domain!r}")
    n_turns = rng.randint(1, max(1, min(max_turns, len(turns) + 1)))
    context = []
    for user, assistant in rng.sample(turns, n_turns - 1):
        context += [{"role": "user", "content": user.format(**sub)},
                    {"role": "assistant", "content": assistant.format(**sub)}]
    context.append({"role": "user", "content": ask})
    return context, info


# ---------------------------------------------------------------- renderer

DEFAULT_VALUES = {"concise": True, "bulleted_list": False, "worked_example": False, "inline_comments": False,
                  "fenced_code": True, "code_docstring": False, "arithmetic_correct": True, "same_language": True,
                  "no_repetition": True, "direct_answer": True, "followup_question": False, "bold_key_terms": False}


def _content(domain: str, info: dict, v: dict, lang: str, rng: random.Random) -> dict:
    """The raw material of one response: lead sentence, body sentences, bullets, example, bold terms,
    code task, follow-up questions and the topic name used by padding sentences."""
    if domain in ("general", "multilingual"):
        topic = TOPICS[info["topic"]]
        if lang == "en":
            name, facts, bullets, example, terms = topic.name, topic.facts, topic.bullets, topic.example, topic.terms
        else:
            name, facts, bullets, example = ML_TOPICS[info["topic"]][lang]
            terms = ()
        followups = LANGS[lang]["followups"]
    elif domain == "stem":
        method, bullets, example, terms, _ = ARITHMETIC[info["op"]]
        ans = info["answer"]
        slips = (-10, -2, -1, 1, 2, 10) + ((info["a"], -info["a"]) if info["op"] == "*" else (100, -100))
        stated = ans if v["arithmetic_correct"] else ans + rng.choice([d for d in slips if ans + d > 0])
        fill = {"a": info["a"], "b": info["b"]}
        name, terms = "this calculation", terms + (str(stated),)
        facts = (rng.choice(_STEM_LEADS).format(n=stated),) + tuple(s.format(**fill) for s in method)
        bullets = tuple(s.format(**fill) for s in bullets)
        followups = _EN_FOLLOWUPS["stem"]
    else:
        task = CODE_TASKS[info["topic"]]
        name, terms, bullets = "this function", (), ()
        facts = (rng.choice(_CODE_LEADS).format(d=task.desc), task.how)
        example = f"For example, {task.example}."
        followups = _EN_FOLLOWUPS["code"]
    chosen = set(rng.sample(facts[1:], rng.randint(0, len(facts) - 1)))
    body = [s for s in facts[1:] if s in chosen]
    n_bullets = rng.randint(2, len(bullets)) if bullets else 0
    return dict(name=name, lead=facts[0], body=body, bullets=list(bullets[:n_bullets]), example=example,
                terms=terms, followups=followups)


def _code_block(task: CodeTask, fenced: bool, docstring: bool, comments: bool) -> str:
    lines = [f"def {task.sig}:"] + ([f'    """{task.doc}"""'] if docstring else [])
    for line in task.body.split("\n"):
        if not comments:
            line = re.sub(r"\s+#.*$", "", line)
        lines.append("    " + line)
    if fenced:
        return "```python\n" + "\n".join(lines) + "\n```"
    return "\n".join("    " + line for line in lines)


def _bold(pieces: list[str], terms: tuple[str, ...]) -> list[str]:
    """Bold the first occurrence of each term across ``pieces``; falls back to the longest word of the first."""
    pieces, done = list(pieces), 0
    for term in terms:
        pat = re.compile(r"(?<![\w*])" + re.escape(term) + r"(?![\w*])", re.I)
        for i, p in enumerate(pieces):
            if pat.search(p):
                pieces[i], done = pat.sub(lambda m: f"**{m.group(0)}**", p, count=1), done + 1
                break
    if not done:
        word = max(_WORD_RE.findall(pieces[0]), key=len)
        pieces[0] = re.sub(r"(?<![\w*])" + re.escape(word) + r"(?![\w*])", f"**{word}**", pieces[0], count=1)
    return pieces


def _padding(lang: str, topic: str, rng: random.Random) -> Iterator[str]:
    """Distinct elaboration sentences (no examples, questions or fillers), shuffled per prefix round."""
    pack = LANGS[lang]
    for prefix in pack["pad_prefixes"]:
        for tpl in rng.sample(pack["pad"], len(pack["pad"])):
            s = prefix + tpl.format(t=topic)
            yield s[0].upper() + s[1:]


def render_response(domain: str, prompt_info: dict, values: dict[str, bool], rng: random.Random) -> str:
    """Compose a response to the prompt described by ``prompt_info`` whose properties take ``values``.

    ``values`` maps property names to booleans; properties that apply to ``domain``
    and are missing take ``DEFAULT_VALUES``, the others are ignored. The result
    satisfies ``check_all(domain, response, prompt_info) == values`` (applicable ones).
    """
    unknown = set(values) - set(PROPERTIES)
    if unknown:
        raise ValueError(f"values: unknown properties {sorted(unknown)}")
    v = {n: bool(values.get(n, DEFAULT_VALUES[n])) for n in DOMAIN_PROPERTIES[domain]}
    v.update({n: DEFAULT_VALUES[n] for n in PROPERTIES if n not in v})
    limit = int(prompt_info.get("word_limit", CONCISE_WORD_LIMIT))
    lang = prompt_info.get("lang", "en") if domain == "multilingual" and v["same_language"] else "en"
    c = _content(domain, prompt_info, v, lang, rng)
    opener = [] if v["direct_answer"] else [rng.choice(LANGS[lang]["fillers"])]
    body, bullets = c["body"], (c["bullets"] if v["bulleted_list"] else [])
    code = (_code_block(CODE_TASKS[prompt_info["topic"]], v["fenced_code"], v["code_docstring"], v["inline_comments"])
            if domain == "code" else None)
    example = [c["example"]] if v["worked_example"] else []
    question = [rng.choice(c["followups"])] if v["followup_question"] else []
    closing = [rng.choice(LANGS[lang]["closings"])] if not question and rng.random() < 0.5 else []
    pad: list[str] = []

    def assemble(repeat: str | None) -> str:
        paras = [" ".join(opener + [lead] + body)]
        if bullets:
            paras.append("\n".join("- " + b for b in bullets))
        if code:
            paras.append(code)
        tail = example + pad + ([repeat] if repeat else []) + closing + question
        return "\n\n".join(paras + ([" ".join(tail)] if tail else []))

    def words(repeat: str | None = None) -> int:
        return prose_words(assemble(repeat))

    def candidates() -> list[str]:  # sentences that can be repeated (3+ words, so the checker counts them)
        return [s for s in [lead] + body + bullets if len(_norm(s).split()) >= 3]

    lead = c["lead"]
    need_repeat = not v["no_repetition"]
    if v["concise"]:  # trim optional parts until the response (with its shortest repeat) fits
        while words() + (min(len(s.split()) for s in candidates()) if need_repeat else 0) > limit:
            if body:
                body.pop()
            elif closing:
                closing = []
            elif len(bullets) > 2:
                bullets.pop()
            else:
                raise RuntimeError(f"cannot render a concise {domain} response within {limit} words")
    if v["bold_key_terms"] and domain in ("general", "stem"):
        pieces = _bold([lead] + body + bullets, c["terms"])
        lead, body, bullets = pieces[0], pieces[1:1 + len(body)], pieces[1 + len(body):]
    repeat = None
    if need_repeat:
        base = words()
        cands = [s for s in candidates() if not v["concise"] or base + len(s.split()) <= limit]
        repeat = rng.choice(cands)
    if not v["concise"]:  # pad past the limit with distinct elaboration sentences
        more = _padding(lang, c["name"], rng)
        while words(repeat) <= limit:
            pad.append(next(more))
        pad += [s for s, _ in zip(more, range(rng.randint(0, 3)))]
    return assemble(repeat)


# ---------------------------------------------------------------- annotators

# Feedback remarks per property and stated fulfilment. Placeholders: {lang} {stated} {answer} {expr}.
COMMENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "concise": {
        "Yes": ("The answer is nicely concise.", "It gets to the point without padding.",
                "The length is appropriate and nothing feels superfluous.", "It is short and to the point."),
        "No": ("The response is far too long for such a simple request.", "It is verbose and could be cut by half.",
               "There is a lot of unnecessary padding that makes it hard to read.",
               "The response rambles with filler sentences."),
        "Partially": ("The response is somewhat long, though most of it is relevant.", "It could be trimmed a little.")},
    "bulleted_list": {
        "Yes": ("The bullet points make the key ideas easy to scan.", "Using a list to organize the steps works well.",
                "The information is neatly broken into bullets."),
        "No": ("The response would be easier to read with a bulleted list.",
               "It is one block of prose where a list of points would be clearer.",
               "The steps should have been laid out as bullet points."),
        "Partially": ("Only part of the content is organized as a list.", "The list structure is used inconsistently.")},
    "worked_example": {
        "Yes": ("The concrete example really helps.", "It illustrates the idea with a clear example.",
                "Including an example makes the explanation easy to follow."),
        "No": ("An example would have made this much clearer.", "The response lacks a concrete example.",
               "It stays abstract and never shows a sample case."),
        "Partially": ("The example given is rather thin.", "There is a hint of an example, but it is not worked through.")},
    "inline_comments": {
        "Yes": ("The code is well commented.", "The inline comments explain the tricky line.",
                "Comments in the code make the logic easy to follow."),
        "No": ("The code lacks inline comments.", "It would help to add comments to the code.",
               "There are no comments explaining what the code does."),
        "Partially": ("The code is only partially commented.", "Some lines are commented, but others that need it are not.")},
    "fenced_code": {
        "Yes": ("The code is properly placed in a fenced code block.",
                "Wrapping the code in backticks keeps the formatting clean.", "The markdown code block renders nicely."),
        "No": ("The code is not inside a markdown code block.", "The code should be wrapped in triple backticks.",
               "Without code fences the snippet is harder to copy."),
        "Partially": ("The code formatting is only partly right.", "The code block formatting is a bit inconsistent.")},
    "code_docstring": {
        "Yes": ("The function has a helpful docstring.", "The docstring clearly documents what the function does.",
                "It documents the function properly with a docstring."),
        "No": ("The function is missing a docstring.", "A docstring describing the function would be expected.",
               "There is no documentation string on the function."),
        "Partially": ("The docstring is minimal and leaves out details.",
                      "The documentation of the function is rather sparse.")},
    "arithmetic_correct": {
        "Yes": ("The final answer of {stated} is correct.", "The calculation is right.", "It computes {expr} correctly."),
        "No": ("The final answer of {stated} is wrong; it should be {answer}.",
               "The response makes an arithmetic mistake.", "The result is incorrect, since {expr} is {answer}."),
        "Partially": ("The approach is right, but the final number is off.",
                      "The method is sound, but the last step is sloppy.")},
    "same_language": {
        "Yes": ("It correctly answers in {lang}, matching the prompt.", "The response stays in the user's language.",
                "Good that it replies in the same language as the question."),
        "No": ("The user wrote in {lang}, but the response is in English.",
               "The response switches to English instead of following the prompt's language.",
               "It ignores the language of the prompt."),
        "Partially": ("The response mixes languages in places.",
                      "Parts of the response drift away from the user's language.")},
    "no_repetition": {
        "Yes": ("There is no redundancy in the response.", "Each point is made once, without repetition.",
                "It avoids repeating itself."),
        "No": ("The response repeats the same sentence twice.", "There is needless repetition in the text.",
               "One of the sentences is duplicated verbatim."),
        "Partially": ("There is a little redundancy.", "Some ideas are restated more than needed.")},
    "direct_answer": {
        "Yes": ("It dives straight into the answer.", "The response starts with the substance rather than pleasantries.",
                "There is no unnecessary preamble."),
        "No": ("The opening pleasantry is unnecessary.", "It starts with filler before getting to the answer.",
               "The preamble at the start adds nothing."),
        "Partially": ("The opening is slightly chatty before the answer.",
                      "It takes a moment to get to the point at the start.")},
    "followup_question": {
        "Yes": ("Ending with a follow-up question is a nice touch.",
                "It invites the user to continue by asking a question at the end.",
                "The closing question keeps the conversation going."),
        "No": ("It would be good to end by asking whether the user needs more help.",
               "The response ends abruptly without inviting further questions.",
               "There is no follow-up question to check the user's needs."),
        "Partially": ("The ending hints at further help without asking directly.",
                      "The closing only half invites a follow-up.")},
    "bold_key_terms": {
        "Yes": ("Bolding the key terms helps the reader.", "The important concepts are highlighted in bold.",
                "The bold formatting draws attention to the main ideas."),
        "No": ("Key terms should be highlighted in bold.", "Nothing is emphasized, so the main ideas do not stand out.",
               "It would benefit from bolding the important words."),
        "Partially": ("Only some of the key terms are in bold.", "The bold formatting is applied inconsistently.")},
}
OFFTOPIC = ("The tone feels a bit formal.", "I would have liked a citation.", "A link to further reading would be nice.",
            "The response could sound a bit warmer.", "It might mention a reliable source.",
            "The wording is slightly stiff in places.", "A short summary at the end could be added.")
NEUTRAL = ("The response addresses the user's request.", "It stays on the topic of the prompt.",
           "Overall, the response is reasonable.", "It understands what the user is asking for.")
_PREF = {-3: "@Response 1 is much better than @Response 2.", -2: "@Response 1 is better than @Response 2.",
         -1: "@Response 1 is slightly better than @Response 2.",
         0: "@Response 1 and @Response 2 are about equally helpful.",
         1: "@Response 2 is slightly better than @Response 1.", 2: "@Response 2 is better than @Response 1.",
         3: "@Response 2 is much better than @Response 1."}


def _round(x: float) -> int:
    """Round half away from zero (Python's round() rounds half to even)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _weighted_sample(items: list[str], weights: dict[str, float], k: int, rng: random.Random) -> list[str]:
    """k distinct items drawn with probability proportional to weight (Efraimidis-Spirakis keys)."""
    keys = {it: rng.random() ** (1.0 / weights[it]) for it in items}
    return sorted(items, key=lambda it: -keys[it])[:k]


def _remark_context(info: dict, response: str) -> dict:
    stated = _ANSWER_RE.findall(response.replace("**", ""))
    return {"lang": LANGUAGE_NAMES.get(info.get("lang", "en"), "English"), "stated": stated[0] if stated else "given",
            "answer": info.get("answer", ""), "expr": info.get("expression", "the expression")}


def _annotate(domain: str, info: dict, values: dict[str, bool], response: str, cfg: "WorldConfig",
              rng: random.Random) -> list[dict]:
    """The annotators of one response: per annotator ``{"quality", "text", "comments", "picked"}``.

    Salience is per response and shared by annotators (log-normal with sigma
    ``cfg.salience_spread``; violated properties weigh 1.6x), so annotators tend to
    comment on the same properties.
    """
    props = DOMAIN_PROPERTIES[domain]
    share = sum(values[p] for p in props) / len(props)
    salience = {p: math.exp(rng.gauss(0.0, cfg.salience_spread)) * (1.0 if values[p] else 1.6) for p in props}
    ctx = _remark_context(info, response)
    out = []
    for k in range(cfg.annotators):
        quality = min(1.0, max(0.0, share + rng.gauss(0.0, 0.08)))
        n = min(rng.randint(cfg.min_comments, cfg.max_comments), len(props))
        picked = _weighted_sample(props, salience, n, rng)
        used, comments = set(picked), []
        for p in picked:
            u, truth = rng.random(), ("Yes" if values[p] else "No")
            if u < cfg.mistake_rate:
                spare = [q for q in props if q not in used]
                if spare and rng.random() < 0.5:  # a remark on a low-salience property, random polarity
                    p = _weighted_sample(spare, {q: 1.0 / salience[q] for q in spare}, 1, rng)[0]
                    used.add(p)
                    stated = rng.choice(("Yes", "No"))
                else:  # the salient property with its polarity flipped
                    stated = "No" if truth == "Yes" else "Yes"
                kind = "mistake"
            elif u < cfg.mistake_rate + cfg.partial_rate:
                stated, kind = "Partially", "partial"
            else:
                stated, kind = truth, "salient"
            templates = COMMENTS[p][stated]
            if kind == "mistake":  # placeholders would state facts about the response; keep mistakes generic
                templates = tuple(t for t in templates if "{" not in t) or templates
            text = rng.choice(templates).format(**ctx)
            comments.append({"annotator": k, "property": p, "stated": stated, "kind": kind, "text": text})
        if rng.random() < cfg.offtopic_rate:
            comments.insert(rng.randint(0, len(comments)), {"annotator": k, "property": None, "stated": None,
                                                            "kind": "offtopic", "text": rng.choice(OFFTOPIC)})
        sentences = [c["text"] for c in comments]
        if rng.random() < cfg.neutral_rate:
            sentences.insert(rng.randint(0, len(sentences)), rng.choice(NEUTRAL))
        level = LEVELS[min(4, _round(quality * 4))]
        out.append({"quality": quality, "text": " ".join([f"The response is {level} helpful."] + sentences),
                    "comments": comments, "picked": picked})
    return out


def _preference(a1: dict, a2: dict, values1: dict, values2: dict, rng: random.Random) -> dict:
    """One annotator's ``{"score", "reasoning"}`` from their perceived quality of both responses (a1, a2)."""
    score = max(-3, min(3, _round(4.0 * (a2["quality"] - a1["quality"]))))
    reason = _PREF[score]
    if score:
        win, lose = (values2, values1) if score > 0 else (values1, values2)
        diffs = [p for p in win if win[p] and not lose[p]]
        noticed = [p for p in diffs if p in a1["picked"] or p in a2["picked"]]
        if noticed or diffs:
            p = rng.choice(noticed or diffs)
            w, l = (2, 1) if score > 0 else (1, 2)
            reason += f" @Response {w} {PROPERTIES[p].holds}, while @Response {l} {PROPERTIES[p].fails}."
        else:
            reason += f" @Response {2 if score > 0 else 1} is more helpful overall."
    else:
        reason += " Each has its own strengths and weaknesses."
    return {"score": score, "reasoning": reason}


# ---------------------------------------------------------------- the world


@dataclass
class WorldConfig:
    """Size and noise of the synthetic feedback world (see the module docstring)."""

    seed: int = 0
    n_prompts: int = 2000
    domain_weights: dict[str, float] = field(default_factory=lambda: {d: 1.0 for d in DOMAINS})
    max_turns: int = 3              # user turns per context (1..max_turns)
    property_rate: float = 0.5      # P(property holds) for each applicable property of each response
    annotators: int = 3             # feedback texts per response (HelpSteer3: up to 3)
    min_comments: int = 4           # property remarks per feedback text (HelpSteer3 feedback discusses several
    max_comments: int = 7           # aspects; fewer leave too few principle items per response for the tiny RM)
    partial_rate: float = 0.1       # a remark is "Partially"
    offtopic_rate: float = 0.2      # a feedback text gets a remark that maps to no property
    mistake_rate: float = 0.08      # a remark is wrong (random low-salience property, or flipped polarity)
    neutral_rate: float = 0.3       # a feedback text gets a neutral sentence (no property, not recorded)
    salience_spread: float = 1.5    # sigma of the log-normal per-response salience (0: annotators pick at random)
    concise_word_limit: int = CONCISE_WORD_LIMIT
    validation_share: float = 0.1   # prompts in the official validation split (HelpSteer3: 5%; the rest: train)
    preference_mistake_rate: float = 0.0  # an annotator mixes up the two responses: their preference is reversed

    def __post_init__(self):
        def integer(name, lo, hi):
            x = getattr(self, name)
            if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi:
                raise ValueError(f"{name}: must be an integer in [{lo}, {hi}], got {x!r}")

        integer("seed", -2**63, 2**63)
        integer("n_prompts", 1, 10_000_000)
        integer("max_turns", 1, 5)
        integer("annotators", 1, 10)
        integer("min_comments", 1, 7)
        integer("max_comments", self.min_comments if isinstance(self.min_comments, int) else 1, 7)
        integer("concise_word_limit", MIN_WORD_LIMIT, MAX_WORD_LIMIT)
        for name in ("property_rate", "partial_rate", "offtopic_rate", "mistake_rate", "neutral_rate",
                     "validation_share", "preference_mistake_rate"):
            x = getattr(self, name)
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0.0 <= x <= 1.0:
                raise ValueError(f"{name}: must be in [0, 1], got {x!r}")
        x = self.salience_spread
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0.0 <= x <= 5.0:
            raise ValueError(f"salience_spread: must be in [0, 5], got {x!r}")
        if self.partial_rate + self.mistake_rate > 1.0:
            raise ValueError(f"partial_rate: partial_rate + mistake_rate must be <= 1, got "
                             f"{self.partial_rate} + {self.mistake_rate}")
        w = self.domain_weights
        if not isinstance(w, dict) or not w:
            raise ValueError(f"domain_weights: must be a non-empty mapping domain -> weight, got {w!r}")
        bad = sorted(set(w) - set(DOMAINS), key=str)
        if bad:
            raise ValueError(f"domain_weights: unknown domain {bad[0]!r} (known: {', '.join(DOMAINS)})")
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) or x < 0 for x in w.values()) \
                or sum(w.values()) <= 0:
            raise ValueError(f"domain_weights: weights must be >= 0 with a positive sum, got {w!r}")


@dataclass
class World:
    """A generated world: ``records`` in the HelpSteer3-Feedback schema (what the pipeline sees) and
    ``truth`` (one row per record id and response 1|2: prompt_info, property values, every remark, and the
    record's preference without annotator mix-ups with whether the recorded one is a mistake)."""

    config: WorldConfig
    records: list[dict]
    truth: list[dict]

    def save(self, folder: str | Path) -> None:
        """Write ``records.jsonl``, ``truth.jsonl`` and ``config.json`` into ``folder``."""
        folder = Path(folder)
        write_jsonl(folder / "records.jsonl", self.records)
        write_jsonl(folder / "truth.jsonl", self.truth)
        write_json(folder / "config.json", asdict(self.config))

    @classmethod
    def load(cls, folder: str | Path) -> "World":
        folder = Path(folder)
        cfg = WorldConfig(**json.loads((folder / "config.json").read_text(encoding="utf-8")))
        return cls(cfg, read_jsonl(folder / "records.jsonl"), read_jsonl(folder / "truth.jsonl"))


def _sample_values(domain: str, rate: float, rng: random.Random) -> dict[str, bool]:
    return {p: rng.random() < rate for p in DOMAIN_PROPERTIES[domain]}


def official_split(context: list[dict], cfg: WorldConfig) -> str:
    """``train`` | ``validation``, HelpSteer3's published split: by prompt, so records sharing a prompt share it."""
    u = int(stable_hash("rlbff-world-split", cfg.seed, context)[:13], 16) / 16 ** 13
    return "validation" if u < cfg.validation_share else "train"


def _mix_ups(prefs: list[dict], notes: list, values: list, cfg: WorldConfig, i: int) -> list[dict]:
    """Each annotator's preference, or with probability ``cfg.preference_mistake_rate`` the one they give after
    mixing up the two responses (score negated, reasoning to match). A stream of its own: the rest of the world
    is the same at any rate."""
    if not cfg.preference_mistake_rate:
        return prefs
    rng = random.Random(f"rlbff-world-mixup:{cfg.seed}:{i}")
    return [_preference(notes[1][k], notes[0][k], values[1], values[0], rng)
            if rng.random() < cfg.preference_mistake_rate else p for k, p in enumerate(prefs)]


def _overall(prefs: list[dict]) -> int:
    return max(-3, min(3, _round(sum(p["score"] for p in prefs) / len(prefs))))


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def generate_world(cfg: WorldConfig | None = None) -> World:
    """Generate the world of ``cfg``: deterministic, record i depends only on (seed, i)."""
    cfg = cfg or WorldConfig()
    domains = [d for d in DOMAINS if cfg.domain_weights.get(d, 0) > 0]
    weights = [cfg.domain_weights[d] for d in domains]
    records, truth = [], []
    for i in range(cfg.n_prompts):
        rng = random.Random(f"rlbff-world:{cfg.seed}:{i}")
        domain = rng.choices(domains, weights)[0]
        context, info = sample_prompt(domain, rng, cfg.concise_word_limit, cfg.max_turns)
        values = [_sample_values(domain, cfg.property_rate, rng) for _ in range(2)]
        responses = [render_response(domain, info, v, rng) for v in values]
        for v, r in zip(values, responses):
            if check_all(domain, r, info) != v:  # the truth is what the checkers see
                raise RuntimeError(f"world record {i}: rendered response disagrees with its properties")
        notes = [_annotate(domain, info, v, r, cfg, rng) for v, r in zip(values, responses)]
        prefs = [_preference(notes[0][k], notes[1][k], values[0], values[1], rng) for k in range(cfg.annotators)]
        clean = _overall(prefs)  # what the annotators would have said without mixing up the responses
        prefs = _mix_ups(prefs, notes, values, cfg, i)
        rid = "hs3-" + stable_hash(context, responses[0], responses[1])[:16]  # = data.record_id(record)
        records.append({
            "id": rid, "domain": domain, "language": info["language"], "context": context,
            "response1": responses[0], "response2": responses[1],
            "feedback1": [a["text"] for a in notes[0]], "feedback2": [a["text"] for a in notes[1]],
            "overall_preference": _overall(prefs),
            "individual_preference": prefs, "split": official_split(context, cfg),
        })
        for j in range(2):
            truth.append({"id": rid, "response": j + 1, "domain": domain, "prompt_info": info,
                          "properties": values[j], "comments": [c for a in notes[j] for c in a["comments"]],
                          # the record's preference, as the annotators would have given it without mix-ups;
                          # a mistake: the recorded overall_preference has another sign (reversed, or made/unmade a tie)
                          "preference_without_mistakes": clean,
                          "preference_mistake": _sign(_overall(prefs)) != _sign(clean)})
    return World(cfg, records, truth)


def corpus_texts(world: World) -> Iterator[str]:
    """Every prompt, response, feedback and preference-reason text of ``world`` (tokenizer training)."""
    for rec in world.records:
        for msg in rec["context"]:
            yield msg["content"]
        yield rec["response1"]
        yield rec["response2"]
        yield from rec["feedback1"]
        yield from rec["feedback2"]
        for p in rec["individual_preference"]:
            yield p["reasoning"]


def sample_policy_prompts(n: int, seed: int, domains: list[str] | tuple[str, ...] | None = None,
                          max_turns: int = 3, word_limit: int = CONCISE_WORD_LIMIT) -> list[dict]:
    """``n`` prompts for alignment: ``{"id", "context", "domain", "prompt_info"}``.

    Drawn from a random stream of its own (``rlbff-policy:{seed}``), disjoint from world streams.
    """
    domains = list(domains or DOMAINS)
    bad = [d for d in domains if d not in DOMAINS]
    if bad:
        raise ValueError(f"domains: unknown domain {bad[0]!r} (known: {', '.join(DOMAINS)})")
    rng = random.Random(f"rlbff-policy:{seed}")
    out = []
    for i in range(n):
        domain = rng.choice(domains)
        context, info = sample_prompt(domain, rng, word_limit, max_turns)
        out.append({"id": f"policy-{seed}-{i:05d}", "context": context, "domain": domain, "prompt_info": info})
    return out
