"""The bulk-inference tasks (`bertq submit infer --task ...`): one registry, `INFER_TASKS`.

An inference task is not a task family: it is what a trained (or bare) model is used for, and
several tasks may use one family's head (zero-shot runs an NLI sequence classifier). Each task says
which trained head it needs, what its results are called, and which models read only the first
token's final state for it (the serving layers then compute that row alone in the last layer).
Standard library only: the CLI checks a submit with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bertq.errors import BertqError
from bertq.families import FAMILIES, Family

_FIRST_TOKEN_CLASSIFIERS = frozenset(
    {
        "BertForSequenceClassification",
        "ErnieForSequenceClassification",
        "RobertaForSequenceClassification",
        "XLMRobertaForSequenceClassification",
        "CamembertForSequenceClassification",
        "ElectraForSequenceClassification",
    }
)
"""Classifiers whose head is the [CLS] (<s>) pooler or takes `features[:, 0]`."""
_FIRST_TOKEN_ENCODERS = frozenset(
    {"BertModel", "ErnieModel", "RobertaModel", "XLMRobertaModel", "CamembertModel", "ElectraModel"}
)
"""Bare encoders, whose CLS-pooled embedding is the first token's final state."""


@dataclass(frozen=True)
class InferTask:
    """One `--task` of bulk inference."""

    name: str
    head: Family | None
    """The family whose trained head the model must carry; None: a bare encoder is used (embeddings)."""
    result_key: str
    """The field of each result that holds the answer (what precisions are compared on)."""
    first_token_models: frozenset[str] = frozenset()
    """Model classes whose output, for this task, reads only the first token's final hidden state."""
    first_token_needs_cls_pooling: bool = False
    """Whether the first token is all that is read only when the pooling is `cls` (embeddings)."""
    ranks_labels: bool = False
    """Zero-shot: ranks the candidate `--labels` by an NLI model's entailment score."""
    asks_question: bool = False
    """Asks one `--question` of every text, or each record's own (`--question-column`)."""
    reads_pairs: bool = False
    """Reads a second text per record (`--text-pair-column`): NLI and similarity pairs."""
    vectors: bool = False
    """Results are vectors: precisions are compared by cosine, not by equal answers."""
    columns: tuple[tuple[str, str], ...] = ()
    """The fields of each result (after `id`) and their types, the Parquet output's schema:
    string, float64, int32, list<string>, list<float32>, list<float64>, map<string,float64>, entities."""
    optional_columns: tuple[tuple[str, str], ...] = ()
    """Fields present only with an option (classify --all-scores: `scores`)."""

    def reads_first_token_only(self, model_class_name: str, *, pooling: str) -> bool:
        """Whether a model of this class reads only the first token's final state for this task."""
        if self.first_token_needs_cls_pooling and pooling != "cls":
            return False
        return model_class_name in self.first_token_models


INFER_TASKS: dict[str, InferTask] = {
    task.name: task
    for task in (
        InferTask(
            "classify",
            FAMILIES["classification"],
            "label",
            _FIRST_TOKEN_CLASSIFIERS,
            reads_pairs=True,
            columns=(("label", "string"), ("score", "float64")),
            optional_columns=(("scores", "map<string,float64>"),),
        ),
        InferTask(
            "score",
            FAMILIES["regression"],
            "score",
            _FIRST_TOKEN_CLASSIFIERS,
            reads_pairs=True,
            columns=(("score", "float64"),),
        ),
        InferTask("ner", FAMILIES["ner"], "entities", columns=(("entities", "entities"),)),
        InferTask(
            "embed",
            None,
            "embedding",
            _FIRST_TOKEN_ENCODERS,
            first_token_needs_cls_pooling=True,
            vectors=True,
            columns=(("embedding", "list<float32>"),),
        ),
        InferTask(
            "zero-shot",
            FAMILIES["classification"],
            "labels",
            _FIRST_TOKEN_CLASSIFIERS,
            ranks_labels=True,
            columns=(("labels", "list<string>"), ("scores", "list<float64>")),
        ),
        InferTask(
            "qa",
            FAMILIES["qa"],
            "answer",
            asks_question=True,
            columns=(("answer", "string"), ("start", "int32"), ("end", "int32"), ("score", "float64")),
        ),
    )
}
"""Every bulk-inference task by name, in the order users see them listed."""


def get_infer_task(name: str) -> InferTask:
    """The inference task called `name`; an unknown name is refused with the choices."""
    try:
        return INFER_TASKS[name]
    except KeyError:
        raise BertqError(f"unknown inference task {name!r}; choose one of: {', '.join(INFER_TASKS)}") from None
