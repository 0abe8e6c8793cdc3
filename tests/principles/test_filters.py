"""Filters 0-3: sanitising, the evidence match (the paper's plain partial_ratio, and the lenient one),
helpfulness, Partially; each candidate's fate and the filters it fails on its own."""
import pytest

from rlbff_lib.principles import filters as F
from rlbff_lib.stages.principles import funnel


def _row(record_id, response, annotator, text, principles, status="ok"):
    return {"item_id": f"{record_id}:{response}:{annotator}", "record_id": record_id, "response": response,
            "annotator": annotator, "text": text, "status": status, "reason": "" if status == "ok" else "boom",
            "principles": principles}


def _p(principle, fulfillment="Yes", evidence=None):
    return {"principle": principle, "fulfillment": fulfillment, "evidence": evidence or f"It is {principle}."}


@pytest.mark.parametrize("principle", [
    "helpful", "Helpfulness", "overall helpfulness", "is helpful", "The response is helpful.", "unhelpful",
    "not helpful", "mostly helpful", "usefulness", "the response is mostly helpful", "helpful response",
    "  HELPFUL  ", "response helpfulness"])
def test_helpfulness_and_close_variants_are_dropped(principle):
    assert F.is_helpfulness(principle)


@pytest.mark.parametrize("principle", [
    "helpful code comments", "provides helpful examples", "conciseness", "helps the user debug",
    "usefulness of the examples", "contains inline comments"])
def test_specific_principles_are_not_helpfulness(principle):
    assert not F.is_helpfulness(principle)


FB = "The response is mostly helpful. The code lacks inline comments, which makes it hard to follow."


def test_evidence_match_is_the_papers_plain_partial_ratio():
    assert F.evidence_score("The code lacks inline comments", FB) == 100
    # smart quotes, zero-width characters, full-width letters and odd spacing are sanitised first (filter 0)
    assert F.evidence_score("The\u200b code  lacks ｉｎｌｉｎｅ comments", FB) == 100
    assert F.evidence_score("The example about photosynthesis is wrong", FB) <= 60
    assert F.evidence_score("", FB) == 0
    # case and punctuation count in the paper's match: a quote in capitals is no quote ...
    shout = "THE CODE LACKS INLINE COMMENTS"
    assert F.evidence_score(shout, FB) < 20
    # ... the lenient match (lowercase, punctuation to spaces) finds it
    assert F.evidence_score(shout, FB, lenient=True) == 100
    assert F.evidence_score("the code lacks inline comments!!", FB, lenient=True) == 100


def test_evidence_match_param_selects_strict_or_lenient():
    rows = [_row("r", 1, 0, FB, [_p("contains inline comments", "No", "THE CODE LACKS INLINE COMMENTS")])]
    for match, fate in (("strict", "evidence"), ("lenient", None)):
        cands, _ = F.candidates_from_rows(rows)
        F.apply_filters(cands, {"r:1:0": FB}, F.FilterConfig(evidence_match=match))
        assert cands[0]["fate"] == fate, match
    with pytest.raises(ValueError, match="^evidence_match"):
        F.FilterConfig(evidence_match="fuzzy")
    with pytest.raises(ValueError, match="^evidence_threshold"):
        F.FilterConfig(evidence_threshold=100)


def test_sanitize_counts_and_drops_bad_principles():
    principles = [
        _p("conciseness", "yes"),                     # fulfillment case is tolerated
        _p("Conciseness ", "No"),                     # duplicate in the same feedback (case/space)
        _p("", "Yes"),                                # empty
        _p("   ", "No"),                              # blank
        _p("x" * 500, "Yes"),                         # enormous
        {"principle": "clarity", "fulfillment": "Maybe", "evidence": "e"},  # bad fulfillment
        {"principle": 3, "fulfillment": "Yes", "evidence": "e"},             # not a string
        "not even a dict",
        _p("uses\u200b bullet\u00a0points", "Yes"),  # unicode oddities: cleaned, kept
    ]
    rows = [_row("r", 1, 0, "text", principles), _row("r", 1, 1, "", [], status="skipped"),
            _row("r", 1, 2, "t", [], status="failed")]
    cands, counts = F.candidates_from_rows(rows, max_principle_chars=100)
    reasons = [c["reason"] for c in cands]
    assert reasons == ["", "duplicate_in_feedback", "empty_principle", "empty_principle", "overlong_principle",
                       "malformed", "malformed", "malformed", ""]
    assert cands[0]["fulfillment"] == "Yes"
    assert cands[-1]["principle"] == "uses bullet points"
    assert counts["unicode_normalized"] >= 1 and counts["malformed"] == 3


def test_filters_in_order_and_every_failure_recorded():
    text = "The response is mostly helpful. It is concise. The list is only partly used."
    rows = [_row("r", 1, 0, text, [
        _p("helpful", "Yes", "The response is mostly helpful."),
        _p("conciseness", "Yes", "It is concise."),
        _p("uses bullet points", "Partially", "The list is only partly used."),
        _p("correctness", "No", "The arithmetic in step three is wrong and misleading."),  # not in the text
        _p("helpfulness", "Partially", "An invented quote about something else entirely."),  # fails all three
    ])]
    cands, _ = F.candidates_from_rows(rows)
    drops = F.apply_filters(cands, {"r:1:0": text}, F.FilterConfig(evidence_threshold=60))
    assert [c["fate"] for c in cands] == ["helpfulness", None, "partially", "evidence", "evidence"]
    assert [c["fails"] for c in cands] == [["helpfulness"], [], ["partially"], ["evidence"],
                                           ["evidence", "helpfulness", "partially"]]
    assert drops == {"evidence": 2, "helpfulness": 1, "partially": 1}
    f = funnel(cands)
    assert [f[k]["count"] for k in sorted(f)] == [5, 5, 3, 2, 1, 1]
    assert f["2_evidence"]["removed_share_of_step"] == 0.4
