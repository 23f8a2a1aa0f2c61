"""The masked diffusion language model (MDLM, arXiv 2406.07524) over the shared backbone.

A bidirectional rotary transformer, by default modulated by the total noise sigma(t) through DiT-style adaLN, with
a zero-initialised output layer. It predicts clean tokens at `[MASK]`s; the loss (`mdlm_loss`, computed by `forward`
when labels are given, which is what `xlm_hf.mdlm.MDLMTrainer` trains on) weights each masked token by
sigma'(t) / (exp(sigma(t)) - 1), and `generate` runs the ancestral sampler (`generation_mdlm.py`). The noise
schedule is the configuration's (`MDLMConfig.get_noise_schedule`).
"""

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import MaskedLMOutput

from .backbone import XLMModel, XLMPreTrainedModel, packed_sequence_ids
from .configuration_mdlm import MDLMConfig
from .generation_mdlm import MDLMGenerationConfig, MDLMGenerationMixin


class MDLMForMaskedDiffusionLM(XLMPreTrainedModel, MDLMGenerationMixin):
    """MDLM denoiser: `(input_ids, attention_mask, noise_level=sigma(t)) -> logits` at every position.

    When `noise_level` is omitted on a time-conditioned model it is estimated per row from the fraction of real
    tokens that are `[MASK]` (the time at which the schedule masks that fraction), so the fill-mask pipeline works.
    The class name deliberately avoids `ForCausalLM` (Trainer would count `num_items_in_batch` over shifted labels).
    """

    config_class = MDLMConfig
    generation_config_class = MDLMGenerationConfig
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: MDLMConfig):
        super().__init__(config)
        self.model = XLMModel(config, is_causal=False, initialize=False)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        # DiT/MDLM start from uniform predictions: a zero output layer (not when it is the embedding matrix).
        if (
            self.config.zero_init_output
            and not self.config.tie_word_embeddings
            and module is getattr(self, "lm_head", None)
        ):
            init.zeros_(module.weight)

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
        noise_level: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        noise_rate: torch.Tensor | None = None,
        **kwargs,
    ) -> MaskedLMOutput | tuple:
        r"""
        position_ids (`torch.LongTensor` of shape `(batch, length)`, *optional*):
            Defaults to positions counted over real tokens. Positions that restart within a row pack several
            sequences into it (as `DataCollatorWithFlattening` does); attention stays within each.
        noise_level (`torch.Tensor` of shape `(batch,)` or `(batch, length)`, *optional*):
            Total noise sigma(t) of each row, or of each token (packed sequences with their own t); not t. When
            omitted it is estimated from the masked fraction of each (packed) sequence; needs `input_ids` then.
        labels (`torch.LongTensor` of shape `(batch, length)`, *optional*):
            Clean ids at the positions that count, -100 elsewhere. The loss is the MDLM objective, [`mdlm_loss`]:
            the cross-entropy at `[MASK]` inputs weighted by sigma'(t) / (exp(sigma(t)) - 1), summed and divided by
            `num_items_in_batch`, or by the number of labels (so labels at visible positions only count in the
            denominator: that is how the collators' `loss_normalization` works). The training loss.
        num_items_in_batch (`int`, *optional*):
            Counted positions in the whole (accumulated, all-device) batch; the loss is then sum / this number.
        noise_rate (`torch.Tensor`, shaped like `noise_level`, *optional*):
            sigma'(t), for the loss weight; the collators give it. Defaults to the schedule's rate at the time whose
            total noise is `noise_level`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if labels is not None and input_ids is None:
            raise ValueError(
                "The loss counts only positions whose input is [MASK]: pass input_ids with labels."
            )
        # the loss weights by sigma(t) even when the blocks are not conditioned on it
        if noise_level is None and (self.config.time_conditioning or labels is not None):
            if input_ids is None:
                raise ValueError(
                    "With inputs_embeds, pass noise_level: it is estimated from the [MASK]s among input_ids."
                )
            noise_level = self.estimate_noise_level(input_ids, attention_mask, position_ids)
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            noise_level=noise_level if self.config.time_conditioning else None,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss_sum, count = mdlm_loss(
                logits, labels, input_ids, noise_level, self.config, noise_rate=noise_rate
            )
            loss = loss_sum / (num_items_in_batch if num_items_in_batch is not None else count.clamp(min=1))
        output = MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if return_dict else output.to_tuple()

    def estimate_noise_level(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """sigma(t) of the time at which the schedule masks the fraction of `[MASK]` among real tokens: one value
        per row `(batch,)`, or, when `position_ids` are given, one per token `(batch, length)` from the fraction in
        its own packed sequence."""
        real = (
            attention_mask.bool()
            if attention_mask is not None
            else torch.ones_like(input_ids, dtype=torch.bool)
        )
        masked = input_ids.eq(self.config.mask_token_id) & real
        if position_ids is None:
            fraction = masked.sum(-1).float() / real.sum(-1).clamp(min=1).float()
        else:
            # count per packed sequence (ids 0..length), then give each token its sequence's fraction
            sequence_ids = packed_sequence_ids(position_ids.expand_as(input_ids), real)
            counts = torch.zeros(input_ids.shape[0], input_ids.shape[1] + 1, device=input_ids.device)
            masked_counts = counts.scatter_add(1, sequence_ids, masked.float())
            real_counts = counts.scatter_add(1, sequence_ids, real.float())
            fraction = (masked_counts / real_counts.clamp(min=1)).gather(1, sequence_ids)
        schedule = self.noise_schedule
        return schedule.sigma(schedule.t_from_mask_probability(fraction).clamp(0.0, 1.0))


def mdlm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    input_ids: torch.Tensor,
    noise_level: torch.Tensor,
    config: MDLMConfig,
    noise_rate: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The MDLM loss (the diffusion NELBO): the summed cross-entropy of the positions whose input is `[MASK]`,
    each weighted by sigma'(t) / (exp(sigma(t)) - 1) (= 1/t for the log-linear schedule; at most
    `config.loss_weight_cap` when that is set), and the number of labels (positions whose label is not -100).

    The count is what the collators' `loss_normalization` decides: labels at every maskable position (`"elbo"`,
    the NELBO per token) or only at the masked ones (`"masked_mean"`, xlm-core's mean over masked tokens). A label
    at a visible position counts in the count, never in the sum. `forward` divides the sum by `num_items_in_batch`
    (or by the count); `MDLMTrainer` calls `forward`.

    Args:
        noise_level: sigma(t), shaped `(batch,)` or `(batch, length)` (packed sequences with their own t).
        config: the model's configuration: its `mask_token_id` and its noise schedule.
        noise_rate: sigma'(t), shaped like `noise_level`; defaults to the schedule's rate at the time whose total
            noise is `noise_level`.
    """
    labels = labels.to(logits.device)
    sigma = noise_level.to(logits.device).float()
    if noise_rate is None:
        schedule = config.get_noise_schedule()
        noise_rate = schedule.rate(schedule.t_from_sigma(sigma))
    weight = noise_rate.to(logits.device).float() / torch.expm1(sigma)  # sigma'(t) / (e^sigma(t) - 1)
    if config.loss_weight_cap is not None:
        weight = weight.clamp(max=config.loss_weight_cap)
    if weight.dim() == 1:
        weight = weight[:, None]
    masked_labels = labels.masked_fill(input_ids.to(logits.device).ne(config.mask_token_id), -100)
    token_loss = nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        masked_labels.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view_as(labels)
    # a row without [MASK] has sigma = 0 and an infinite weight: it must add 0, not 0 * inf
    weighted = torch.where(masked_labels.ne(-100), token_loss * weight, torch.zeros_like(token_loss))
    return weighted.sum(), labels.ne(-100).sum()


__all__ = ["MDLMForMaskedDiffusionLM", "mdlm_loss"]
