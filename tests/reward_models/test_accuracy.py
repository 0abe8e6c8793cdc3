"""Accuracy on principle items and pairs: hand-counted cases, groups, ties, the majority baseline."""
import pytest

from rlbff_lib.core.stats import wilson_interval
from rlbff_lib.reward_models.accuracy import item_accuracy, majority_share, pair_accuracy, rate


def item(label, domain="general", prop=None):
    return {"label": label, "domain": domain, "property": prop}


def test_items_right_when_the_side_of_the_threshold_agrees_with_the_label():
    items = [item("Yes"), item("No"), item("Yes", "code", "concise"), item("No", "code", "concise"), item("Yes")]
    scores = [2.0, -1.0, -0.5, 0.0, 0.5]  # right, right, wrong (Yes below 0), right (0 is not > 0), right
    res = item_accuracy(scores, items, per_property=True)
    assert res["accuracy"] == 80.0 and res["n"] == 5 and res["threshold"] == 0.0
    assert res["ci"] == pytest.approx([100 * x for x in wilson_interval(4, 5)])
    assert res["majority"] == 60.0 and res["yes_share"] == 60.0
    assert res["groups"]["code"] == {"accuracy": 50.0, "ci": pytest.approx([100 * x for x in wilson_interval(1, 2)]),
                                     "n": 2, "majority": 50.0}
    assert res["groups"]["general"]["accuracy"] == 100.0 and res["groups"]["general"]["majority"] == pytest.approx(
        200 / 3)
    assert set(res["per_property"]) == {"concise"} and res["per_property"]["concise"]["accuracy"] == 50.0
    shifted = item_accuracy(scores, items, threshold=0.75)  # a fitted threshold (principle-blind model)
    assert shifted["accuracy"] == 60.0 and "per_property" not in shifted


def test_pairs_right_only_when_the_yes_response_scores_strictly_higher():
    pairs = [{"domain": "general"}, {"domain": "general"}, {"domain": "stem"}, {"domain": "stem"}]
    res = pair_accuracy([1.0, 0.2, 3.0, -1.0], [0.0, 0.2, 5.0, -2.0], pairs)
    assert res["accuracy"] == 50.0 and res["n"] == 4 and res["ties"] == 1  # the tie counts wrong
    assert res["groups"] == {"general": rate([True, False]), "stem": rate([False, True])}
    assert pair_accuracy([], [], []) is None and item_accuracy([], []) is None
    with pytest.raises(ValueError, match="^scores"):
        pair_accuracy([1.0], [0.0, 1.0], pairs[:1])
    with pytest.raises(ValueError, match="^scores"):
        item_accuracy([1.0], [item("Yes"), item("No")])


def test_majority_and_rate():
    assert majority_share(["Yes", "No", "No"]) == pytest.approx(200 / 3)
    assert rate([True] * 3) == {"accuracy": 100.0, "ci": pytest.approx([100 * wilson_interval(3, 3)[0], 100.0]),
                                "n": 3}
