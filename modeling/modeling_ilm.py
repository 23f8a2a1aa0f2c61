"""The Insertion LM (ILM, arXiv 2505.05755): a bidirectional rotary transformer that scores insertions.

Reading order: output dataclass -> stopping head -> the model -> the loss (shared by `forward` and the
training side's `ILMTrainer`, so there is one implementation of it).

Hub-side file: imports only torch, transformers and sibling files.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput
from transformers.utils.generic import is_tracing

from .backbone import XLMModel, XLMPreTrainedModel, packed_sequence_ids
from .configuration_ilm import ILMConfig
from .generation_ilm import ILMGenerationConfig, ILMGenerationMixin


@dataclass
class ILMOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*):
        Insertion + λ · stopping loss, returned when `target_positions`/`target_tokens` are given.
    logits (`torch.FloatTensor` of shape `(batch, length, vocab)`):
        `logits[b, i, v]` scores inserting token `v` into the gap right after position `i`.
    stopping_logits (`torch.FloatTensor` of shape `(batch, classes)`):
        Stopping head on the `[CLS]` hidden state; class 0 means "nothing left to insert".
    insertion_loss, stopping_loss (`torch.FloatTensor` of shape `(batch,)`, *optional*):
        The two parts of the loss per example (before normalisation and λ).
    hidden_states, attentions: as in every transformers model, when asked for.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    stopping_logits: torch.FloatTensor | None = None
    insertion_loss: torch.FloatTensor | None = None
    stopping_loss: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class ILMStoppingHead(nn.Module):
    """`h + dropout(MLP(LN(h)))` with MLP d -> 2d -> tanh -> d, then a linear classifier d -> C without bias."""

    def __init__(self, config: ILMConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.up_proj = nn.Linear(config.hidden_size, 2 * config.hidden_size, bias=True)
        self.act_fn = nn.Tanh()
        self.down_proj = nn.Linear(2 * config.hidden_size, config.hidden_size, bias=True)
        self.dropout = nn.Dropout(config.stopping_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_stopping_classes, bias=False)

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        hidden_state = hidden_state + self.dropout(
            self.down_proj(self.act_fn(self.up_proj(self.norm(hidden_state))))
        )
        return self.classifier(hidden_state)


class ILMModelForInsertionLM(XLMPreTrainedModel, ILMGenerationMixin):
    """Insertion LM: token head over every gap plus a stopping head on `[CLS]`.

    Input layout: `[CLS] prompt [BOS] generated…` (seq2seq) or `[CLS] [BOS] text…` (language modelling),
    padded on either side; positions come from the padding mask. `[CLS]` is the first real token of each row
    unless `cls_position` says otherwise. `generate` (from [`ILMGenerationMixin`]) builds this layout itself
    from plain tokenized prompts.

    For PEFT, the heads that LoRA does not adapt are listed in `peft_modules_to_save`
    (`LoraConfig(..., modules_to_save=ILMModelForInsertionLM.peft_modules_to_save)`).
    """

    config_class = ILMConfig
    generation_config_class = ILMGenerationConfig
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    peft_modules_to_save = ["lm_head", "right_neighbor_proj", "stopping_head"]

    def __init__(self, config: ILMConfig):
        super().__init__(config)
        self.model = XLMModel(config, is_causal=False, initialize=False)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.right_neighbor_proj = (
            nn.Linear(config.hidden_size, config.hidden_size, bias=False)
            if config.gap_head_right_neighbor
            else None
        )
        self.stopping_head = ILMStoppingHead(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cls_position: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        target_positions: torch.LongTensor | None = None,
        target_tokens: torch.LongTensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ILMOutput | tuple:
        r"""
        position_ids (`torch.LongTensor` of shape `(batch, length)`, *optional*):
            Defaults to positions counted over real tokens. Packed rows (positions that restart within a row) are
            refused: the stopping head reads one `[CLS]` per row.
        cls_position (`torch.LongTensor` of shape `(batch,)`, *optional*):
            Column of `[CLS]` in each row; defaults to the first real token (first 1 of `attention_mask`).
        labels (`torch.LongTensor` of shape `(batch,)`, *optional*):
            Number of deleted tokens per row, as the ILM collators emit it. It is one item per row (never
            -100), so transformers' Trainer counts `num_items_in_batch` = number of rows and the loss is the
            mean over rows of the whole (accumulated, all-device) batch. Not needed to compute the loss.
        target_positions, target_tokens (`torch.LongTensor` of shape `(batch, max_deleted)`, *optional*):
            One entry per deleted token: the column of the gap it belongs to and its id; -100 pads the rows.
            When given, `loss` is computed (see [`ilm_loss`]).
        num_items_in_batch (`int`, *optional*):
            Denominator of the loss (rows in the whole batch); defaults to this batch's rows.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        inputs = input_ids if input_ids is not None else inputs_embeds
        if inputs is None:
            raise ValueError("ILMModelForInsertionLM needs input_ids or inputs_embeds.")
        if attention_mask is None:
            attention_mask = torch.ones(inputs.shape[:2], dtype=torch.long, device=inputs.device)
        if position_ids is not None and not is_tracing(position_ids):
            check_not_packed(position_ids.expand(inputs.shape[0], -1), attention_mask)
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        hidden_states = outputs.last_hidden_state
        gap_states = hidden_states
        if self.right_neighbor_proj is not None:
            # The gap after i lies between i and i + 1. Real tokens are contiguous in a row (padding only on the
            # sides), so the right neighbour is the next column; the last real token's gap has none (zeros).
            right_neighbor = torch.zeros_like(hidden_states)
            right_neighbor[:, :-1] = hidden_states[:, 1:] * attention_mask[:, 1:, None].to(
                hidden_states.dtype
            )
            gap_states = hidden_states + self.right_neighbor_proj(right_neighbor)
        logits = self.lm_head(gap_states)
        if cls_position is None:
            cls_position = first_real_position(attention_mask)
        cls_position = cls_position.to(hidden_states.device).long().reshape(-1)
        rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
        stopping_logits = self.stopping_head(hidden_states[rows, cls_position])

        loss = insertion_loss = stopping_loss = None
        if target_positions is not None or target_tokens is not None:
            if target_positions is None or target_tokens is None:
                raise ValueError("Pass both target_positions and target_tokens to compute the ILM loss.")
            loss_sum, count, insertion_loss, stopping_loss = ilm_loss(
                logits,
                stopping_logits,
                attention_mask,
                cls_position,
                target_positions,
                target_tokens,
                stopping_head=self.config.stopping_head,
                stopping_loss_weight=self.config.stopping_loss_weight,
                stopping_class_weight=self.config.stopping_class_weight,
                return_row_losses=True,
            )
            if torch.is_tensor(num_items_in_batch):
                num_items_in_batch = num_items_in_batch.to(loss_sum.device)
            loss = loss_sum / (num_items_in_batch if num_items_in_batch is not None else count)

        output = ILMOutput(
            loss=loss,
            logits=logits,
            stopping_logits=stopping_logits,
            insertion_loss=insertion_loss,
            stopping_loss=stopping_loss,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


def check_not_packed(position_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
    """One clear error for packed rows: the stopping head and the loss read one `[CLS]` per row, so several
    sequences in a row would share (and mix) their stopping decision."""
    if bool((packed_sequence_ids(position_ids, attention_mask).amax(dim=-1) > 1).any()):
        raise ValueError(
            "The ILM does not take packed sequences (position_ids that restart within a row): its stopping head "
            "reads one [CLS] per row. Give one sequence per row, padded (e.g. DataCollatorWithPadding instead of "
            "DataCollatorWithFlattening)."
        )


def first_real_position(attention_mask: torch.Tensor) -> torch.Tensor:
    """Column of the first real token of each row (0 for an all-padding row)."""
    return attention_mask.long().argmax(dim=-1)


def ilm_loss(
    logits: torch.Tensor,
    stopping_logits: torch.Tensor,
    attention_mask: torch.Tensor,
    cls_position: torch.Tensor,
    target_positions: torch.Tensor,
    target_tokens: torch.Tensor,
    stopping_head: str = "binary",
    stopping_loss_weight: float = 1.0,
    stopping_class_weight: float | None = None,
    return_row_losses: bool = False,
) -> tuple[torch.Tensor, ...]:
    r"""The ILM loss: the sum over rows `Σ_b (CE_b + λ · stop_b)` and the number of rows (what Trainer counts in
    the collators' `labels`, one per row). `forward` divides the sum by `num_items_in_batch` (or by the count), so
    the loss is the mean over the rows of the whole batch; `ILMTrainer` calls `forward`.

    - `CE_b`: one softmax over every (position, token) pair of row b, padding and `[CLS]` excluded; the target
      puts mass `count(i, v) / N_b` on "insert v after i", where the counts come from the `N_b` entries of
      `target_positions`/`target_tokens` (-100 = no entry). Then `CE_b = logsumexp_{i,v} logits − mean_k
      logits[pos_k, tok_k]`, so no dense `(batch, length, vocab)` target is ever built; `CE_b = 0` when
      `N_b = 0`.
    - `stop_b`: cross-entropy of the stopping head; binary label `1[N_b > 0]` (1 = "continue"), optionally
      weighted `[w, 1 − w]` per example; or, for the length head, label `min(N_b, C − 1)`.

    Returns `(loss_sum, count)`, then, with `return_row_losses`, the two per-row parts `(CE_b)` and `(stop_b)`
    (`stop_b` with its class weight, before λ).
    """
    batch_size = logits.shape[0]
    logits = logits.float()
    excluded = ~attention_mask.bool()
    excluded = excluded.clone()
    excluded[torch.arange(batch_size, device=logits.device), cls_position] = True
    # logsumexp over the vocabulary, then over the allowed positions: no masked copy of the full logits.
    position_scores = torch.logsumexp(logits, dim=-1).masked_fill(excluded, float("-inf"))
    log_partition = torch.logsumexp(position_scores, dim=-1)  # (batch,)

    valid = target_tokens.ne(-100) & target_positions.ne(-100)
    num_deleted = valid.sum(dim=-1)  # N_b
    rows = torch.arange(batch_size, device=logits.device)[:, None].expand_as(target_tokens)
    target_logits = logits[rows, target_positions.clamp(min=0), target_tokens.clamp(min=0)]
    target_logits = torch.where(valid, target_logits, torch.zeros_like(target_logits))
    has_targets = num_deleted > 0
    mean_target_logit = target_logits.sum(dim=-1) / num_deleted.clamp(min=1)
    insertion_loss = torch.where(
        has_targets, log_partition - mean_target_logit, torch.zeros_like(log_partition)
    )

    stopping_logits = stopping_logits.float()
    if stopping_head == "binary":
        stop_labels = has_targets.long()
    else:
        stop_labels = num_deleted.clamp(max=stopping_logits.shape[-1] - 1)
    stopping_loss = nn.functional.cross_entropy(stopping_logits, stop_labels, reduction="none")
    if stopping_class_weight is not None:
        class_weights = stopping_logits.new_tensor([stopping_class_weight, 1.0 - stopping_class_weight])
        stopping_loss = stopping_loss * class_weights[stop_labels]

    loss_sum = (insertion_loss + stopping_loss_weight * stopping_loss).sum()
    count = torch.tensor(batch_size, device=logits.device)
    if return_row_losses:
        return loss_sum, count, insertion_loss, stopping_loss
    return loss_sum, count


__all__ = ["ILMModelForInsertionLM", "ILMOutput", "ILMStoppingHead", "ilm_loss"]
