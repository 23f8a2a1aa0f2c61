"""MLM loss and prediction: cross-entropy at masked positions, and iterative unmasking for scoring."""

from typing import Any

import torch

from ..collator_utils import left_align_slots
from ..modeling.generation_utils import generated_tokens
from ..trainer import XLMTrainer


def masked_predict_targets(
    model, batch: dict[str, Any], generation_kwargs: dict[str, Any]
) -> tuple[torch.Tensor, Any]:
    """Generation for a prediction batch of a masked family, laid out like `batch["target_ids"]`; returns the
    predictions and the full generation output (steps and model calls per row).

    - seq2seq batches (`prompt [BOS]` left-padded): `block_size` masks after the prompt; the generated tokens
      (the output's `new_token_mask`, the last `block_size` columns) are the prediction. A model trained with the
      answer right-aligned (`batch["target_alignment"] == "right"`) generates `[PAD]... answer [EOS]`: its leading
      padding is moved behind the answer, into the references' layout (the text is the same, padding is special);
    - infilling batches (`infill=True`): the prompt's masks are filled, nothing is added; the canvas is the
      prediction (prompt and target are aligned column by column);
    - unconditional batches (`unconditional=True`): `block_size` masks and no prompt.
    """
    target_width = batch["target_ids"].shape[1]
    kwargs = {key: value for key, value in generation_kwargs.items() if key != "max_length"}
    kwargs["return_dict_in_generate"] = True
    kwargs["output_history"] = False
    if batch.get("unconditional"):
        rows = batch["target_ids"].shape[0]
        output = model.generate(
            input_ids=None, **{**kwargs, "num_return_sequences": rows, "max_new_tokens": target_width}
        )
    elif batch.get("infill"):
        output = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            **{**kwargs, "max_new_tokens": 0},
        )
    else:
        output = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            **{**kwargs, "max_new_tokens": target_width},
        )
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    if not batch.get("infill"):  # the generated tokens are the prediction
        predictions = generated_tokens(output, target_width, pad)
        if batch.get("target_alignment") == "right":
            predictions = left_align_slots(predictions, pad)
        return predictions, output
    sequences = output.sequences  # infilling: the whole canvas, aligned column by column with the targets
    if sequences.shape[1] < target_width:  # infilling rows that were all left padding: pad back to the layout
        padded = sequences.new_full((sequences.shape[0], target_width), pad)
        padded[:, target_width - sequences.shape[1] :] = sequences
        sequences = padded
    return sequences[:, -target_width:], output


class MLMTrainer(XLMTrainer):
    """Cross-entropy at masked positions (spec §1.2 c; `mlm_loss`, computed by the model's `forward`): the sum over
    the batch's masked tokens divided by `num_items_in_batch` (all masked tokens of the accumulated, all-device
    batch), so gradient accumulation and DDP give the gradients of one big batch. No 1/t weight (the MLM has no
    time)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            position_ids=inputs.get("position_ids"),  # packed text rows (xlm_hf.tasks.text)
            labels=inputs["labels"],
            num_items_in_batch=num_items_in_batch,
        )
        loss = self.scale_loss_for_devices(outputs.loss, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def predict_targets(self, model, batch: dict[str, Any]) -> torch.Tensor:
        """Fills `block_size` masks after `prompt [BOS]` (or a batch's infilling masks); see
        `masked_predict_targets`."""
        predictions, output = masked_predict_targets(model, batch, self.generation_kwargs)
        self.last_model_calls = int(output.model_calls.sum())  # read by scripts/bench.py
        return predictions


__all__ = ["MLMTrainer", "masked_predict_targets"]
