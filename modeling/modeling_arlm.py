"""The autoregressive baseline (ARLM): a causal rotary transformer that generates with transformers' `generate`."""

import torch
from torch import nn
from transformers import GenerationMixin
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from .backbone import XLMPreTrainedModel, XLMTransformer
from .configuration_arlm import ARLMConfig


class ARLMForCausalLM(XLMPreTrainedModel, GenerationMixin):
    """Causal LM head over the shared backbone.

    Generation is transformers' own (greedy, sampling, top-k/top-p, beam search, KV cache through `Cache`).
    The only addition is the prompt layout the model was trained with: by default a seq2seq ARLM reads
    `prompt [BOS] target [EOS]`, so `generate` appends `[BOS]` to plain tokenized prompts
    (`config.bos_position = "after_prompt"`); an LM-pretrained ARLM reads `[BOS] text` (`"before_prompt"`).
    """

    config_class = ARLMConfig
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: ARLMConfig):
        super().__init__(config)
        self.model = XLMTransformer(config, is_causal=True)
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
        cache: Cache | None = None,
        past_key_values: Cache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch, length)`, *optional*):
            Unshifted targets as in every transformers causal LM (`labels[i]` is predicted at position `i - 1`);
            `-100` marks positions without loss (prompt, padding).
        num_items_in_batch (`int`, *optional*):
            Number of target tokens in the whole (accumulated, all-device) batch; when given the loss is the sum
            over this batch divided by it, so gradient accumulation gives the gradients of one big batch.
        """
        if input_ids is None:
            raise ValueError("ARLMForCausalLM needs input_ids.")
        cache = cache if cache is not None else past_key_values
        use_cache = use_cache if use_cache is not None else (self.config.use_cache and not self.training)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)

        hidden_states, all_hidden_states, all_attentions = self.model(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache if use_cache else None,
            output_hidden_states=bool(output_hidden_states),
            output_attentions=bool(output_attentions),
        )
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:, :]
        logits = self.lm_head(hidden_states)

        loss = None
        if labels is not None:
            loss = causal_lm_loss(logits, labels, num_items_in_batch)

        output = CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=cache if use_cache else None,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )
        return output if return_dict is not False else output.to_tuple()

    def generate(self, inputs: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, **kwargs):
        """transformers' `generate`, after laying out plain tokenized prompts as the model was trained on."""
        input_ids = kwargs.pop("input_ids", inputs)
        if input_ids is not None:
            input_ids, attention_mask = add_bos_to_prompts(input_ids, attention_mask, self.config)
            max_length = self.config.max_position_embeddings
            new_tokens = kwargs.get("max_new_tokens")
            if new_tokens is not None and input_ids.shape[1] + new_tokens > max_length:
                raise ValueError(
                    f"The prompt takes {input_ids.shape[1]} positions (with [BOS]) and max_new_tokens={new_tokens}, "
                    f"more than the model's max_position_embeddings={max_length}. Shorten the prompt or lower "
                    "max_new_tokens."
                )
        return super().generate(input_ids, attention_mask=attention_mask, **kwargs)


def causal_lm_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy over the targets (`labels[:, 1:] != -100`) and how many there are."""
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:].to(logits.device)
    loss_sum = nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return loss_sum, shift_labels.ne(-100).sum()


def causal_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Next-token cross-entropy; mean over target tokens, or sum / `num_items_in_batch` when that is given."""
    loss_sum, count = causal_lm_loss_sum(logits, labels)
    return loss_sum / (num_items_in_batch if num_items_in_batch is not None else count.clamp(min=1))


def add_bos_to_prompts(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, config: ARLMConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adds `[BOS]` where the model expects it, to rows that lack it; prompts must be left-padded."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    bos = config.bos_token_id
    position = getattr(config, "bos_position", "after_prompt")
    if bos is None or position == "none":
        return input_ids, attention_mask
    if input_ids.shape[1] > 0 and not bool(attention_mask[:, -1].all()):
        raise ValueError(
            "ARLM generation needs left-padded prompts (the last column is padding in some row). "
            "Set `tokenizer.padding_side = 'left'` before tokenizing."
        )
    if position == "after_prompt":
        has_bos = input_ids[:, -1].eq(bos) if input_ids.shape[1] > 0 else torch.zeros(len(input_ids), dtype=torch.bool)
    else:  # before_prompt: the first real token of each row
        first_real = attention_mask.long().argmax(dim=-1)
        has_bos = input_ids.gather(1, first_real[:, None]).squeeze(1).eq(bos) & attention_mask.any(-1).bool()
    if bool(has_bos.all()):
        return input_ids, attention_mask

    batch_size, width = input_ids.shape
    pad = config.pad_token_id if config.pad_token_id is not None else bos
    new_ids = torch.full((batch_size, width + 1), pad, dtype=input_ids.dtype, device=input_ids.device)
    new_mask = torch.zeros((batch_size, width + 1), dtype=attention_mask.dtype, device=attention_mask.device)
    for row in range(batch_size):
        real = input_ids[row][attention_mask[row].bool()]
        if not bool(has_bos[row]):
            real = torch.cat([real, real.new_tensor([bos])]) if position == "after_prompt" else torch.cat(
                [real.new_tensor([bos]), real]
            )
        new_ids[row, width + 1 - len(real) :] = real
        new_mask[row, width + 1 - len(real) :] = 1
    return new_ids, new_mask


__all__ = ["ARLMForCausalLM"]
