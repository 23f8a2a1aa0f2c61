"""What every family's collators share: padding helpers and where their random draws come from.

Randomness: batch k of a run draws its noise (masks, times, deletions) from a generator of its own, seeded from the
run's seed and k. A batch's noise is then a pure function of its position in training, whoever else draws random
numbers and in whichever order batches are collated: accelerate collates one batch ahead, Trainer collates the first
batches after a resume before it restores its random state, DataLoader workers collate in other processes. This is
what makes a resumed run draw exactly the noise of an uninterrupted one, and an evaluation's noise the same at
every step. `XLMTrainer` sets the position (`set_batch_noise`); a collator used on its own with a `seed` numbers its
batches from 0, and one without a seed draws from torch's global generator.
"""

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import get_worker_info


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


def trim_padding_columns(batch: dict[str, torch.Tensor], attention_mask_key: str = "attention_mask") -> dict:
    """Drops the leading and trailing columns that are padding in every row, from every `(batch, length)` tensor.

    Fixed-width layouts (a prompt left-padded to `input_block_size`, a target right-padded to `block_size`) leave
    columns that no row uses; attention never reads them and they carry no loss, so dropping them gives the same
    loss for less work. Positions are counted over real tokens (`positions_from_padding_mask`), so they do not
    change. The column count is read on the host here, in the collator, not in the model's forward.
    """
    used = batch[attention_mask_key].bool().any(dim=0).nonzero()
    if len(used) == 0:
        return batch
    start, stop = int(used[0]), int(used[-1]) + 1
    width = batch[attention_mask_key].shape[1]
    if (start, stop) == (0, width):
        return batch
    return {
        key: value[:, start:stop]
        if torch.is_tensor(value) and value.dim() == 2 and value.shape[1] == width
        else value
        for key, value in batch.items()
    }


def require_token_id(tokenizer, name: str) -> int:
    """The id of a special token the family needs, or one clear error naming it."""
    token_id = getattr(tokenizer, f"{name}_id", None)
    if token_id is None:
        raise ValueError(
            f"The tokenizer has no {name} but this collator needs one: add XLM's special tokens with "
            "`xlm_hf.tokenization.add_xlm_special_tokens(tokenizer)`."
        )
    return token_id


def batch_seed(seed: int, batch_index: int) -> int:
    """A 63-bit seed for batch `batch_index` of a run seeded with `seed` (neighbouring batches get unrelated
    streams, unlike `seed + batch_index`)."""
    digest = hashlib.sha256(f"{seed}/{batch_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass
class BatchNoise:
    """The position of a collator in its run: the next batch it collates is number `first_batch`, then every
    `stride`-th one (each of `stride` processes collates every `stride`-th batch of the run).

    DataLoader workers each get a copy of the collator and take the batches round robin, so worker w of n collates
    batches w, w + n, ... of those that follow `first_batch`.
    """

    seed: int
    first_batch: int = 0
    stride: int = 1
    calls: int = field(default=0, repr=False)  # batches collated by this copy

    def next_generator(self) -> torch.Generator:
        worker = get_worker_info()
        offset, workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        index = self.first_batch + self.stride * (offset + self.calls * workers)
        self.calls += 1
        return torch.Generator().manual_seed(batch_seed(self.seed, index))


def set_batch_noise(collator, first_batch: int = 0, seed: int | None = None, stride: int = 1) -> bool:
    """Makes `collator`'s next batch number `first_batch` of a run seeded with the collator's own `seed`, or with
    `seed` when it has none. Returns False (and changes nothing) for a collator without a `seed` field, which
    draws no noise, or when no seed is known."""
    if not hasattr(collator, "seed"):
        return False
    run_seed = collator.seed if collator.seed is not None else seed
    if run_seed is None:
        return False
    collator._batch_noise = BatchNoise(run_seed, first_batch, stride)
    return True


def batch_generator(collator) -> torch.Generator | None:
    """The generator of `collator`'s next batch; None (torch's global generator) for a collator without a seed
    that no Trainer has placed."""
    noise = getattr(collator, "_batch_noise", None)
    if noise is None:
        if getattr(collator, "seed", None) is None:
            return None
        noise = collator._batch_noise = BatchNoise(collator.seed)
    return noise.next_generator()


TARGET_ALIGNMENTS = ("left", "right")


def check_target_alignment(target_alignment: str, loss_on_padding: bool = True) -> None:
    """One clear error for an unknown `target_alignment`, or a right-aligned slot whose padding is not learned."""
    if target_alignment not in TARGET_ALIGNMENTS:
        raise ValueError(
            f"target_alignment must be one of {TARGET_ALIGNMENTS}, got {target_alignment!r}: 'left' puts the "
            "answer at the start of its slot (padding after it), 'right' at the end (padding first)."
        )
    if target_alignment == "right" and not loss_on_padding:
        raise ValueError(
            "target_alignment='right' needs loss_on_padding=true: the padding before the answer is what tells where "
            "the answer starts, so the model must see and predict it."
        )


def pad_slots(
    sequences: list[list[int]], width: int, pad_id: int, target_alignment: str = "left"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Answers (`target [EOS]`) in slots of `width`, cut to `width` (keeping their start): at the start of the
    slot with padding after them (`left`), or at its end with padding first (`right`, so `[EOS]` is the slot's last
    position whatever the answer's length). Returns ids and a 0/1 mask of the answer's positions."""
    if target_alignment == "right":
        return pad_left([list(seq)[:width] for seq in sequences], width, pad_id)
    return pad_right(sequences, width, pad_id)


def left_align_slots(slots: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Moves each row's leading padding to its end: a right-aligned slot `[PAD PAD a b EOS]` read back in the
    left-aligned layout `[a b EOS PAD PAD]` (the references' layout). Padding inside a row stays where it is."""
    width = slots.shape[1]
    leading = slots.eq(pad_id).long().cumprod(dim=1).sum(dim=1, keepdim=True)
    source = torch.arange(width, device=slots.device)[None] + leading
    aligned = slots.gather(1, source.clamp(max=width - 1))
    return aligned.masked_fill(source >= width, pad_id)


def check_prompt_fits(examples: list[dict[str, Any]], width: int, extra: int, name: str) -> None:
    """One clear error for a prompt that, with the `extra` layout tokens around it, is wider than `name`."""
    for example in examples:
        if len(example["prompt_ids"]) + extra > width:
            raise ValueError(
                f"A prompt of {len(example['prompt_ids'])} tokens (+{extra} special) does not fit {name}={width}; "
                f"raise data.{name}."
            )


__all__ = [
    "TARGET_ALIGNMENTS",
    "check_prompt_fits",
    "check_target_alignment",
    "left_align_slots",
    "pad_slots",
    "pad_left",
    "pad_right",
    "require_token_id",
    "BatchNoise",
    "batch_seed",
    "batch_generator",
    "set_batch_noise",
]
