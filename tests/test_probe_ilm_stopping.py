"""scripts/probe_ilm_stopping.py: the answers it builds and the probability it reads from the stopping head."""

import random

import pytest
import torch
from script_module import load_script
from torch import nn

from xlm_hf.ilm import ILMConfig, ILMModelForInsertionLM


@pytest.fixture(scope="module")
def probe_script():
    return load_script("probe_ilm_stopping.py")


def test_answer_variants_change_the_reference_as_named(probe_script):
    target = [7, 3, 3, 9, 9, 5]
    for seed in range(20):
        variants = probe_script.answer_variants(target, random.Random(seed))
        assert variants["complete"] == target
        missing = variants["one missing"]
        assert len(missing) == len(target) - 1
        assert any(target[:i] + target[i + 1 :] == missing for i in range(len(target)))
        assert variants["extra last"] == [*target, 5]
        extra = variants["extra inner"]
        # one inner token written twice in a row: removing that copy gives the reference back
        repeated = [
            i
            for i in range(1, len(extra) - 1)
            if extra[i] == extra[i + 1] and extra[:i] + extra[i + 1 :] == target
        ]
        assert repeated and 1 <= repeated[0] < len(target) - 1
    with pytest.raises(ValueError, match="at least 3 tokens"):
        probe_script.answer_variants([1, 2], random.Random(0))


def test_complete_probability_is_the_stopping_heads_complete_class(probe_script):
    torch.manual_seed(0)
    config = ILMConfig(
        vocab_size=27, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=40
    )
    model = ILMModelForInsertionLM(config).eval()
    classifier = nn.Linear(config.hidden_size, 2)
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.bias.copy_(torch.tensor([torch.logit(torch.tensor(0.8)).item(), 0.0]))
    model.stopping_head.classifier = classifier
    prompts, targets = [[10, 11, 12], [13, 14]], [[20, 21, 21, 22], [23, 24, 24, 25, 25]]
    probabilities = probe_script.probe(model, prompts, targets)
    assert set(probabilities) == set(probe_script.VARIANTS)
    for values in probabilities.values():
        assert values == pytest.approx([0.8, 0.8], abs=1e-6)
    summary = probe_script.summarize({"complete": [0.2, 0.4, 0.6, 0.9]})
    assert summary["complete"]["at_least_0.5"] == pytest.approx(0.5)
    assert summary["complete"]["at_least_0.3"] == pytest.approx(0.75)
