"""The knowledge-distillation loss, as the tutorial (and Hinton et al., 2015) define it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bertq.worker.textdata import IGNORE_INDEX

"""The gold label of a transfer example: it has soft labels from the teacher only."""


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE(student, gold).

    The T^2 factor keeps the soft term's gradients on the scale of the hard term's as T grows.
    Examples whose label is IGNORE_INDEX (unlabelled transfer data) add to the soft term only."""
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student_logits.float() / t, dim=-1),
        F.softmax(teacher_logits.float() / t, dim=-1),
        reduction="batchmean",
    ) * (t * t)
    labelled = labels != IGNORE_INDEX
    if labelled.any():
        hard = F.cross_entropy(student_logits[labelled].float(), labels[labelled])
    else:
        hard = student_logits.sum() * 0.0
    return alpha * soft + (1 - alpha) * hard
