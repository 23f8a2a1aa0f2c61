"""Tiny exported checkpoints (random weights) of every family, for the demo and handler tests."""

import torch

from xlm_hf.export import export_model
from xlm_hf.families import get_family
from xlm_hf.tokenization import build_number_tokenizer

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
STAR_PROMPT = "3 7 7 12 3 15 15 9 9 4 3 1 1 2 2 8 3 4"


def export_tiny(family: str, folder, widget_examples=None, **config):
    """A random tiny model of `family` exported to `folder` as a star_easy checkpoint; returns the model."""
    tokenizer = build_number_tokenizer(20)
    torch.manual_seed(0)
    model = get_family(family).build_model(tokenizer, **{**TINY, "max_position_embeddings": 48, **config})
    with torch.no_grad():  # a non-degenerate model: zero-initialised heads would make every choice a tie
        for param in model.parameters():
            param.add_(torch.randn(param.shape) * 0.5)
    experiment = {"family": family, "data": {"task": "star_easy"}}
    export_model(model, tokenizer, folder, family, experiment=experiment, widget_examples=widget_examples)
    return model.eval(), tokenizer
