"""int8 (dynamic quantisation of the Linear layers) without warnings from bertq's own call, with a
named backend and a clear error for an unknown one."""

from __future__ import annotations

import warnings

import pytest

from bertq.errors import BertqError


def test_int8_quantises_quietly_and_stays_close_to_fp32(tiny_classifier, monkeypatch):
    import torch
    from transformers import AutoModelForSequenceClassification

    from bertq.worker.inference import prepare_model

    inputs = {"input_ids": torch.tensor([[2, 10, 11, 12, 3]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    reference = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()(**inputs).logits
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning raised while bertq quantises fails the test
        model = prepare_model(
            AutoModelForSequenceClassification.from_pretrained(tiny_classifier), precision="int8", device="cpu"
        )
    assert not any(type(m) is torch.nn.Linear for m in model.modules())  # every Linear was replaced
    with torch.inference_mode():
        assert torch.allclose(model(**inputs).logits, reference, atol=0.05)
    monkeypatch.setenv("BERTQ_INT8_BACKEND", "tensorrt")
    with pytest.raises(BertqError, match="choose torch or torchao"):
        prepare_model(
            AutoModelForSequenceClassification.from_pretrained(tiny_classifier), precision="int8", device="cpu"
        )
