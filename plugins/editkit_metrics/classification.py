"""Scores of predicted class labels against true ones: accuracy, support-weighted F1, Matthews' correlation.

These are the figures of the AlphaEdit reference's general-capability evaluation (scikit-learn's
``f1_score(average="weighted")`` and ``matthews_corrcoef``), written out:

* weighted F1 = Σ_c n_c · F1_c / Σ_c n_c over the classes ``c`` in ``y_true ∪ y_pred``, with ``n_c`` the
  number of true labels ``c`` (a class only predicted weighs 0) and ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)``
  (0 when the denominator is 0);
* MCC (two classes, positive = 1) = (TP·TN − FP·FN) / √((TP+FP)(TP+FN)(TN+FP)(TN+FN)), 0 when a factor is 0;
* accuracy = share of equal labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _check(y_true: Sequence[int], y_pred: Sequence[int]) -> None:
    if len(y_true) != len(y_pred) or not y_true:
        raise ValueError(f"need equally many true and predicted labels, at least one: {len(y_true)}, {len(y_pred)}")


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    _check(y_true, y_pred)
    return sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)


def weighted_f1(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    _check(y_true, y_pred)
    total = 0.0
    for c in set(y_true) | set(y_pred):
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred))
        fp = sum(t != c and p == c for t, p in zip(y_true, y_pred))
        fn = sum(t == c and p != c for t, p in zip(y_true, y_pred))
        f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0
        total += f1 * sum(t == c for t in y_true)
    return total / len(y_true)


def matthews(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """MCC of two classes, 0 and 1."""
    _check(y_true, y_pred)
    if not set(y_true) | set(y_pred) <= {0, 1}:
        raise ValueError("matthews: labels must be 0 or 1")
    tp = sum(t == 1 and p == 1 for t, p in zip(y_true, y_pred))
    tn = sum(t == 0 and p == 0 for t, p in zip(y_true, y_pred))
    fp = sum(t == 0 and p == 1 for t, p in zip(y_true, y_pred))
    fn = sum(t == 1 and p == 0 for t, p in zip(y_true, y_pred))
    denominator = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    return (tp * tn - fp * fn) / math.sqrt(denominator) if denominator else 0.0


SCORES = {"f1": weighted_f1, "mcc": matthews, "acc": accuracy}
"""By the suffix of the figure's name (``general_cola_mcc``)."""
