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


def correlations(predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman correlation and mean squared error of predicted numbers (regression)."""
    predictions = np.asarray(predictions, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)

    def pearson(a: np.ndarray, b: np.ndarray) -> float:
        if a.size < 2 or a.std() == 0 or b.std() == 0:
            return 0.0  # a constant prediction correlates with nothing
        return float(np.corrcoef(a, b)[0, 1])

    def ranks(values: np.ndarray) -> np.ndarray:  # average ranks of ties, as Spearman's rho needs
        order = np.argsort(values, kind="stable")
        ranked = np.empty(values.size, dtype=np.float64)
        ranked[order] = np.arange(values.size, dtype=np.float64)
        _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        sums = np.bincount(inverse, weights=ranked)
        return sums[inverse] / counts[inverse]

    return {
        "pearson": pearson(predictions, targets),
        "spearman": pearson(ranks(predictions), ranks(targets)),
        "mse": float(np.mean((predictions - targets) ** 2)) if targets.size else 0.0,
    }
