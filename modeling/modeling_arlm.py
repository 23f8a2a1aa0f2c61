"""The autoregressive baseline (ARLM): a causal rotary transformer that generates with transformers' `generate`."""

import torch
from torch import nn
from transformers import GenerationMixin
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils.deprecation import deprecate_kwarg

from .backbone import XLMModel, XLMPreTrainedModel
from .configuration_arlm import ARLMConfig


class ARLMForCausalLM(XLMPreTrainedModel, GenerationMixin):
    """Causal LM head over the shared backbone.

    Generation is transformers' own (greedy, sampling, top-k/top-p, beam search, KV cache through `Cache`).
    The only addition is the prompt layout the model was trained with: by default a seq2seq ARLM reads
    `prompt [BOS] target [EOS]`, so `generate` appends `[BOS]` to plain tokenized prompts
    (`config.prompt_layout = "seq2seq"`); an LM-pretrained ARLM reads `[BOS] text` (`"lm"`).
    """

    config_class = ARLMConfig
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: ARLMConfig):
        super().__init__(config)
        self.model = XLMModel(config, is_causal=True, initialize=False)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        shift_labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast | tuple:
        r"""
        cache (`Cache`, *optional*):
            Keys and values of earlier tokens, updated in place; `past_key_values` is its deprecated name.
        labels (`torch.LongTensor` of shape `(batch, length)`, *optional*):
            Unshifted targets as in every transformers causal LM (`labels[i]` is predicted at position `i - 1`);
            `-100` marks positions without loss (prompt, padding).
        shift_labels (`torch.LongTensor` of shape `(batch, length)`, *optional*):
            Targets already shifted (`shift_labels[i]` is predicted at position `i`), as transformers' causal-LM
            loss accepts them (e.g. from context parallelism); used instead of `labels`.
        num_items_in_batch (`int`, *optional*):
            Number of target tokens in the whole (accumulated, all-device) batch; when given the loss is the sum
            over this batch divided by it, so gradient accumulation gives the gradients of one big batch.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        use_cache = use_cache if use_cache is not None else (self.config.use_cache and not self.training)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)

        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            cache=cache if use_cache else None,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        hidden_states = outputs.last_hidden_state
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:, :]
        logits = self.lm_head(hidden_states)

        loss = None
        if labels is not None or shift_labels is not None:
            loss_sum, count = arlm_loss(logits, labels, shift_labels=shift_labels)
            loss = loss_sum / (num_items_in_batch if num_items_in_batch is not None else count.clamp(min=1))

        output = CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=cache if use_cache else None,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()

    def generate(
        self, inputs: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, **kwargs
    ):
        """transformers' `generate`, after laying out the prompts as the model was trained on.

        A prompt row that lacks the layout token gets it (`[BOS]` after the prompt, or before it for
        `config.prompt_layout = "lm"`); a row that already has it is left alone, so a sequence being
        continued (from a returned `cache`, as assisted decoding's draft, or re-tokenized output) never gets a second
        one. `inputs_embeds` and caller-supplied `position_ids` get the same layout as `input_ids`. The layout token
        is not counted by the caller's `max_length` (it grows by the tokens added), and a caller's `max_length` wins
        over a `max_new_tokens` saved in the generation config (lm-eval asks for lengths this way).
        """
        input_ids = kwargs.pop("input_ids", inputs)
        inputs_embeds = kwargs.get("inputs_embeds")
        self._check_generate_arguments(input_ids, attention_mask, inputs_embeds, kwargs)
        if input_ids is None and inputs_embeds is None:
            return super().generate(None, attention_mask=attention_mask, **kwargs)
        reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
        if attention_mask is None:
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        if input_ids is not None:
            source = layout_source(input_ids, attention_mask, self.config)
        else:  # embeddings alone: a row holding the embedding of [BOS] is laid out
            source = layout_source(
                None, attention_mask, self.config, has_layout=self._rows_embed_bos(inputs_embeds)
            )
        added = source.shape[1] - reference.shape[1]
        if added:
            self._check_cache_keeps_its_columns(source, kwargs.get("cache", kwargs.get("past_key_values")))
            input_ids, attention_mask, kwargs = self._apply_layout(source, input_ids, attention_mask, kwargs)
        if "max_length" in kwargs and kwargs.get("max_new_tokens") is None:
            kwargs["max_new_tokens"] = None  # the caller's total length, not a saved number of new tokens
            kwargs["max_length"] = min(kwargs["max_length"] + added, self.config.max_position_embeddings)
        self._check_length(source.shape[1], kwargs)
        return super().generate(input_ids, attention_mask=attention_mask, **kwargs)

    def _check_generate_arguments(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        kwargs: dict,
    ) -> None:
        """One clear ValueError for inputs and options that transformers' `generate` would fail on deep inside (a
        ZeroDivisionError for `num_beams=0`, an IndexError for 1-D ids) or accept without effect (`top_p=2`)."""
        if input_ids is not None:
            if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
                shape = (
                    tuple(input_ids.shape)
                    if isinstance(input_ids, torch.Tensor)
                    else type(input_ids).__name__
                )
                raise ValueError(
                    f"input_ids must be a 2-D tensor (batch, length), got {shape}; for one prompt pass "
                    "input_ids[None] (or tokenize with return_tensors='pt')."
                )
            if input_ids.is_floating_point() or input_ids.is_complex():
                raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}.")
        reference = input_ids if input_ids is not None else inputs_embeds
        if attention_mask is not None and reference is not None:
            if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != reference.shape[:2]:
                shape = (
                    tuple(attention_mask.shape)
                    if isinstance(attention_mask, torch.Tensor)
                    else attention_mask
                )
                raise ValueError(
                    f"attention_mask must have the shape of the prompts {tuple(reference.shape[:2])}, got {shape}."
                )
        base = kwargs.get("generation_config") or self.generation_config

        def value(name: str):
            return kwargs[name] if kwargs.get(name) is not None else getattr(base, name, None)

        def is_int(number) -> bool:
            return isinstance(number, int) and not isinstance(number, bool)

        def is_number(number) -> bool:
            return isinstance(number, (int, float)) and not isinstance(number, bool)

        checks = {
            "max_new_tokens": (lambda v: is_int(v) and v >= 0, "an integer >= 0"),
            "min_new_tokens": (lambda v: is_int(v) and v >= 0, "an integer >= 0"),
            "max_length": (lambda v: is_int(v) and v > 0, "a positive integer"),
            "num_beams": (lambda v: is_int(v) and v >= 1, "a positive integer"),
            "num_return_sequences": (lambda v: is_int(v) and v >= 1, "a positive integer"),
            "top_k": (lambda v: is_int(v) and v >= 0, "an integer >= 0"),
            "top_p": (lambda v: is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
            # 0 is how greedy callers (lm-eval) spell "no temperature"; sampling needs a positive one
            "temperature": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
            "do_sample": (lambda v: isinstance(v, bool), "True or False"),
        }
        for name, (valid, expected) in checks.items():
            given = value(name)
            if given is not None and not valid(given):
                raise ValueError(f"{name} must be {expected}, got {given!r}.")
        if value("do_sample") and value("temperature") == 0:
            raise ValueError(
                "temperature=0 cannot be combined with do_sample=True: sampling needs a temperature > 0."
            )

    def lay_out_prompts(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The left-padded prompts as `generate` lays them out (for callers that count the positions they take)."""
        return add_bos_to_prompts(input_ids, attention_mask, self.config)

    def _rows_embed_bos(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """Per row: whether one of its positions is exactly the embedding of `[BOS]`."""
        bos = self.config.bos_token_id
        if bos is None:
            return torch.zeros(inputs_embeds.shape[0], dtype=torch.bool, device=inputs_embeds.device)
        bos_embedding = self.get_input_embeddings().weight[bos].to(inputs_embeds.dtype)
        return inputs_embeds.eq(bos_embedding).all(-1).any(-1)

    def _apply_layout(
        self, source: torch.Tensor, input_ids: torch.Tensor | None, attention_mask: torch.Tensor, kwargs: dict
    ) -> tuple[torch.Tensor | None, torch.Tensor, dict]:
        """Rebuilds every per-column input (ids, mask, embeddings, positions) from `layout_source`'s `source`."""
        kwargs = dict(kwargs)
        inserted, padding = source.eq(LAYOUT_TOKEN), source.eq(PADDING)
        columns = source.clamp(min=0)
        config = self.config
        pad = config.pad_token_id if config.pad_token_id is not None else config.bos_token_id
        new_mask = (~padding).to(attention_mask.dtype)
        if input_ids is not None:
            input_ids = input_ids.gather(1, columns)
            input_ids = input_ids.masked_fill(padding, pad).masked_fill(inserted, config.bos_token_id)
        if (embeds := kwargs.get("inputs_embeds")) is not None:
            embeds = embeds.gather(1, columns[..., None].expand(-1, -1, embeds.shape[-1]))
            table = self.get_input_embeddings().weight.to(embeds.dtype)
            embeds = torch.where(inserted[..., None], table[config.bos_token_id], embeds)
            kwargs["inputs_embeds"] = torch.where(padding[..., None], table[pad], embeds)
        if (position_ids := kwargs.get("position_ids")) is not None:
            if config.prompt_layout != "seq2seq":
                raise ValueError(
                    "With position_ids, give prompts that already start with [BOS] (prompt_layout='lm'): "
                    "generate cannot tell which positions the added token should shift."
                )
            # the token after a prompt takes the position after the prompt's last one (0 after an empty prompt)
            previous = torch.cat([source[:, :1], source[:, :-1]], dim=1)
            after_last = position_ids.gather(1, previous.clamp(min=0)) + 1
            after_last = after_last.masked_fill(previous.lt(0), 0)
            positions = torch.where(inserted, after_last, position_ids.gather(1, columns))
            kwargs["position_ids"] = positions.masked_fill(padding, 0)
        return input_ids, new_mask, kwargs

    @staticmethod
    def _check_cache_keeps_its_columns(source: torch.Tensor, cache: Cache | None) -> None:
        past_length = cache.get_seq_length() if cache is not None else 0
        if past_length and not bool(
            source[:, :past_length].eq(torch.arange(past_length, device=source.device)).all()
        ):
            raise ValueError(
                "Some prompts lack [BOS] and others have it, so adding it would move tokens the cache already holds. "
                "When continuing from a cache, pass the returned sequences (they are laid out already)."
            )

    def _check_length(self, prompt_length: int, kwargs: dict) -> None:
        """One clear error before generating past the positions the model has (instead of failing mid-way)."""
        new_tokens = kwargs.get("max_new_tokens")
        if new_tokens is None and "max_new_tokens" not in kwargs and "max_length" not in kwargs:
            generation_config = kwargs.get("generation_config", self.generation_config)
            new_tokens = getattr(generation_config, "max_new_tokens", None)
        max_length = self.config.max_position_embeddings
        if new_tokens is not None and prompt_length + new_tokens > max_length:
            raise ValueError(
                f"The prompt takes {prompt_length} positions (with [BOS]) and max_new_tokens={new_tokens}, "
                f"more than the model's max_position_embeddings={max_length}. Shorten the prompt or lower "
                "max_new_tokens (for the pipeline's handle_long_generation='hole', use the checkpoint's own "
                "text-generation pipeline: pipeline('text-generation', model=folder_or_id, trust_remote_code=True))."
            )


def arlm_loss(
    logits: torch.Tensor, labels: torch.Tensor | None, shift_labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ARLM loss: summed next-token cross-entropy over the targets (`labels[:, 1:] != -100`), and how many
    targets there are. `forward` divides the sum by `num_items_in_batch` (or by the count); `ARLMTrainer` calls
    `forward`, so training and `model(labels=...)` compute the same loss.

    With `shift_labels` (targets already aligned with `logits`) every position counts and `labels` is ignored.
    """
    if shift_labels is None:
        shift_logits = logits[:, :-1, :].float()
        shift_labels = labels[:, 1:].to(logits.device)
    else:
        shift_logits = logits.float()
        shift_labels = shift_labels.to(logits.device)
    loss_sum = nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )
    return loss_sum, shift_labels.ne(-100).sum()


# Entries of `layout_source`'s map that are not columns of the given prompt.
LAYOUT_TOKEN, PADDING = -1, -2


def layout_source(
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor,
    config: ARLMConfig,
    has_layout: torch.Tensor | None = None,
) -> torch.Tensor:
    """Where each column of the laid-out, left-padded prompts comes from: `(batch, new_width)` holding a column of
    the given prompts, `LAYOUT_TOKEN` for an added `[BOS]` or `PADDING`.

    A row is laid out already when `[BOS]` is among its real tokens (`"seq2seq"`: a prompt that ends with it,
    or a sequence being continued) or is its first real token (`"lm"`); `has_layout` overrides this
    per row. Other rows get `[BOS]`. Without additions the map is the identity.
    """
    batch_size, width = attention_mask.shape
    identity = torch.arange(width, device=attention_mask.device).expand(batch_size, width)
    bos, layout = config.bos_token_id, getattr(config, "prompt_layout", "seq2seq")
    if bos is None or layout == "none":
        return identity
    real = attention_mask.bool()
    # a row without real tokens is an empty prompt of a batch (all padding), not a right-padded one
    if width > 0 and not bool((real[:, -1] | ~real.any(-1)).all()):
        raise ValueError(
            "ARLM generation needs left-padded prompts (the last column is padding in some row). "
            "Set `tokenizer.padding_side = 'left'` before tokenizing."
        )
    if has_layout is None:
        is_bos = input_ids.eq(bos) & real
        if layout == "seq2seq":
            has_layout = is_bos.any(-1)
        else:  # the first real token of each row
            first_real = real.long().argmax(-1, keepdim=True)
            has_layout = is_bos.gather(1, first_real).squeeze(1)
    if bool(has_layout.all()):
        return identity

    new_width = width + 1
    source = torch.full((batch_size, new_width), PADDING, dtype=torch.long, device=attention_mask.device)
    for row in range(batch_size):
        row_source = identity[row][real[row]].tolist()
        if not bool(has_layout[row]):
            row_source = row_source + [LAYOUT_TOKEN] if layout == "seq2seq" else [LAYOUT_TOKEN] + row_source
        if row_source:
            source[row, new_width - len(row_source) :] = torch.tensor(row_source, device=source.device)
    return source


def add_bos_to_prompts(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, config: ARLMConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompts laid out as `generate` lays them out (see `layout_source`); prompts must be left-padded."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    source = layout_source(input_ids, attention_mask, config)
    if source.shape[1] == input_ids.shape[1]:
        return input_ids, attention_mask
    pad = config.pad_token_id if config.pad_token_id is not None else config.bos_token_id
    new_ids = input_ids.gather(1, source.clamp(min=0))
    new_ids = new_ids.masked_fill(source.eq(PADDING), pad).masked_fill(
        source.eq(LAYOUT_TOKEN), config.bos_token_id
    )
    return new_ids, source.ne(PADDING).to(attention_mask.dtype)


__all__ = ["ARLMForCausalLM", "arlm_loss"]
