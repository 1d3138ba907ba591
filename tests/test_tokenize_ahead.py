"""Tokenising beside the model: a thread tokenises the next chunk while the model runs this one; the
results are the ones tokenising everything first gives, in order, and a tokenizer error surfaces."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("task", ["classify", "embed"])
def test_tokenizing_ahead_gives_the_same_results_in_order(tiny_classifier, monkeypatch, task):
    import threading

    from bertq.worker import predict
    from bertq.worker.predict import load_predictor

    monkeypatch.setattr(predict, "TOKENIZE_CHUNK", 7)  # 50 texts: 8 chunks, the last one short
    texts = [f"the movie number {i} was {'good ' * (i % 5)}fun" for i in range(50)]
    inline = load_predictor(str(tiny_classifier), task, device="cpu", precision="fp32", tokenize_ahead=False)
    ahead = load_predictor(str(tiny_classifier), task, device="cpu", precision="fp32", tokenize_ahead=True)
    threads = set()
    original = ahead._tokenize

    def tokenize(batch):  # type: ignore[no-untyped-def]
        threads.add(threading.current_thread().name)
        return original(batch)

    ahead._tokenize = tokenize  # type: ignore[method-assign]
    counted: list[int] = []
    assert ahead.predict(texts, on_batch=counted.append) == inline.predict(texts)
    assert threads == {"bertq-tokenize"} and sum(counted) == 50
    assert ahead.tokens == inline.tokens

    def broken(batch):  # type: ignore[no-untyped-def]
        raise ValueError("a text the tokenizer cannot take")

    ahead._tokenize = broken  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="cannot take"):
        ahead.predict(texts)
