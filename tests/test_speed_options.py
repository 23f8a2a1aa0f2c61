"""Speed options that must not change what is learned: the ARLM collator's `trim_padding` drops the columns no row
uses and gives the same loss and gradients as the fixed-width batch."""

import torch

from xlm_hf.arlm.collator_arlm import ARLMCollatorForSeq2Seq
from xlm_hf.collator_utils import trim_padding_columns
from xlm_hf.families import get_family


def test_trim_padding_columns_drops_only_columns_every_row_pads():
    batch = {
        "input_ids": torch.tensor([[0, 0, 5, 6, 0], [0, 7, 8, 9, 0]]),
        "attention_mask": torch.tensor([[0, 0, 1, 1, 0], [0, 1, 1, 1, 0]]),
        "noise_level": torch.tensor([0.1, 0.2]),
    }
    trimmed = trim_padding_columns(batch)
    assert trimmed["input_ids"].tolist() == [[0, 5, 6], [7, 8, 9]]
    assert trimmed["attention_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert trimmed["noise_level"] is batch["noise_level"]  # not a (batch, length) tensor


def test_arlm_trimmed_batch_gives_the_same_loss_and_gradients(star_tokenizer):
    examples = [
        {"prompt_ids": [5, 6, 7], "target_ids": [8, 9]},
        {"prompt_ids": [5, 6, 7, 8], "target_ids": [10]},
    ]
    full = ARLMCollatorForSeq2Seq(star_tokenizer, input_block_size=8, block_size=6)(examples)
    trimmed = ARLMCollatorForSeq2Seq(star_tokenizer, input_block_size=8, block_size=6, trim_padding=True)(
        examples
    )
    assert full["input_ids"].shape[1] == 14 and trimmed["input_ids"].shape[1] == 8  # 4 + [BOS], 2 + [EOS]
    torch.manual_seed(0)
    model = get_family("arlm").build_model(
        star_tokenizer, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16
    )
    losses, grads = [], []
    for batch in (full, trimmed):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert abs(losses[0] - losses[1]) < 1e-6
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)
