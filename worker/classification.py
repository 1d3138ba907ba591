"""Classification metrics with numpy alone (no scikit-learn dependency)."""

from __future__ import annotations

import numpy as np


def accuracy_and_f1(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy, and F1: of class 1 for two classes (the GLUE convention), macro-averaged otherwise."""
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    accuracy = float((predictions == labels).mean()) if labels.size else 0.0
    classes = [1] if num_classes == 2 else list(range(num_classes))
    scores = []
    for cls in classes:
        true_positive = float(((predictions == cls) & (labels == cls)).sum())
        predicted = float((predictions == cls).sum())
        actual = float((labels == cls).sum())
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / actual if actual else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return {"accuracy": accuracy, "f1": float(np.mean(scores))}
