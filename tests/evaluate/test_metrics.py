import numpy as np
import pytest

from foramflow.evaluate.metrics import classification_metrics, confusion, worst_confusions

CLASSES = ["a", "b", "c"]


def test_metrics_on_a_known_prediction():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 1, 2, 0])
    m = classification_metrics(y_true, y_pred, CLASSES)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["per_class"]["a"]["precision"] == pytest.approx(3 / 4)
    assert m["per_class"]["a"]["recall"] == pytest.approx(3 / 4)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["recall"] == pytest.approx(1 / 2)
    assert m["macro_recall"] == pytest.approx((3 / 4 + 1 + 1 / 2) / 3)
    assert m["per_class"]["c"]["support"] == 2


def test_confusion_rows_are_true_classes_and_worst_pairs_are_off_diagonal():
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 1, 2, 2, 0])
    matrix = confusion(y_true, y_pred, 3)
    assert matrix.tolist() == [[1, 2, 0], [0, 2, 0], [1, 0, 2]]
    worst = worst_confusions(matrix, CLASSES)
    assert [(w["true"], w["predicted"], w["count"]) for w in worst] == [
        ("a", "b", 2),
        ("c", "a", 1),
    ]


def test_no_confusion_when_everything_is_right():
    matrix = np.diag([3, 4, 5])
    assert worst_confusions(matrix, CLASSES) == []
