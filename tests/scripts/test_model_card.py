"""The model card's generated sentences: how make model ran, and where the model loses objects."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import model_card  # noqa: E402

RECALL = {"objects": 60, "proposals": [52, 45], "final": [47, 20], "score": 0.05, "proposal_count": 300}


def test_one_go_only_when_one_invocation_ran_every_step():
    assert model_card.one_go({"make_model_invocations": [1]}) == " in one go"
    assert "over 2 invocations" in model_card.one_go({"make_model_invocations": [1, 2]})
    assert model_card.one_go({}) == ""  # an older checkpoint says nothing rather than guess


def test_localisation_lines_follow_the_measured_counts():
    lines = model_card.localisation_lines({"proposal_recall": RECALL}, {"box_head": "prior"})
    text = " ".join(lines)
    assert "45 of 60 objects (52 at ≥ 0.5)" in text and "IoU ≥ 0.7 on 20 (47 at ≥ 0.5)" in text
    assert "class prior" in text  # the prior head's known failure, explained
    plain = model_card.localisation_lines({"proposal_recall": RECALL}, {"box_head": "fc"})
    assert len(plain) == 2 and "class prior" not in " ".join(plain)
    assert model_card.localisation_lines({}, {"box_head": "prior"}) == []


def test_the_default_threshold_is_the_lowest_within_the_f1_slack_of_the_best():
    import make_model

    def curve(rows):
        return [{"score": s, "precision": p, "recall": r} for s, p, r in rows]

    # v5's curve: best F1 0.53 at 0.5; 0.4 is within 0.03 (0.51) and keeps more people
    v5 = curve([(0.3, 0.37, 0.58), (0.4, 0.48, 0.54), (0.5, 0.58, 0.49), (0.6, 0.55, 0.33)])
    assert make_model.choose_threshold(v5) == 0.4
    # v4's: best 0.49 at 0.6, 0.5 is 0.04 below it
    v4 = curve([(0.3, 0.25, 0.67), (0.4, 0.30, 0.64), (0.5, 0.36, 0.59), (0.6, 0.43, 0.58), (0.7, 0.41, 0.43)])
    assert make_model.choose_threshold(v4) == 0.6
    # scores outside THRESHOLD_RANGE are never chosen
    assert make_model.choose_threshold(curve([(0.2, 0.9, 0.9), (0.3, 0.5, 0.5)])) == 0.3


def test_curves_say_which_model_reaches_both_goals_at_one_score():
    def curve(rows):
        return [{"score": s, "precision": p, "recall": r} for s, p, r in rows]

    results = {"student": {"precision_curve": curve([(0.3, 0.45, 0.53), (0.5, 0.66, 0.46)])},
               "teacher": {"precision_curve": curve([(0.3, 0.79, 0.85), (0.4, 0.81, 0.80), (0.5, 0.9, 0.6)])},
               "unscored": {}}
    lines = model_card.curves_lines(results)
    assert len(lines) == 4  # a heading, a blank line, one line per model with a curve
    assert lines[2].startswith("- student: 0.3: 0.45/0.53, 0.5: 0.66/0.46") and lines[2].endswith("never both ≥ 0.8")
    assert lines[3].endswith("both ≥ 0.8 at 0.4")  # 0.3 misses precision by 0.01, 0.5 recall
    assert model_card.curves_lines({"x": {}}) == []
