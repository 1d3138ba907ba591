"""The knowledge-distillation loss, as the tutorial (and Hinton et al., 2015) define it, and the
collator that brings the teacher's soft labels into each batch."""

from __future__ import annotations

from typing import Any

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
    Examples whose label is IGNORE_INDEX (unlabelled transfer data) add to the soft term only.
    Per-token logits (batch, tokens, classes) count each token as a decision; a teacher row of NaN
    (a token that decides nothing: a word's later pieces, padding, a word the teacher truncated)
    adds to neither term's average."""
    classes = student_logits.size(-1)
    student_logits = student_logits.reshape(-1, classes)
    teacher_logits = teacher_logits.reshape(-1, classes)
    labels = labels.reshape(-1)
    t = temperature
    taught = torch.isfinite(teacher_logits).all(dim=-1)
    if taught.any():
        soft = F.kl_div(
            F.log_softmax(student_logits[taught].float() / t, dim=-1),
            F.softmax(teacher_logits[taught].float() / t, dim=-1),
            reduction="batchmean",
        ) * (t * t)
    else:
        soft = student_logits.sum() * 0.0
    labelled = labels != IGNORE_INDEX
    if labelled.any():
        hard = F.cross_entropy(student_logits[labelled].float(), labels[labelled])
    else:
        hard = student_logits.sum() * 0.0
    return alpha * soft + (1 - alpha) * hard


class SoftLabelCollator:
    """The family's collator, with each example's `teacher_logits` stacked beside it: a class vector
    per example, or per token a vector padded with NaN rows to the batch's padded length."""

    def __init__(self, collator: Any):
        self.collator = collator

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        soft = [torch.tensor(f.pop("teacher_logits"), dtype=torch.float32) for f in features]
        batch = self.collator(features)
        if soft[0].dim() == 2:
            width = batch["input_ids"].shape[1]
            padded = torch.full((len(soft), width, soft[0].shape[-1]), float("nan"))
            left = getattr(getattr(self.collator, "tokenizer", None), "padding_side", "right") == "left"
            for row, values in enumerate(soft):
                if left:
                    padded[row, width - values.shape[0] :] = values
                else:
                    padded[row, : values.shape[0]] = values
            batch["teacher_logits"] = padded
        else:
            batch["teacher_logits"] = torch.stack(soft)
        return batch


def layer_losses(
    student: Any,
    teacher: Any,
    attention_mask: torch.Tensor,
    layer_map: list[int],
    *,
    projection: torch.nn.Module | None = None,
    hidden_weight: float = 0.0,
    attention_weight: float = 0.0,
) -> torch.Tensor:
    """Layer-to-layer distillation over the real tokens of a batch; student layer i learns from
    teacher layer `layer_map[i]`.

    - hidden states (DistilBERT's cosine loss): 1 - cos(student, teacher) per token, the student's
      state first mapped to the teacher's width by `projection` when the widths differ;
    - attention (TinyBERT / MiniLM): KL(teacher || student) of each query token's attention
      distribution, averaged over heads (so teacher and student may have different head counts).
    Each term is averaged over the mapped layers, then weighted."""
    real = attention_mask.bool()
    total = student.logits.new_zeros((), dtype=torch.float32)
    for student_layer, teacher_layer in enumerate(layer_map):
        if hidden_weight:
            mine = student.hidden_states[student_layer + 1][real].float()  # index 0: the embeddings
            theirs = teacher.hidden_states[teacher_layer + 1][real].float()
            if projection is not None:
                mine = projection(mine)
            total = total + hidden_weight * (1 - F.cosine_similarity(mine, theirs, dim=-1)).mean() / len(layer_map)
        if attention_weight:
            mine = student.attentions[student_layer].float().mean(dim=1)[real]  # (real queries, keys)
            theirs = teacher.attentions[teacher_layer].float().mean(dim=1)[real]
            divergence = (theirs * (theirs.clamp_min(1e-12).log() - mine.clamp_min(1e-12).log())).sum(-1).mean()
            total = total + attention_weight * divergence / len(layer_map)
    return total


def default_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Student layer i learns from teacher layer round((i + 1) * T / S) - 1: spread evenly, last to last."""
    return [round((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]
