"""Insertion decoding for the ILM: generation config -> output dataclass -> samplers -> input layout -> mixin.

One insertion per still-active row per step. A step runs the model on the current sequences, turns the token
logits into a score per gap (`logsumexp` over the vocabulary), samples a gap with the position sampler, then a
token for that gap with the token sampler, and inserts it (with `sample_jointly`, it draws the gap and the token
together from one distribution over every pair, as the original does without a position sampler). A row stops
when the stopping head says "complete" with probability >= `stopping_threshold`, or when it reaches `max_length` /
`max_new_tokens`.

Data layout. The original stores sequences out of order: each new token is appended at the end of the tensor
with an explicit position, and the positions of the later tokens are shifted by one. Here the token is inserted
in place (one `gather` per step that shifts the tail of the row right by one column). Both cost the same O(rows x
length) bookkeeping per step, which is negligible next to the model call that dominates every step, so we take
the in-place layout because it is exact in a stronger sense: the model sees exactly the tensor a fresh call on
the current text would see (positions from the padding mask, keys in reading order), results need no final
sort, and history indices are plain positions in the text. Speed comes instead from calling the model only on
the rows still active and only on the columns that hold a real token in one of them.

Hub-side file: imports only torch and transformers.
"""

from dataclasses import dataclass
from typing import Any

import torch
from transformers.generation import LogitsProcessorList
from transformers.utils import ModelOutput, logging

from .generation_utils import (
    NonAutoregressiveGenerationMixin,
    XLMGenerationConfig,
    build_logits_warpers,
    check_vocabulary,
    choose_tokens,
    pad_left,
)

logger = logging.get_logger(__name__)

PROMPT_LAYOUTS = ("seq2seq", "lm")


class ILMGenerationConfig(XLMGenerationConfig):
    r"""
    Parameters of [`ILMGenerationMixin.generate`]. Unset values (`None`) fall back to the model's config.

    Args:
        max_length (`int`, *optional*): Longest sequence, counting `[CLS]`, prompt, `[BOS]` and insertions
            (padding excluded). Defaults to the model's `max_position_embeddings`.
        max_new_tokens (`int`, *optional*): Most insertions per row.
        min_new_tokens (`int`): Insertions a row makes before the stopping head may stop it.
        num_steps (`int`, *optional*): Most decoding steps (one insertion per active row each); defaults to
            `max_length`, which lets every row reach `max_length`. (Formerly `max_steps`, still accepted.)
        stopping_threshold (`float`): A row stops when p("complete") >= this (0.9 as in the original).
        stopping_temperature (`float`): Temperature of the stopping head's softmax.
        do_sample, temperature, top_k, top_p: The *token* sampler (greedy when `do_sample=False`).
        position_do_sample, position_temperature, position_top_k, position_top_p: The *position* sampler over
            the gap scores `logsumexp_v logits[i, v]` (greedy when `position_do_sample=False`). The original's
            star-graph setting is greedy tokens with `position_do_sample=True, position_top_k=2`.
        sample_jointly (`bool`): Choose the gap and the token together, from one distribution over every
            (gap, token) pair, with the token sampler's settings (greedy: the single most likely insertion), as
            the original does when no position sampler is set. The position sampler is then unused, and setting
            `position_do_sample` with it is an error.
        suppress_tokens (`list[int]`, *optional*): Tokens never inserted; defaults to the model's `[MASK]`,
            `[EOS]`, `[PAD]`, `[CLS]` and `[BOS]`. (Formerly `suppress_token_ids`, still accepted.)
        prompt_layout (`str`): How a plain prompt is laid out: `"seq2seq"` = `[CLS] prompt [BOS]`, insertions
            only after `[BOS]` (a prompt -> answer model); `"lm"` = `[CLS] [BOS] prompt`, insertions in every gap
            after `[CLS]` (a model pretrained on text, which may grow the prompt anywhere). A prompt that contains
            `[MASK]` is infilled: `[CLS] [BOS] text`, insertions only where the masks were.
        num_return_sequences (`int`): Samples per prompt (rows of `[CLS] [BOS]` when there is no prompt).
        seed (`int`, *optional*): Seeds a `torch.Generator` for the samplers (a `generator` passed to
            `generate` wins).
        return_dict_in_generate (`bool`): Return an [`ILMGenerationOutput`] (default) or only `sequences`.
        output_history (`bool`): Also return which token went where at each step. (Formerly `return_history`,
            still accepted.)
        pad_token_id, bos_token_id, cls_token_id, mask_token_id, eos_token_id (`int`, *optional*): Special ids;
            default to the model's.
    """

    _defaults: dict[str, Any] = {
        "max_length": None,
        "max_new_tokens": None,
        "min_new_tokens": 0,
        "num_steps": None,
        "stopping_threshold": 0.9,
        "stopping_temperature": 1.0,
        "do_sample": False,
        "temperature": 1.0,
        "top_k": None,
        "top_p": None,
        "position_do_sample": False,
        "position_temperature": 1.0,
        "position_top_k": None,
        "position_top_p": None,
        "sample_jointly": False,
        "suppress_tokens": None,
        "prompt_layout": "seq2seq",
        "num_return_sequences": 1,
        "seed": None,
        "return_dict_in_generate": True,
        "output_history": False,
        "pad_token_id": None,
        "bos_token_id": None,
        "cls_token_id": None,
        "mask_token_id": None,
        "eos_token_id": None,
    }

    def validate(self, strict: bool = False, user_set_attributes: set[str] | None = None, **unused_kwargs):
        def positive_int(name: str, allow_zero: bool = False) -> None:
            value = getattr(self, name)
            if value is None:
                return
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if allow_zero else 1):
                raise ValueError(
                    f"`{name}` must be a {'non-negative' if allow_zero else 'positive'} integer, got {value!r}."
                )

        for name in (
            "max_length",
            "max_new_tokens",
            "num_steps",
            "num_return_sequences",
            "top_k",
            "position_top_k",
        ):
            positive_int(name)
        positive_int("min_new_tokens", allow_zero=True)
        positive_int("seed", allow_zero=True)

        def is_number(value) -> bool:  # not float(value): "abc" or None would fail without naming the field
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        if not (is_number(self.stopping_threshold) and 0.0 < self.stopping_threshold <= 1.0):
            raise ValueError(f"`stopping_threshold` must be in (0, 1], got {self.stopping_threshold!r}.")
        for name in ("stopping_temperature", "temperature", "position_temperature"):
            if not (is_number(getattr(self, name)) and getattr(self, name) > 0.0):
                raise ValueError(f"`{name}` must be a number > 0, got {getattr(self, name)!r}.")
        for name in ("top_p", "position_top_p"):
            value = getattr(self, name)
            if value is not None and not (is_number(value) and 0.0 < value <= 1.0):
                raise ValueError(f"`{name}` must be in (0, 1], got {value!r}.")
        for name in ("do_sample", "position_do_sample", "sample_jointly"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be True or False, got {getattr(self, name)!r}.")
        if self.sample_jointly and self.position_do_sample:
            raise ValueError(
                "`sample_jointly=True` draws the gap and the token from one distribution with the token sampler's "
                "settings; set `do_sample` (and temperature, top_k, top_p) instead of `position_do_sample`."
            )
        if self.prompt_layout not in PROMPT_LAYOUTS:
            raise ValueError(f"`prompt_layout` must be one of {PROMPT_LAYOUTS}, got {self.prompt_layout!r}.")
        if self.suppress_tokens is not None and not all(
            isinstance(t, int) and t >= 0 for t in self.suppress_tokens
        ):
            raise ValueError(f"`suppress_tokens` must be a list of token ids, got {self.suppress_tokens!r}.")
        if (
            self.min_new_tokens
            and self.max_new_tokens is not None
            and self.min_new_tokens > self.max_new_tokens
        ):
            raise ValueError(
                f"`min_new_tokens` ({self.min_new_tokens}) exceeds `max_new_tokens` ({self.max_new_tokens})."
            )


@dataclass
class ILMGenerationOutput(ModelOutput):
    r"""
    sequences (`torch.LongTensor` of shape `(batch, length)`):
        Final sequences in reading order, `[CLS]`, prompt, `[BOS]` and insertions included, left-padded with
        `[PAD]`. Decode with `tokenizer.batch_decode(sequences, skip_special_tokens=True)`.
    initial_sequences (`torch.LongTensor` of shape `(batch, initial_length)`, *optional*):
        The layout decoding started from (`[MASK]`s removed), left-padded; with `output_history=True`.
    history_positions, history_tokens (`torch.LongTensor` of shape `(batch, steps)`, *optional*):
        At step `s` row `b` inserted `history_tokens[b, s]` so that it became the token at index
        `history_positions[b, s]` of the row's unpadded sequence; -1 where the row inserted nothing.
        Replaying them on `initial_sequences` gives `sequences`. With `output_history=True`.
    new_token_mask (`torch.BoolTensor` of shape `(batch, length)`):
        The tokens the model inserted (as `sequences`, left-padded).
    num_steps (`int`, *optional*): Decoding steps run (model calls).
    """

    sequences: torch.LongTensor | None = None
    initial_sequences: torch.LongTensor | None = None
    history_positions: torch.LongTensor | None = None
    history_tokens: torch.LongTensor | None = None
    new_token_mask: torch.BoolTensor | None = None
    num_steps: int | None = None


def sample_from_scores(
    scores: torch.Tensor,
    do_sample: bool,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    input_ids: torch.LongTensor | None = None,
) -> torch.LongTensor:
    """Index per row of `scores` `(rows, choices)` (-inf = forbidden): argmax, or a sample after transformers'
    temperature, top-k and top-p warpers."""
    if top_k == 1:  # only the best choice survives: no draw (so the random stream is not advanced)
        do_sample = False
    warpers = build_logits_warpers(do_sample, temperature, top_k, top_p)
    if input_ids is None:
        input_ids = scores.new_empty((scores.shape[0], 0), dtype=torch.long)
    return choose_tokens(scores, input_ids, do_sample, warpers, generator)


@dataclass
class ILMInsertionState:
    """Working buffers of a decoding run, one row per sequence, in reading order.

    `input_ids`/`attention_mask`: tokens with padding anywhere (left padding from the prompt, right padding
    once a row has stopped growing); `allowed`: insertion allowed in the gap right after this token; `generated`:
    the token was inserted by decoding.
    """

    input_ids: torch.LongTensor
    attention_mask: torch.BoolTensor
    allowed: torch.BoolTensor
    generated: torch.BoolTensor

    def lengths(self) -> torch.LongTensor:
        return self.attention_mask.sum(dim=-1)

    def insert(
        self, rows: torch.LongTensor, anchors: torch.LongTensor, tokens: torch.LongTensor, pad_id: int
    ):
        """Inserts `tokens[k]` right after column `anchors[k]` of row `rows[k]`, shifting the rest right by one."""
        if rows.numel() == 0:
            return
        if bool(self.attention_mask[rows, -1].any()):  # keep one free column at the end
            self.input_ids = torch.nn.functional.pad(self.input_ids, (0, 1), value=pad_id)
            self.attention_mask = torch.nn.functional.pad(self.attention_mask, (0, 1), value=False)
            self.allowed = torch.nn.functional.pad(self.allowed, (0, 1), value=False)
            self.generated = torch.nn.functional.pad(self.generated, (0, 1), value=False)
        width = self.input_ids.shape[1]
        columns = torch.arange(width, device=rows.device)[None, :]
        source = torch.where(columns > anchors[:, None], columns - 1, columns)
        new_at = (anchors + 1)[:, None]
        for name, value in (
            ("input_ids", tokens),
            ("attention_mask", True),
            ("allowed", True),
            ("generated", True),
        ):
            buffer = getattr(self, name)
            shifted = buffer[rows].gather(1, source)
            fill = (
                torch.as_tensor(value, dtype=buffer.dtype, device=buffer.device)
                .expand(len(rows))
                .reshape(-1, 1)
            )
            shifted.scatter_(1, new_at, fill)
            buffer[rows] = shifted


def compact_left(state_ids: torch.Tensor, mask: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Moves the real tokens of every row to the right end (order kept) and drops all-padding columns."""
    order = torch.sort(mask.long(), dim=-1, stable=True).indices  # padding first, real tokens in order
    ids = state_ids.gather(1, order)
    ids = ids.masked_fill(~mask.gather(1, order), pad_id)
    width = int(mask.sum(dim=-1).max()) if mask.numel() else 0
    return ids[:, ids.shape[1] - width :]


class ILMGenerationMixin(NonAutoregressiveGenerationMixin):
    """Adds `generate` (insertion decoding) to [`ILMModelForInsertionLM`]. It does not inherit transformers'
    `GenerationMixin`: nothing autoregressive (caches, beams, logits warpers over one position) applies."""

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        generation_config: ILMGenerationConfig | None = None,
        insertion_mask: torch.Tensor | None = None,
        logits_processor: LogitsProcessorList | list | None = None,
        generator: torch.Generator | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> ILMGenerationOutput | torch.LongTensor:
        r"""
        Inserts tokens into the prompts until the stopping head says they are complete.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch, length)`, *optional*):
                What the checkpoint's tokenizer returns for plain prompts (any padding side, no special tokens);
                `generate` lays them out itself (see `prompt_layout`). `[MASK]` tokens mark the gaps of a text to
                infill. Rows that already start with `[CLS]` are taken as laid out (`[CLS] prompt [BOS] …`);
                insertions then go after their first `[BOS]`. `None`: unconditional generation from `[CLS] [BOS]`.
            attention_mask (`torch.Tensor` of shape `(batch, length)`, *optional*): 1 on real tokens.
            generation_config ([`ILMGenerationConfig`], *optional*): Defaults to `model.generation_config`.
            insertion_mask (`torch.Tensor` of shape `(batch, length)`, *optional*): For rows given already laid
                out (starting with `[CLS]`): 1 where insertion right after the token is allowed.
            logits_processor (`LogitsProcessorList`, *optional*): transformers logits processors applied to the
                token logits of the chosen gap before the token choice (greedy or sampled) and before the
                temperature / top-k / top-p warpers. Each is called as `processor(input_ids, scores)` with `scores`
                `(rows, vocab)` and `input_ids` `(rows, length)`, the current (padded) sequences of the rows.
            generator (`torch.Generator`, *optional*): Random source of the samplers.
            token_type_ids: Accepted (some tokenizers return it) and ignored: ILM uses no token types.
            kwargs: Overrides of `generation_config` fields (`max_new_tokens=8`, `do_sample=True`, ...).

        Returns:
            [`ILMGenerationOutput`] (or the `sequences` tensor with `return_dict_in_generate=False`).
        """
        config = self._prepare_generation_config(generation_config, kwargs)
        special = self._special_ids(config)
        device = self.device
        max_length = (
            config.max_length if config.max_length is not None else self.config.max_position_embeddings
        )
        if max_length > self.config.max_position_embeddings:
            raise ValueError(
                f"max_length={max_length} exceeds the model's max_position_embeddings="
                f"{self.config.max_position_embeddings}."
            )
        state = self._prepare_insertion_state(
            input_ids, attention_mask, insertion_mask, config, special, device
        )
        lengths = state.lengths()
        if bool((lengths >= max_length).any()):
            row = int((lengths >= max_length).nonzero()[0])
            raise ValueError(
                f"No room left to insert: row {row} already has {int(lengths[row])} tokens with [CLS] and [BOS], and "
                f"max_length={max_length}. Shorten the prompt or raise max_length."
            )
        generator = self._prepare_generator(config.seed, generator, device)
        processors = LogitsProcessorList(
            logits_processor or []
        )  # a copy: the caller's list is left as it was

        budget = max_length - lengths
        if config.max_new_tokens is not None:
            budget = budget.clamp(max=config.max_new_tokens)
        max_steps = config.num_steps if config.num_steps is not None else max_length
        suppress = self._suppressed_tokens(config, special, device)
        initial_ids = compact_left(state.input_ids, state.attention_mask, special["pad"])

        batch_size = state.input_ids.shape[0]
        inserted = torch.zeros(batch_size, dtype=torch.long, device=device)
        active = torch.ones(batch_size, dtype=torch.bool, device=device)
        history_positions, history_tokens = [], []
        num_steps = 0
        for _ in range(max_steps):
            active &= inserted < budget
            if not bool(active.any()):
                break
            num_steps += 1
            rows = active.nonzero().squeeze(1)
            stop, anchors, tokens = self._insertion_step(
                state, rows, config, suppress, inserted, generator, processors
            )
            active[rows[stop]] = False
            go = ~stop
            go_rows, go_anchors, go_tokens = rows[go], anchors[go], tokens[go]
            if config.output_history:
                step_positions = torch.full((batch_size,), -1, dtype=torch.long, device=device)
                step_tokens = torch.full((batch_size,), -1, dtype=torch.long, device=device)
                # index of the new token among the row's real tokens = real tokens up to the anchor, inclusive
                real_before = state.attention_mask[go_rows].long().cumsum(-1)
                step_positions[go_rows] = real_before.gather(1, go_anchors[:, None]).squeeze(1)
                step_tokens[go_rows] = go_tokens
                history_positions.append(step_positions)
                history_tokens.append(step_tokens)
            state.insert(go_rows, go_anchors, go_tokens, special["pad"])
            inserted[go_rows] += 1

        sequences = compact_left(state.input_ids, state.attention_mask, special["pad"])
        if not config.return_dict_in_generate:
            return sequences
        new_tokens = compact_left(state.generated, state.attention_mask, False)
        output = ILMGenerationOutput(sequences=sequences, new_token_mask=new_tokens, num_steps=num_steps)
        if config.output_history:
            empty = torch.empty((batch_size, 0), dtype=torch.long, device=device)
            output.initial_sequences = initial_ids
            output.history_positions = torch.stack(history_positions, dim=1) if history_positions else empty
            output.history_tokens = torch.stack(history_tokens, dim=1) if history_tokens else empty
        return output

    def _insertion_step(
        self,
        state: ILMInsertionState,
        rows: torch.LongTensor,
        config: ILMGenerationConfig,
        suppress: torch.Tensor,
        inserted: torch.LongTensor,
        generator: torch.Generator | None,
        logits_processor: LogitsProcessorList,
    ) -> tuple[torch.BoolTensor, torch.LongTensor, torch.LongTensor]:
        """One model call on the active `rows`: returns which of them stop, and for the others the anchor
        column (in `state` coordinates) and the token to insert after it."""
        mask = state.attention_mask[rows]
        used_columns = mask.any(dim=0).nonzero().squeeze(1)
        first, last = (
            int(used_columns[0]),
            int(used_columns[-1]) + 1,
        )  # skip columns that are padding everywhere
        mask = mask[:, first:last]
        input_ids = state.input_ids[rows, first:last]
        allowed = state.allowed[rows, first:last]
        cls_position = mask.long().argmax(dim=-1)  # [CLS] is the first real token of every row
        output = self(input_ids=input_ids, attention_mask=mask.long(), cls_position=cls_position)

        stop_probs = (output.stopping_logits.float() / config.stopping_temperature).softmax(dim=-1)[:, 0]
        stop = (stop_probs >= config.stopping_threshold) & (inserted[rows] >= config.min_new_tokens)

        logits = output.logits.float()
        logits[..., suppress] = float("-inf")
        if config.sample_jointly:
            anchors, tokens = self._joint_insertion(
                logits, input_ids, allowed, first, config, generator, logits_processor
            )
            return stop, anchors, tokens
        logits = logits.masked_fill(~allowed[..., None], float("-inf"))
        gap_scores = torch.logsumexp(logits, dim=-1)
        anchors = sample_from_scores(
            gap_scores,
            config.position_do_sample,
            config.position_temperature,
            config.position_top_k,
            config.position_top_p,
            generator,
        )
        token_scores = logits[torch.arange(len(rows), device=logits.device), anchors]
        if logits_processor:
            token_scores = logits_processor(input_ids, token_scores)
        tokens = sample_from_scores(
            token_scores,
            config.do_sample,
            config.temperature,
            config.top_k,
            config.top_p,
            generator,
            input_ids,
        )
        return stop, anchors + first, tokens

    @staticmethod
    def _joint_insertion(
        logits: torch.Tensor,
        input_ids: torch.LongTensor,
        allowed: torch.BoolTensor,
        first: int,
        config: ILMGenerationConfig,
        generator: torch.Generator | None,
        logits_processor: LogitsProcessorList,
    ) -> tuple[torch.LongTensor, torch.LongTensor]:
        """Anchor column and token chosen together over every (gap, token) pair of each row."""
        rows, width, vocab_size = logits.shape
        if logits_processor:  # each gap's token scores, with the row's tokens as the processors' context
            context = input_ids.repeat_interleave(width, dim=0)
            logits = logits_processor(context, logits.reshape(rows * width, vocab_size)).view(
                rows, width, vocab_size
            )
        logits = logits.masked_fill(~allowed[..., None], float("-inf"))
        choice = sample_from_scores(
            logits.reshape(rows, width * vocab_size),
            config.do_sample,
            config.temperature,
            config.top_k,
            config.top_p,
            generator,
        )
        return choice // vocab_size + first, choice % vocab_size

    # ------------------------------------------------------------------ preparation helpers

    def _special_ids(self, config: ILMGenerationConfig) -> dict[str, int | None]:
        ids = {}
        for name in ("pad", "bos", "cls", "mask", "eos"):
            value = getattr(config, f"{name}_token_id", None)
            if value is None:
                value = getattr(self.config, f"{name}_token_id", None)
            if isinstance(value, (list, tuple)):
                value = value[0] if value else None
            ids[name] = value
        for name in ("pad", "bos", "cls"):
            if ids[name] is None:
                raise ValueError(
                    f"ILM generation needs a {name}_token_id (in the model or generation config)."
                )
        return ids

    def _suppressed_tokens(
        self, config: ILMGenerationConfig, special: dict, device: torch.device
    ) -> torch.Tensor:
        if config.suppress_tokens is not None:
            suppress = list(config.suppress_tokens)
        else:
            suppress = [
                special[name] for name in ("mask", "eos", "pad", "cls", "bos") if special[name] is not None
            ]
        vocab_size = self.config.vocab_size
        if any(t >= vocab_size for t in suppress):
            raise ValueError(
                f"suppress_tokens {suppress} contains ids outside the vocabulary [0, {vocab_size})."
            )
        if len(set(suppress)) >= vocab_size:
            raise ValueError("suppress_tokens suppresses every token of the vocabulary.")
        return torch.tensor(sorted(set(suppress)), dtype=torch.long, device=device)

    def _prepare_insertion_state(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        insertion_mask: torch.Tensor | None,
        config: ILMGenerationConfig,
        special: dict,
        device: torch.device,
    ) -> ILMInsertionState:
        """Lays every row out as the model was trained on and marks the gaps where insertion is allowed."""
        cls_id, bos_id, mask_id = special["cls"], special["bos"], special["mask"]
        if input_ids is None:
            if insertion_mask is not None:
                raise ValueError("insertion_mask needs input_ids.")
            prompts = [[] for _ in range(config.num_return_sequences)]
            given = [None] * len(prompts)
        else:
            input_ids = torch.as_tensor(input_ids)
            if input_ids.dim() == 1:
                input_ids = input_ids[None]
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}.")
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            attention_mask = torch.as_tensor(attention_mask)
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids {tuple(input_ids.shape)}."
                )
            if insertion_mask is not None and torch.as_tensor(insertion_mask).shape != input_ids.shape:
                raise ValueError("insertion_mask must have the shape of input_ids.")
            real = attention_mask.bool()
            check_vocabulary(input_ids, real, self.config.vocab_size)
            ids_cpu, real_cpu = input_ids.cpu(), real.cpu()
            prompts = [ids_cpu[i][real_cpu[i]].tolist() for i in range(len(ids_cpu))]
            given = (
                [
                    torch.as_tensor(insertion_mask).cpu()[i][real_cpu[i]].bool().tolist()
                    for i in range(len(ids_cpu))
                ]
                if insertion_mask is not None
                else [None] * len(prompts)
            )

        rows, allowed_rows = [], []
        for index, (prompt, given_allowed) in enumerate(zip(prompts, given)):
            laid_out = bool(prompt) and prompt[0] == cls_id
            if given_allowed is not None and not laid_out:
                raise ValueError(
                    f"Row {index}: insertion_mask applies to rows given already laid out (starting with [CLS]); "
                    "for plain prompts mark the gaps with [MASK] tokens instead."
                )
            if laid_out:
                tokens, flags = prompt, given_allowed
                if bos_id not in tokens:
                    raise ValueError(f"Row {index} starts with [CLS] (laid out) but has no [BOS].")
            else:
                has_masks = mask_id is not None and mask_id in prompt
                if has_masks or config.prompt_layout == "lm":
                    tokens = [cls_id, bos_id, *prompt]
                else:
                    tokens = [cls_id, *prompt, bos_id]
                flags = None
            row, allowed = self._mark_gaps(tokens, flags, special, config, laid_out)
            if not any(allowed):
                raise ValueError(f"Row {index} has no gap where insertion is allowed.")
            rows.append(row)
            allowed_rows.append(allowed)

        if input_ids is not None and config.num_return_sequences > 1:
            rows = [r for r in rows for _ in range(config.num_return_sequences)]
            allowed_rows = [a for a in allowed_rows for _ in range(config.num_return_sequences)]
        ids, mask = pad_left(rows, special["pad"], device)
        allowed_ids, _ = pad_left([[int(a) for a in allowed] for allowed in allowed_rows], 0, device)
        return ILMInsertionState(
            input_ids=ids, attention_mask=mask, allowed=allowed_ids.bool(), generated=torch.zeros_like(mask)
        )

    @staticmethod
    def _mark_gaps(
        tokens: list[int],
        given_allowed: list[bool] | None,
        special: dict,
        config: ILMGenerationConfig,
        laid_out: bool,
    ) -> tuple[list[int], list[bool]]:
        """Removes `[MASK]`s and returns the tokens with, per token, whether the gap after it takes insertions.

        - `[MASK]`s present: only the gaps they marked (the token before each run of masks);
        - else `given_allowed` (laid-out rows with an insertion_mask);
        - else every gap from the first `[BOS]` on (`[CLS] prompt [BOS]`: after `[BOS]` only; `[CLS] [BOS] text`:
          everywhere after `[CLS]`).
        `[CLS]` never takes insertions.
        """
        mask_id, bos_id = special["mask"], special["bos"]
        kept, allowed, saw_mask = [], [], False
        for position, token in enumerate(tokens):
            if mask_id is not None and token == mask_id:
                if not kept:
                    raise ValueError("A [MASK] cannot come before [CLS].")
                allowed[-1] = True
                saw_mask = True
                continue
            kept.append(token)
            allowed.append(bool(given_allowed[position]) if given_allowed is not None else False)
        if not saw_mask and given_allowed is None:
            first_bos = kept.index(bos_id)
            allowed = [i >= first_bos for i in range(len(kept))]
        allowed[0] = False  # [CLS]
        return kept, allowed


__all__ = [
    "ILMGenerationConfig",
    "ILMGenerationMixin",
    "ILMGenerationOutput",
    "ILMInsertionState",
    "sample_from_scores",
]
