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
    """` (did you mean 'minilm'?)` for the closest of `choices` to a mistyped `name`, else ''."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
