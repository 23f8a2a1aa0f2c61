"""FlexMDM loss and prediction: the model's `forward(labels=...)` noises and scores; `generate` predicts."""

from typing import Any

import torch

from ..trainer import XLMTrainer

NOISE_FIELDS = ("t", "insertion_noise", "unmasking_noise")


def flexmdm_predictions(output: Any, bos_id: int, pad_id: int, width: int) -> torch.Tensor:
    """Spec §1.5 f: the tokens after the first `[BOS]` of each generated row, padding removed, right-padded with
    `[PAD]` (or cut) to `width`."""
    sequences = output.sequences if hasattr(output, "sequences") else output
    predictions = torch.full((len(sequences), width), pad_id, dtype=torch.long, device=sequences.device)
    for row, sequence in enumerate(sequences):
        tokens = sequence[sequence.ne(pad_id)]
        bos = tokens.eq(bos_id).nonzero()
        tokens = tokens[int(bos[0]) + 1 :] if len(bos) else tokens
        tokens = tokens[:width]
        predictions[row, : len(tokens)] = tokens
    return predictions


class FlexMDMTrainer(XLMTrainer):
    """The FlexMDM loss (spec §1.5 b, d; `flexmdm_loss`, computed by the model's `forward` on the clean batch and
    the collator's noise): summed over the batch and divided by `num_items_in_batch` (the tokens to generate in the
    accumulated, all-device batch), so gradient accumulation and DDP give the gradients of one big batch."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            labels=inputs["labels"],
            num_items_in_batch=num_items_in_batch,
            **{name: inputs[name] for name in NOISE_FIELDS if name in inputs},
        )
        loss = self.scale_loss_for_devices(outputs.loss, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def predict_targets(self, model, batch: dict[str, Any]) -> torch.Tensor:
        """Generates for a prediction batch (prompts, infilling prompts or none) and returns what follows `[BOS]`,
        laid out like `batch["target_ids"]`."""
        width = batch["target_ids"].shape[1]
        kwargs = {key: value for key, value in self.generation_kwargs.items() if key != "max_length"}
        kwargs.update(return_dict_in_generate=True, output_history=False)
        if batch.get("unconditional"):
            kwargs.setdefault("max_new_tokens", width - 1)
            output = model.generate(
                input_ids=None, num_return_sequences=batch["target_ids"].shape[0], **kwargs
            )
        else:
            kwargs.setdefault("max_new_tokens", width - 1 if not batch.get("infill") else None)
            output = model.generate(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs
            )
        self.last_model_calls = int(output.model_calls.sum())  # read by scripts/bench.py
        config = model.config
        return flexmdm_predictions(output, config.bos_token_id, config.pad_token_id, width)


__all__ = ["FlexMDMTrainer", "flexmdm_predictions"]
