"""Padding helpers shared by every family's collators (the only collator code that is truly the same)."""

import torch


def pad_left(sequences: list[list[int]], width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pads (and left-truncates, keeping the end) each sequence to `width`; returns ids and a 0/1 mask."""
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        seq = list(seq)[-width:] if width > 0 else []
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return ids, mask


def pad_right(sequences: list[list[int]], width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pads (and right-truncates) each sequence to `width`; returns ids and a 0/1 mask."""
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        seq = list(seq)[:width]
        if seq:
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
    return ids, mask


def require_token_id(tokenizer, name: str) -> int:
    """The id of a special token the family needs, or one clear error naming it."""
    token_id = getattr(tokenizer, f"{name}_id", None)
    if token_id is None:
        raise ValueError(
            f"The tokenizer has no {name} but this collator needs one: add XLM's special tokens with "
            "`xlm_hf.tokenization.add_xlm_special_tokens(tokenizer)`."
        )
    return token_id


__all__ = ["pad_left", "pad_right", "require_token_id"]
