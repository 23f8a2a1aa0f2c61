"""FlexMDM (arXiv 2509.01025): masked diffusion that also inserts, over the shared backbone.

Time runs from t = 0 (nothing) to t = 1 (the data). At time t each token of the data is missing, present as
`[MASK]`, or clean (`schedules_flexmdm.py`). The network sees the partial sequence x_t (and, by default, t through
adaLN) and predicts, at every position, the clean token (used where x_t has `[MASK]`) and how many tokens are still
missing in the gap right before it. The loss (`flexmdm_loss`) noises clean sequences itself (`flexmdm_noise`) and
sums a rate-weighted cross-entropy at the masks and a rate-weighted gap-length term; `generate` starts from the
prompt alone and inserts and unmasks from t = 0 upward (`generation_flexmdm.py`).
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput

from .backbone import XLMModel, XLMPreTrainedModel
from .configuration_flexmdm import FlexMDMConfig
from .generation_flexmdm import FlexMDMGenerationConfig, FlexMDMGenerationMixin

# Training times are stratified over the batch and kept below 1, where the schedules' rates are infinite.
MAX_TRAINING_TIME = 1 - 1e-6
# Floor of both sides of the Poisson Bregman divergence (log 0 is not defined).
GAP_FLOOR = 1e-6


@dataclass
class FlexMDMOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor`, *optional*): The FlexMDM loss, when `labels` were given.
    logits (`torch.FloatTensor` of shape `(batch, length, vocab)`): Clean-token logits at every position (of the
        noised sequence when `labels` were given).
    gap_lengths (`torch.FloatTensor` of shape `(batch, length)`): Expected number of tokens missing right before
        each position (the mean of the length distribution for `gap_head="distribution"`).
    gap_logits (`torch.FloatTensor` of shape `(batch, length, max_gap_length)`, *optional*): Logits over the gap's
        length, for `gap_head="distribution"`.
    noised (`dict`, *optional*): The noised batch the loss was computed on ([`flexmdm_noise`]).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    gap_lengths: torch.FloatTensor | None = None
    gap_logits: torch.FloatTensor | None = None
    noised: dict | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class FlexMDMGapHead(nn.Module):
    """Per-position gap length: an MLP on the final (adaLN-modulated) hidden state; a non-negative number
    (`softplus`) or logits over `0 .. max_gap_length - 1`."""

    def __init__(self, config: FlexMDMConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]
        out = 1 if config.gap_head == "expectation" else config.max_gap_length
        self.out_proj = nn.Linear(config.hidden_size, out)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.act(self.dense(hidden_states)))


class FlexMDMForDiffusionLM(XLMPreTrainedModel, FlexMDMGenerationMixin):
    """FlexMDM: `(input_ids, attention_mask, t) -> (token logits, gap lengths)` at every position.

    `forward(labels=...)` is the training call: `input_ids` is then the *clean* sequence and `labels` marks the
    tokens to generate (their ids; -100 on the prompt, `[BOS]`, `[EOS]` and padding, which are always present).
    It noises the batch ([`flexmdm_noise`], from the collator's `t`, `insertion_noise`, `unmasking_noise` when
    given), runs the network on the noised sequence and returns [`flexmdm_loss`]. The class name avoids
    `ForCausalLM` (Trainer would count `num_items_in_batch` over shifted labels).
    """

    config_class = FlexMDMConfig
    generation_config_class = FlexMDMGenerationConfig
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: FlexMDMConfig):
        super().__init__(config)
        self.model = XLMModel(config, is_causal=False, initialize=False)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.gap_head = FlexMDMGapHead(config)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
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

    def estimate_time(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """A rough t per row for calls without one (fill-mask style use): 1 - the fraction of `[MASK]` among the
        real tokens. `generate` and the loss always pass the true t."""
        real = (
            attention_mask.bool()
            if attention_mask is not None
            else torch.ones_like(input_ids, dtype=torch.bool)
        )
        masked = (input_ids.eq(self.config.mask_token_id) & real).sum(-1).float()
        return 1 - masked / real.sum(-1).clamp(min=1).float()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        insertion_noise: torch.Tensor | None = None,
        unmasking_noise: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> FlexMDMOutput | tuple:
        r"""
        t (`torch.Tensor` of shape `(batch,)`, *optional*):
            Time of each row, 0 (empty) to 1 (data). Without labels and omitted: estimated from the masked fraction
            ([`estimate_time`]). With labels and omitted: drawn stratified over the batch.
        labels (`torch.LongTensor` of shape `(batch, length)`, *optional*):
            The training call: `input_ids` is the clean sequence, `labels` holds its ids where a token is to be
            generated and -100 elsewhere (those real tokens stay fixed). The loss is [`flexmdm_loss`] on the noised
            batch, summed and divided by `num_items_in_batch`, or by the number of labels.
        insertion_noise, unmasking_noise (`torch.Tensor` of shape `(batch, length)`, *optional*):
            Uniforms in [0, 1) from which the tokens' insertion and unmasking times are drawn (the collators give
            them, so that a batch's noise is a function of its seed and position); drawn here when omitted.
        num_items_in_batch (`int`, *optional*):
            Number of labels in the whole (accumulated, all-device) batch; the loss is then sum / this number.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        noised = None
        if labels is not None:
            if input_ids is None:
                raise ValueError("The FlexMDM loss noises the clean input_ids: pass input_ids with labels.")
            noised = flexmdm_noise(
                input_ids, attention_mask, labels, self.config, t, insertion_noise, unmasking_noise
            )
            input_ids, attention_mask, t = noised["input_ids"], noised["attention_mask"], noised["t"]
            position_ids = None  # the noised rows are compacted: positions come from their mask
        if t is None and self.config.time_conditioning:
            if input_ids is None:
                raise ValueError(
                    "With inputs_embeds, pass t: it is estimated from the [MASK]s among input_ids."
                )
            t = self.estimate_time(input_ids, attention_mask)
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            noise_level=t if self.config.time_conditioning else None,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        hidden = outputs.last_hidden_state
        logits = self.lm_head(hidden)
        gap = self.gap_head(hidden)
        if self.config.gap_head == "expectation":
            gap_logits, gap_lengths = None, nn.functional.softplus(gap.squeeze(-1).float())
        else:
            gap_logits = gap
            lengths = torch.arange(gap.shape[-1], device=gap.device, dtype=torch.float32)
            gap_lengths = (gap.float().softmax(-1) * lengths).sum(-1)
        loss = None
        if noised is not None:
            loss_sum, count = flexmdm_loss(logits, gap_lengths, gap_logits, noised, self.config)
            loss = loss_sum / (num_items_in_batch if num_items_in_batch is not None else count.clamp(min=1))
        output = FlexMDMOutput(
            loss=loss,
            logits=logits,
            gap_lengths=gap_lengths,
            gap_logits=gap_logits,
            noised=noised,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


def stratified_times(batch_size: int, uniform: torch.Tensor) -> torch.Tensor:
    """One time per row, stratified over the batch: row b gets `(b + u_b) / B`, scaled below 1."""
    rows = torch.arange(batch_size, device=uniform.device, dtype=torch.float32)
    return (rows + uniform.float()) * MAX_TRAINING_TIME / batch_size


def flexmdm_noise(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor,
    config: FlexMDMConfig,
    t: torch.Tensor | None = None,
    insertion_noise: torch.Tensor | None = None,
    unmasking_noise: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    r"""The FlexMDM forward process at time t, for clean rows `input_ids` `(batch, length)`.

    Tokens with a label (the ones to generate) get an insertion time `tau = alpha_ins^{-1}(u)` and an unmasking
    time `upsilon` from `alpha_unm` truncated to `[tau, 1]`; the other real tokens (prompt, `[BOS]`, `[EOS]`) are
    fixed: always present and clean. At time t a token is missing if `t < tau`, `[MASK]` if `tau <= t < upsilon`,
    clean otherwise. Missing tokens are removed and the survivors moved left in order (padding on the right).

    Returns a dict of `(batch, length)` tensors: `input_ids` (x_t), `attention_mask`, `clean` (the clean id of each
    survivor), `masked` (survivor is `[MASK]`), `gaps` (tokens missing right before each survivor), `gap_mask`
    (gaps where the model may insert: every survivor after the first `[BOS]`), and `t` `(batch,)`.
    """
    device = input_ids.device
    batch_size, length = input_ids.shape
    real = (
        attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
    )
    labels = labels.to(device)
    target = labels.ne(-100) & real
    fixed = real & ~target
    if t is None:
        t = stratified_times(batch_size, torch.rand(batch_size, device=device))
    t = t.to(device).float()
    if insertion_noise is None:
        insertion_noise = torch.rand(batch_size, length, device=device)
    if unmasking_noise is None:
        unmasking_noise = torch.rand(batch_size, length, device=device)
    insertion_time = config.get_insertion_schedule().sample(insertion_noise.to(device).float())
    unmasking_time = config.get_unmasking_schedule().sample_truncated(
        unmasking_noise.to(device).float(), insertion_time
    )
    present = fixed | (target & (t[:, None] >= insertion_time))
    masked = target & present & (t[:, None] < unmasking_time)

    # Survivors first, in order (a stable sort on "is missing"); `source` = original column of each survivor.
    source = torch.sort((~present).long(), dim=-1, stable=True).indices
    kept = present.gather(1, source)
    clean = input_ids.gather(1, source).masked_fill(~kept, config.pad_token_id)
    noisy = clean.masked_fill(masked.gather(1, source) & kept, config.mask_token_id)
    # Missing tokens right before survivor i = missing ones up to its column minus those up to the previous one's.
    missing_up_to = (target & ~present).long().cumsum(-1).gather(1, source)
    previous = nn.functional.pad(missing_up_to[:, :-1], (1, 0))
    gaps = (missing_up_to - previous).masked_fill(~kept, 0)
    is_bos = noisy.eq(config.bos_token_id) & kept
    after_bos = (is_bos.long().cumsum(-1) - is_bos.long()) > 0
    return {
        "input_ids": noisy,
        "attention_mask": kept.long(),
        "clean": clean,
        "masked": masked.gather(1, source) & kept,
        "gaps": gaps,
        "gap_mask": kept & after_bos,
        "t": t,
        "num_labels": target.sum(),
    }


def flexmdm_loss(
    logits: torch.Tensor,
    gap_lengths: torch.Tensor,
    gap_logits: torch.Tensor | None,
    noised: dict[str, torch.Tensor],
    config: FlexMDMConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The FlexMDM loss on a noised batch ([`flexmdm_noise`]), as a sum and the number of tokens to generate.

    Each term is weighted by the schedule's rate at t, capped at `config.loss_weight_cap` when set:

    - unmasking: `sum over [MASK]s of rate_unm(t) * CE(logits, clean token)`;
    - insertion, `gap_head="expectation"`: `sum over gaps of rate_ins(t) * (g_hat - g + g log(g / g_hat))`, the
      Poisson Bregman divergence between the predicted and the true number of missing tokens (both floored at 1e-6);
      `gap_head="distribution"`: `sum over gaps of rate_ins(t) * CE(gap logits, g)` (lengths beyond the last class
      count as the last class).

    The count is the number of labels (tokens to generate) in the batch: `forward` divides the sum by
    `num_items_in_batch` (or by the count), so the loss is per generated token and gradient accumulation is exact.
    """
    t = noised["t"].to(logits.device)
    unmasking_rate = config.get_unmasking_schedule().rate(t)[:, None]
    insertion_rate = config.get_insertion_schedule().rate(t)[:, None]
    # Bounded weights: the same minimiser (the model sees t), far lower variance near t = 1 (docs/quirks.md).
    if config.loss_weight_cap is not None:
        unmasking_rate = unmasking_rate.clamp(max=config.loss_weight_cap)
        insertion_rate = insertion_rate.clamp(max=config.loss_weight_cap)
    masked = noised["masked"]
    token_loss = nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        noised["clean"].masked_fill(~masked, -100).reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view_as(masked)
    unmasking = torch.where(masked, token_loss * unmasking_rate, torch.zeros_like(token_loss)).sum()

    gaps, gap_mask = noised["gaps"], noised["gap_mask"]
    if gap_logits is None:
        g = gaps.float().clamp(min=GAP_FLOOR)
        g_hat = gap_lengths.float().clamp(min=GAP_FLOOR)
        gap_loss = g_hat - g + g * (torch.log(g) - torch.log(g_hat))
    else:
        classes = gaps.clamp(max=gap_logits.shape[-1] - 1).masked_fill(~gap_mask, -100)
        gap_loss = nn.functional.cross_entropy(
            gap_logits.float().reshape(-1, gap_logits.shape[-1]),
            classes.reshape(-1),
            ignore_index=-100,
            reduction="none",
        ).view_as(gaps)
    insertion = torch.where(gap_mask, gap_loss * insertion_rate, torch.zeros_like(gap_loss)).sum()
    return unmasking + insertion, noised["num_labels"]


__all__ = ["FlexMDMForDiffusionLM", "FlexMDMOutput", "flexmdm_loss", "flexmdm_noise", "stratified_times"]
