"""`Preset`: a named task (`--task sst2`) of a family, with its column names and label names."""

from __future__ import annotations

from dataclasses import dataclass, field

from bertq.families.family import Family


@dataclass(frozen=True)
class Preset:
    """What `--task NAME` fills in: the family, and defaults for the data's columns and labels."""

    name: str
    family: Family
    text_column: str | None = None
    """The column holding the text; None: guessed from the file's columns."""
    label_column: str | None = None
    label_names: dict[str, str] = field(default_factory=dict)
    """Human names of label values, saved in the model's config (sst2: 0 -> negative)."""
    train: str | None = None
    """The default --train: the Hub dataset the tutorial loads by name (`hub:NAME[#CONFIG]:SPLIT`)."""
    eval: str | None = None
    """The default --eval (and evaluate's --data)."""
    text_pair_column: str | None = None
    """Sentence-pair tasks: the column holding the second text."""

    @property
    def max_length(self) -> int:
        """The preset's default --max-length: its family's (QA needs room for question and context)."""
        return self.family.default_max_length
