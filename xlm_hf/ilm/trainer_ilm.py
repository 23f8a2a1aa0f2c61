"""ILM loss and prediction (spec §1.3 c, d)."""

from typing import Any

import torch

from ..modeling.generation_utils import generated_tokens
from ..trainer import XLMTrainer


class ILMTrainer(XLMTrainer):
    """The ILM loss (`ilm_loss`, computed by the model's `forward`), normalised over rows.

    Per row b: `CE_b` = cross-entropy of one softmax over every (position, token) pair (padding and `[CLS]`
    excluded, prompt and `[BOS]` included) against the deleted tokens' counts / N_b (0 when nothing was
    deleted), plus λ · the stopping head's cross-entropy (label 1[N_b > 0], optional class weights `[w, 1-w]`);
    λ and w are `model.config.stopping_loss_weight` / `stopping_class_weight`. The loss returned is
    `Σ_b (CE_b + λ·stop_b) / num_items_in_batch`, where Trainer counts `num_items_in_batch` from the collators'
    `labels` (one item per row, never -100) over the whole accumulated, all-device batch: the mean over rows of
    one big batch, exactly, under gradient accumulation and DDP (`scale_loss_for_devices` multiplies by the number
    of processes, as Trainer's own `compute_loss` does). Without a count (evaluation) it is this batch's row mean.

    The token loss never builds the `(batch, length, vocab)` target: it is `logsumexp` over the allowed logits
    minus the mean of the N_b target logits gathered by index (see `ilm_loss`).
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            cls_position=inputs.get("cls_position"),
            target_positions=inputs["target_positions"],
            target_tokens=inputs["target_tokens"],
            num_items_in_batch=num_items_in_batch,
        )
        loss = self.scale_loss_for_devices(outputs.loss, num_items_in_batch)
        if return_outputs:
            outputs["loss"] = loss
            outputs["insertion_loss"] = outputs.insertion_loss.detach()
            outputs["stopping_loss"] = outputs.stopping_loss.detach()
            return loss, outputs
        return loss

    @torch.no_grad()
    def predict_targets(self, model, batch: dict[str, Any]) -> torch.Tensor:
        """Generates for a prediction batch and lays the target part out like `batch["target_ids"]` (right-padded
        with `[PAD]` to `block_size`; anything past `block_size` is cut).

        Seq2seq prompts: the target part is the generated tokens (`new_token_mask`, all after `[BOS]`).
        Infilling: the whole text after the first `batch["target_start"]` tokens (`[CLS] [BOS]`), kept and
        inserted tokens alike, which decoding never moves: infilling rows take insertions only in their gaps."""
        target_ids = batch["target_ids"]
        block_size = target_ids.shape[1]
        pad = model.config.pad_token_id
        options = {**self.generation_kwargs, "return_dict_in_generate": True}
        for name in ("output_history", "return_history"):  # the new-token mask is enough
            options.pop(name, None)
        if "target_start" not in batch:  # seq2seq prompts: the target slot is what generation adds
            options["max_new_tokens"] = block_size
        output = model.generate(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **options
        )
        if "target_start" not in batch:
            return generated_tokens(output, block_size, pad)
        return generated_part(output.sequences, batch["target_start"], pad, block_size)


def generated_part(
    sequences: torch.Tensor, target_start: torch.Tensor, pad_id: int, block_size: int
) -> torch.Tensor:
    """The tokens after the first `target_start[b]` real tokens of each left-padded row of `sequences`,
    right-padded with `pad_id` to `block_size`."""
    real = sequences.ne(pad_id)
    num_target = real.sum(dim=-1) - target_start.to(sequences.device).long()
    width = sequences.shape[1]
    out = torch.full((len(sequences), block_size), pad_id, dtype=torch.long, device=sequences.device)
    for row in range(len(sequences)):
        count = int(num_target[row])
        if count > 0:
            tokens = sequences[row, width - count :][:block_size]
            out[row, : len(tokens)] = tokens
    return out


__all__ = ["ILMTrainer", "generated_part"]
