"""The project's own exceptions: one root type, so callers can catch bertq's errors alone."""

from __future__ import annotations


class BertqError(Exception):
    """Root of every error bertq raises on purpose. Its message says what is wrong and the fix."""


class SpecError(BertqError):
    """A job specification has problems; all of them are listed, each with its fix."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(f"- {p}" for p in problems))


class BrokerError(BertqError):
    """The message broker (Redis) could not be started or reached."""


class AttemptSuperseded(BertqError):
    """This attempt no longer owns its job (lease lost, job cancelled): it must stop writing."""


class Preempted(BertqError):
    """The worker is shutting down: the attempt saved a checkpoint and the job goes back to the queue."""


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """` (did you mean 'minilm'?)` for the closest of `choices` to a mistyped `name` (case aside), else ''."""
    match = closest(name, choices)
    return f" (did you mean {match!r}?)" if match else ""


def closest(name: str, choices: list[str] | tuple[str, ...], cutoff: float = 0.6) -> str | None:
    """The choice a mistyped `name` most likely meant: one with two neighbouring letters swapped
    (sts2 → sst2) first, else the closest by difflib's ratio above `cutoff`; case aside."""
    import difflib

    lowered = {choice.lower(): choice for choice in choices}
    wanted = name.lower()
    swapped = [choice for choice in lowered if _one_swap(wanted, choice)]
    close = swapped or difflib.get_close_matches(wanted, list(lowered), n=1, cutoff=cutoff)
    return lowered[close[0]] if close else None


def _one_swap(a: str, b: str) -> bool:
    differ = [i for i, (x, y) in enumerate(zip(a, b)) if x != y] if len(a) == len(b) else []
    return (
        len(differ) == 2 and differ[1] == differ[0] + 1 and (a[differ[0]], a[differ[1]]) == (b[differ[1]], b[differ[0]])
    )
