"""A tiny text corpus in the local `jsonl` format and the overrides that make any `text_pydoc_<family>` recipe
train on it in seconds; shared by the text tests."""

import json
from pathlib import Path

SENTENCE = "The quick brown fox jumps over the lazy dog."
DOCUMENTS = [SENTENCE, "Return the sum of two numbers.", "Read a file and yield its lines one by one."] * 20

TINY_TEXT_OVERRIDES = [
    "data.tokenizer=bpe:300",
    "data.block_size=16",
    "data.max_eval_samples=8",
    "model.hidden_size=32",
    "model.num_hidden_layers=1",
    "model.num_attention_heads=2",
    "model.intermediate_size=64",
    "training.per_device_train_batch_size=8",
    "training.per_device_eval_batch_size=8",
    "training.warmup_steps=0",
    "training.logging_steps=1",
    "training.eval_steps=4",
    "training.max_steps=4",
    "training.disable_tqdm=true",
    "generation.max_new_tokens=12",
]


def write_corpus(folder: Path) -> Path:
    """`train.jsonl` (60 documents) and `validation.jsonl` (the first 6) in `folder`, which is returned."""
    (folder / "train.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCUMENTS))
    (folder / "validation.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCUMENTS[:6]))
    return folder
