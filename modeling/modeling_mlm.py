"""The masked language model (MLM): a bidirectional rotary transformer that predicts clean tokens at `[MASK]`s.

It is xlm-core's "absorbing diffusion without time": trained on i.i.d. masking at a random rate, it generates by
iteratively unmasking (`generation_mlm.py`) and serves transformers' fill-mask pipeline as it is.
"""

import torch
from torch import nn
from transformers.modeling_outputs import MaskedLMOutput

from .backbone import XLMModel, XLMPreTrainedModel
from .configuration_mlm import MLMConfig
from .generation_mlm import MLMGenerationConfig, MLMGenerationMixin


class MLMForMaskedLM(XLMPreTrainedModel, MLMGenerationMixin):
    """Masked-LM head over the shared bidirectional backbone.

    `forward` returns logits at every position ([`MaskedLMOutput`]); with `labels` (clean ids where the loss
    counts, -100 elsewhere) it also returns the cross-entropy. `generate` fills `[MASK]`s; see
    [`MaskedDenoisingGenerationMixin.generate`].
    """

    config_class = MLMConfig
    generation_config_class = MLMGenerationConfig
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: MLMConfig):
        super().__init__(config)
        self.model = XLMModel(config, is_causal=False, initialize=False)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> MaskedLMOutput | tuple:
        r"""
        position_ids (`torch.LongTensor` of shape `(batch, length)`, *optional*):
            Defaults to positions counted over real tokens. Positions that restart within a row pack several
            sequences into it (as `DataCollatorWithFlattening` does); attention stays within each.
        labels (`torch.LongTensor` of shape `(batch, length)`, *optional*):
            Clean token ids at the positions that count (the masked ones), `-100` elsewhere. Not shifted.
        num_items_in_batch (`int`, *optional*):
            Number of counted positions in the whole (accumulated, all-device) batch; the loss is then the sum over
            this batch divided by it.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss_sum, count = mlm_loss(logits, labels)
            loss = loss_sum / (num_items_in_batch if num_items_in_batch is not None else count.clamp(min=1))
        output = MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if return_dict else output.to_tuple()


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The MLM loss: summed cross-entropy at the positions whose label is not -100 (the masked ones), and how many
    there are. `forward` divides the sum by `num_items_in_batch` (or by the count); `MLMTrainer` calls `forward`.
    No 1/t weight: the MLM has no time."""
    labels = labels.to(logits.device)
    loss_sum = nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return loss_sum, labels.ne(-100).sum()


__all__ = ["MLMForMaskedLM", "mlm_loss"]
