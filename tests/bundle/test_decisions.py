import numpy as np
import pytest

from foramflow.bundle.decisions import DecisionRule
from foramflow.bundle.schema import validate_threshold

LABELS = ("a", "b")


@pytest.mark.parametrize("value", [0.0, 0.5000001, 0.8, 1.0])
def test_threshold_accepts_open_half_to_one_and_zero(value):
    assert validate_threshold(value) == value


@pytest.mark.parametrize("value", [0.5, 0.3, 1.01, -0.1, 0.0001])
def test_threshold_outside_range_is_a_clear_error(value):
    with pytest.raises(ValueError, match=r"\(0.5, 1.0\].*0 to switch it off"):
        validate_threshold(value)


def test_score_equal_to_threshold_is_unsure_and_just_above_is_sure():
    at = np.float32(0.8)
    above = np.nextafter(at, np.float32(1))
    probs = np.array([[at, 1 - at], [above, 1 - above], [1 - above, above]], dtype=np.float32)
    classes, scores, status = DecisionRule(LABELS, 0.8).decide(probs)
    assert classes == ["unsure", "a", "b"]
    assert status == ["unsure", "ok", "ok"]
    np.testing.assert_array_equal(scores, [at, above, above])


def test_threshold_one_leaves_only_certain_images():
    probs = np.array([[1.0, 0.0], [0.999, 0.001]], dtype=np.float32)
    classes, _, _ = DecisionRule(LABELS, 1.0).decide(probs)
    assert classes == ["unsure", "unsure"]  # nothing exceeds 1


def test_zero_switches_the_rule_off_including_class_thresholds():
    probs = np.array([[0.51, 0.49], [0.3, 0.7]], dtype=np.float32)
    classes, _, status = DecisionRule(LABELS, 0.0, {"a": 0.9}).decide(probs)
    assert classes == ["a", "b"]
    assert status == ["ok", "ok"]


def test_class_thresholds_override_the_global_one_for_their_class():
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.97, 0.03]], dtype=np.float32)
    classes, _, _ = DecisionRule(LABELS, 0.8, {"a": 0.95}).decide(probs)
    assert classes == ["unsure", "b", "a"]


def test_invalid_class_threshold_names_its_label():
    with pytest.raises(ValueError, match="class threshold of 'b'"):
        DecisionRule(LABELS, 0.8, {"b": 0.4})
    with pytest.raises(ValueError, match="unknown label 'c'"):
        DecisionRule(LABELS, 0.8, {"c": 0.9})


@pytest.mark.parametrize("reserved", ["unsure", "error"])
def test_reserved_words_cannot_be_labels(reserved):
    with pytest.raises(ValueError, match="reserved"):
        DecisionRule(("a", reserved), 0.8)
