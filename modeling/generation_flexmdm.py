"""Generation of FlexMDM: insertion and unmasking from t = 0 upward (spec §1.5 e).

A row starts as `prompt [BOS] [EOS]` (plain prompt; `[BOS] prompt [EOS]` with `prompt_layout="lm"`),
`[BOS] text [EOS]` with the `[MASK]` runs of an infilling prompt removed (each run marks a gap whose length the
model chooses; a prompt that holds `[BOS]`, `source [BOS] text`, keeps its source before it, as the seq2seq
collators lay it out), or `[BOS] [EOS]` (no prompt). Insertion is
allowed only in the gap before `[EOS]` (plain prompts) or in the marked gaps (infilling), and in every gap that
generated tokens open; the given tokens are never changed, and stay in order.

`num_steps` model calls. With `N = num_steps`, calls `k = 0 .. N - 2` run at times `t_k = k / (N - 1)` and move the
canvas to `s = t_{k+1}`: every `[MASK]` is unmasked with probability `(a_unm(s) - a_unm(t)) / (1 - a_unm(t))` and
each allowed gap receives new `[MASK]`s, on average its predicted missing length times
`(a_ins(s) - a_ins(t)) / (1 - a_ins(t))`. That probability is 1 on the call that reaches s = 1, so every predicted
token is inserted before the last call, which (at t = 1) fills the remaining masks and inserts nothing. Greedy
decoding (`do_sample=False`) rounds the expected counts (how many masks to unmask; how many to insert in a row,
spread over its gaps by largest remainder) and unmasks the most confident positions; sampling draws Poisson insertion counts and, with `unmasking_order="random"`,
unmasks each mask independently.

Hub-side file: imports only torch, transformers and sibling files.
"""

from dataclasses import dataclass
from typing import Any

import torch
from transformers.generation import LogitsProcessorList
from transformers.utils import ModelOutput

from .generation_utils import (
    NonAutoregressiveGenerationMixin,
    XLMGenerationConfig,
    build_logits_warpers,
    check_vocabulary,
    choose_tokens,
    pad_left,
)

UNMASKING_ORDERS = ("top_prob", "prob_diff", "entropy", "random")
PROMPT_LAYOUTS = ("seq2seq", "lm")


class FlexMDMGenerationConfig(XLMGenerationConfig):
    r"""
    Parameters of [`FlexMDMGenerationMixin.generate`]. Unset values (`None`) fall back to the model's config.

    Args:
        max_length (`int`, *optional*): Longest row (prompt, `[BOS]`, `[EOS]` and generated tokens); defaults to
            the model's `max_position_embeddings`.
        max_new_tokens (`int`, *optional*): Most tokens a row generates; insertions beyond it are dropped (the
            later gaps of the row first).
        min_new_tokens (`int`): Least tokens a row generates: a row short of it gets the missing `[MASK]`s in its
            longest predicted gap on the last insertion call.
        num_steps (`int`): Model calls, >= 2 (the last one only fills masks). (Formerly `max_steps`.)
        do_sample, temperature, top_k, top_p: Token choice, as in transformers (greedy when `do_sample=False`).
            Sampling also draws the insertion counts (Poisson) instead of rounding their expectation.
        unmasking_order (`str`): Which masks a step unmasks: the `round(p * masked)` most confident by `top_prob`,
            `prob_diff` (top-1 minus top-2 probability) or `entropy` (lowest first); or `random`, each mask
            independently with probability p (needs `do_sample=True`).
        prompt_layout (`str`): How a plain prompt is laid out: `"seq2seq"` (default) = `prompt [BOS] [EOS]`, the
            answer generated after `[BOS]` (a prompt -> answer model); `"lm"` = `[BOS] prompt [EOS]`, the prompt is
            the start of the text and is continued, new tokens going after it (a model trained on text rows
            `[BOS] text [EOS]`). A prompt that contains `[MASK]` is infilled in either layout.
        suppress_tokens (`list[int]`, *optional*): Tokens never generated; defaults to the model's `[PAD]`,
            `[MASK]`, `[BOS]`, `[EOS]`, `[CLS]` and `[SEP]`. (Formerly `suppress_token_ids`.)
        num_return_sequences (`int`): Samples per prompt (rows of `[BOS] [EOS]` when there is no prompt).
        seed (`int`, *optional*): Seeds a private `torch.Generator` (a `generator` passed to `generate` wins).
        return_dict_in_generate (`bool`): Return a [`FlexMDMGenerationOutput`] (default) or only `sequences`.
        output_history (`bool`): Also return the canvas after every call. (Formerly `return_history`.)
        pad_token_id, bos_token_id, eos_token_id, mask_token_id (`int`, *optional*): Default to the model's.
    """

    _defaults: dict[str, Any] = {
        "max_length": None,
        "max_new_tokens": None,
        "min_new_tokens": 0,
        "num_steps": 32,
        "do_sample": False,
        "temperature": 1.0,
        "top_k": None,
        "top_p": None,
        "unmasking_order": "top_prob",
        "prompt_layout": "seq2seq",
        "suppress_tokens": None,
        "num_return_sequences": 1,
        "seed": None,
        "return_dict_in_generate": True,
        "output_history": False,
        "pad_token_id": None,
        "bos_token_id": None,
        "eos_token_id": None,
        "mask_token_id": None,
    }

    def validate(self, strict: bool = False, **unused_kwargs) -> None:
        def integer(name: str, minimum: int, optional: bool = True) -> None:
            value = getattr(self, name)
            if value is None and optional:
                return
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")

        integer("max_length", 1)
        integer("max_new_tokens", 0)
        integer("min_new_tokens", 0, optional=False)
        integer("num_steps", 2, optional=False)
        integer("num_return_sequences", 1, optional=False)
        integer("top_k", 1)
        integer("seed", 0)
        if not isinstance(self.do_sample, bool):
            raise ValueError(f"`do_sample` must be True or False, got {self.do_sample!r}.")
        if (
            isinstance(self.temperature, bool)
            or not isinstance(self.temperature, (int, float))
            or self.temperature <= 0
        ):
            raise ValueError(f"`temperature` must be a number > 0, got {self.temperature!r}.")
        if self.top_p is not None and not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ValueError(f"`top_p` must be in (0, 1], got {self.top_p!r}.")
        if self.unmasking_order not in UNMASKING_ORDERS:
            raise ValueError(
                f"`unmasking_order` must be one of {UNMASKING_ORDERS}, got {self.unmasking_order!r}."
            )
        if self.unmasking_order == "random" and not self.do_sample:
            raise ValueError(
                '`unmasking_order="random"` draws positions: set do_sample=True, or use "top_prob".'
            )
        if self.prompt_layout not in PROMPT_LAYOUTS:
            raise ValueError(f"`prompt_layout` must be one of {PROMPT_LAYOUTS}, got {self.prompt_layout!r}.")
        if self.max_new_tokens is not None and self.min_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"`min_new_tokens` ({self.min_new_tokens}) exceeds `max_new_tokens` ({self.max_new_tokens})."
            )
        if self.suppress_tokens is not None and not all(
            isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in self.suppress_tokens
        ):
            raise ValueError(f"`suppress_tokens` must be a list of token ids, got {self.suppress_tokens!r}.")


@dataclass
class FlexMDMGenerationOutput(ModelOutput):
    r"""
    sequences (`torch.LongTensor` of shape `(batch, length)`):
        Final rows in reading order (prompt, `[BOS]`, generated tokens, `[EOS]`), left-padded with `[PAD]`. Decode
        with `tokenizer.batch_decode(sequences, skip_special_tokens=True)`.
    new_token_mask (`torch.BoolTensor` of shape `(batch, length)`): The tokens the model generated.
    history (`tuple[torch.LongTensor]`, *optional*): With `output_history=True`, the canvas before the first call
        and after every call (`num_steps + 1` frames, each `(batch, length_k)`, left-padded, `[MASK]` where a
        token is not chosen yet); the last frame is `sequences`.
    num_steps (`int`): Model calls run.
    model_calls (`torch.LongTensor` of shape `(batch,)`): Model evaluations per row.
    """

    sequences: torch.LongTensor | None = None
    new_token_mask: torch.BoolTensor | None = None
    history: tuple[torch.LongTensor, ...] | None = None
    num_steps: int | None = None
    model_calls: torch.LongTensor | None = None


@dataclass
class FlexMDMCanvas:
    """Rows being generated, left-aligned (padding on the right). `insertable[b, i]`: new tokens may go into the
    gap right before token i; `generated`: the token was generated (a `[MASK]` until it is unmasked)."""

    input_ids: torch.LongTensor
    attention_mask: torch.BoolTensor
    insertable: torch.BoolTensor
    generated: torch.BoolTensor

    def insert_masks(self, counts: torch.LongTensor, mask_id: int, pad_id: int) -> None:
        """Inserts `counts[b, i]` `[MASK]`s right before token i of row b."""
        counts = counts * self.attention_mask
        if not bool(counts.any()):
            return
        lengths = self.attention_mask.sum(-1) + counts.sum(-1)
        width = int(lengths.max())
        rows = self.input_ids.shape[0]
        columns = torch.arange(width, device=counts.device)[None, :]
        real = columns < lengths[:, None]
        ids = torch.full((rows, width), pad_id, dtype=torch.long, device=counts.device).masked_fill(
            real, mask_id
        )
        insertable, generated = real.clone(), real.clone()  # new masks: generated, and they open gaps
        target = torch.arange(self.input_ids.shape[1], device=counts.device)[None, :] + counts.cumsum(-1)
        old = self.attention_mask
        row_index = torch.arange(rows, device=counts.device)[:, None].expand_as(target)
        ids[row_index[old], target[old]] = self.input_ids[old]
        insertable[row_index[old], target[old]] = self.insertable[old]
        generated[row_index[old], target[old]] = self.generated[old]
        self.input_ids, self.attention_mask, self.insertable, self.generated = (
            ids,
            real,
            insertable,
            generated,
        )

    def left_padded(self, values: torch.Tensor, fill) -> torch.Tensor:
        """`values` (shaped like the canvas) moved to the right end of each row, padding on the left."""
        order = torch.sort(self.attention_mask.long(), dim=-1, stable=True).indices
        return values.gather(1, order).masked_fill(~self.attention_mask.gather(1, order), fill)


def round_half_up(values: torch.Tensor) -> torch.LongTensor:
    return torch.floor(values + 0.5).long()


def largest_remainder(expected: torch.Tensor) -> torch.LongTensor:
    """Whole counts per gap whose row total is the rounded total of `expected` `(batch, gaps)`: each gap gets the
    floor of its expectation, and the gaps with the largest remainders one more. Rounding each gap on its own would
    drop every expectation below 1/2, i.e. nearly all insertions of an early step, when the mass is spread thin."""
    base = expected.floor()
    extra = round_half_up(expected.sum(-1)) - base.sum(-1).long()
    remainder = expected - base
    order = torch.sort(remainder, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return base.long() + (rank < extra[:, None]).long()


def confidence(logits: torch.Tensor, order: str) -> torch.Tensor:
    """Higher = more confident, per position of `logits` `(..., vocab)` (-inf entries are forbidden tokens)."""
    probs = logits.float().softmax(-1)
    if order == "top_prob":
        return probs.max(-1).values
    if order == "prob_diff":
        top2 = probs.topk(2, dim=-1).values
        return top2[..., 0] - top2[..., 1]
    entropy = -(probs * probs.clamp(min=1e-30).log()).sum(-1)
    return -entropy


class FlexMDMGenerationMixin(NonAutoregressiveGenerationMixin):
    """Adds `generate` (insertion + unmasking from t = 0) to [`FlexMDMForDiffusionLM`]."""

    generation_config_class = FlexMDMGenerationConfig

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        generation_config: FlexMDMGenerationConfig | None = None,
        logits_processor: LogitsProcessorList | list | None = None,
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> FlexMDMGenerationOutput | torch.LongTensor:
        r"""
        Grows and unmasks each row from its prompt; the model chooses how many tokens to generate.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch, length)`, *optional*): Plain prompts as the tokenizer
                returns them (any padding side, no special tokens); the answer is generated after `prompt [BOS]`.
                `[MASK]` tokens mark gaps of a text to infill: each run of them is a gap whose length the model
                chooses (zero or more tokens), the other tokens are kept, in order. `None`: unconditional samples.
            attention_mask (`torch.Tensor` of shape `(batch, length)`, *optional*): 1 on real tokens.
            generation_config ([`FlexMDMGenerationConfig`], *optional*): Defaults to `model.generation_config`.
            logits_processor (`LogitsProcessorList`, *optional*): transformers logits processors applied to the
                token scores of the masked positions `(positions, vocab)` before the token choice, called with the
                rows those positions belong to as `input_ids`.
            generator (`torch.Generator`, *optional*): Random source of sampling.
            kwargs: Overrides of `generation_config` fields (`num_steps=16`, `do_sample=True`, ...).
        """
        kwargs.pop("token_type_ids", None)
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
        canvas = self._prepare_canvas(input_ids, attention_mask, config, special, device)
        lengths = canvas.attention_mask.sum(-1)
        if bool((lengths > max_length).any()):
            row = int((lengths > max_length).nonzero()[0])
            raise ValueError(
                f"Row {row} already has {int(lengths[row])} tokens with [BOS] and [EOS], more than max_length="
                f"{max_length}. Shorten the prompt or raise max_length."
            )
        budget = max_length - lengths
        if config.max_new_tokens is not None:
            budget = budget.clamp(max=config.max_new_tokens)
        if bool((budget < config.min_new_tokens).any()):
            raise ValueError(
                f"min_new_tokens={config.min_new_tokens} does not fit in max_length={max_length} for every row."
            )
        generator = self._prepare_generator(config.seed, generator, device)
        processors = LogitsProcessorList(logits_processor or [])
        warpers = build_logits_warpers(config.do_sample, config.temperature, config.top_k, config.top_p)
        suppress = self._suppressed_tokens(config, special, device)
        insertion = self.config.get_insertion_schedule()
        unmasking = self.config.get_unmasking_schedule()

        history = [canvas.left_padded(canvas.input_ids, special["pad"])] if config.output_history else None
        last = config.num_steps - 1
        for step in range(config.num_steps):
            t = torch.tensor(min(step / last, 1.0), device=device)
            s = torch.tensor(min((step + 1) / last, 1.0), device=device)
            ids, mask = canvas.input_ids, canvas.attention_mask
            output = self(
                input_ids=ids,
                attention_mask=mask.long(),
                t=t.expand(ids.shape[0]).float(),
            )
            masked = ids.eq(special["mask"]) & mask & canvas.generated
            unmask_probability = (
                unmasking.step_probability(t, s) if step < last else torch.ones((), device=device)
            )
            if bool(masked.any()):
                self._unmask(
                    canvas,
                    output.logits,
                    masked,
                    unmask_probability,
                    config,
                    suppress,
                    processors,
                    warpers,
                    generator,
                )
            if step < last:
                expected = output.gap_lengths.float() * insertion.step_probability(t, s)
                counts = self._insertion_counts(canvas, expected, budget, config, generator, step == last - 1)
                canvas.insert_masks(counts, special["mask"], special["pad"])
            if history is not None:
                history.append(canvas.left_padded(canvas.input_ids, special["pad"]))

        sequences = canvas.left_padded(canvas.input_ids, special["pad"])
        if not config.return_dict_in_generate:
            return sequences
        rows = sequences.shape[0]
        return FlexMDMGenerationOutput(
            sequences=sequences,
            new_token_mask=canvas.left_padded(canvas.generated, False),
            history=tuple(history) if history is not None else None,
            num_steps=config.num_steps,
            model_calls=torch.full((rows,), config.num_steps, dtype=torch.long, device=device),
        )

    # ------------------------------------------------------------------ one step

    def _unmask(
        self, canvas, logits, masked, probability, config, suppress, processors, warpers, generator
    ) -> None:
        """Chooses tokens for some of the `[MASK]`s: `round(p * masked)` of them by confidence (or each with
        probability p for `unmasking_order="random"`)."""
        rows, columns = masked.nonzero(as_tuple=True)
        scores = logits[rows, columns].float()
        scores[:, suppress] = float("-inf")
        if processors:
            scores = processors(canvas.input_ids[rows], scores)
        tokens = choose_tokens(scores, canvas.input_ids[rows], config.do_sample, warpers, generator)
        if config.unmasking_order == "random":
            draws = torch.rand(len(rows), generator=generator, device=scores.device)
            chosen = draws < probability
        else:
            score = torch.full(masked.shape, float("-inf"), device=scores.device)
            score[rows, columns] = confidence(scores, config.unmasking_order)
            number = round_half_up(masked.sum(-1).float() * probability)
            # the `number` highest-scoring masks of each row (ties: leftmost first, as a stable sort gives)
            order = torch.sort(score, dim=-1, descending=True, stable=True).indices
            rank = torch.empty_like(order)
            rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
            chosen = (rank < number[:, None])[rows, columns]
        canvas.input_ids[rows[chosen], columns[chosen]] = tokens[chosen]

    def _insertion_counts(
        self, canvas, expected, budget, config, generator, last_insertion: bool
    ) -> torch.LongTensor:
        """New `[MASK]`s per gap: the expectation rounded (or a Poisson draw when sampling), in allowed gaps only,
        within what is left of each row's budget (earlier gaps first); on the last insertion call rows short of
        `min_new_tokens` get the rest in their longest predicted gap."""
        allowed = canvas.insertable & canvas.attention_mask
        expected = expected.clamp(min=0).masked_fill(~allowed, 0.0)
        if config.do_sample:
            counts = torch.poisson(expected, generator=generator).long()
        else:
            counts = largest_remainder(expected)
        generated = (canvas.generated & canvas.attention_mask).sum(-1)
        left = (budget - generated).clamp(min=0)
        if last_insertion and config.min_new_tokens:
            short = (config.min_new_tokens - generated - counts.sum(-1)).clamp(min=0)
            longest = expected.masked_fill(~allowed, float("-inf")).argmax(-1)
            counts[torch.arange(len(counts), device=counts.device), longest] += short
        before = counts.cumsum(-1) - counts
        return torch.minimum(counts, (left[:, None] - before).clamp(min=0))

    # ------------------------------------------------------------------ preparation

    def _special_ids(self, config: FlexMDMGenerationConfig) -> dict[str, int]:
        ids = {}
        for name in ("pad", "bos", "eos", "mask"):
            value = getattr(config, f"{name}_token_id", None)
            if value is None:
                value = getattr(self.config, f"{name}_token_id", None)
            if isinstance(value, (list, tuple)):
                value = value[0] if value else None
            if value is None:
                raise ValueError(
                    f"FlexMDM generation needs a {name}_token_id (in the model or generation config)."
                )
            ids[name] = value
        return ids

    def _suppressed_tokens(self, config, special: dict, device: torch.device) -> torch.Tensor:
        if config.suppress_tokens is not None:
            suppress = set(config.suppress_tokens) | {special["mask"]}
        else:
            suppress = {special[name] for name in ("pad", "mask", "bos", "eos")}
            suppress |= {
                getattr(self.config, name)
                for name in ("cls_token_id", "sep_token_id")
                if getattr(self.config, name, None) is not None
            }
        if any(t >= self.config.vocab_size for t in suppress):
            raise ValueError(
                f"suppress_tokens {sorted(suppress)} has ids outside the vocabulary [0, {self.config.vocab_size})."
            )
        if len(suppress) >= self.config.vocab_size:
            raise ValueError("suppress_tokens suppresses every token of the vocabulary.")
        return torch.tensor(sorted(suppress), dtype=torch.long, device=device)

    def _prepare_canvas(self, input_ids, attention_mask, config, special: dict, device) -> FlexMDMCanvas:
        """Lays each row out (`prompt [BOS] [EOS]` or `[BOS] prompt [EOS]`, `[BOS] text [EOS]` for infilling) and
        marks its gaps."""
        bos, eos, mask_id = special["bos"], special["eos"], special["mask"]
        if input_ids is None:
            prompts = [[] for _ in range(config.num_return_sequences)]
        else:
            input_ids = torch.as_tensor(input_ids)
            if input_ids.dim() == 1:
                input_ids = input_ids[None]
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}.")
            attention_mask = (
                torch.ones_like(input_ids) if attention_mask is None else torch.as_tensor(attention_mask)
            )
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids {tuple(input_ids.shape)}."
                )
            real = attention_mask.bool()
            check_vocabulary(input_ids, real, self.config.vocab_size)
            ids_cpu, real_cpu = input_ids.cpu(), real.cpu()
            prompts = [ids_cpu[i][real_cpu[i]].tolist() for i in range(len(ids_cpu))]
            prompts = [p for p in prompts for _ in range(config.num_return_sequences)]
        rows, gaps = [], []
        for prompt in prompts:
            if mask_id in prompt:  # infilling: each run of [MASK]s is a gap before the next kept token
                # `source [BOS] text` keeps its source, as the seq2seq collators lay it out; plain text gets a [BOS]
                tokens, insertable = ([], []) if bos in prompt else ([bos], [False])
                gap = False
                for token in [*prompt, eos]:
                    if token == mask_id:
                        gap = True
                        continue
                    tokens.append(token)
                    insertable.append(gap)
                    gap = False
            else:
                # `prompt [BOS] [EOS]`, or `[BOS] prompt [EOS]` (lm: the text's start, continued); either way the
                # new tokens go before [EOS]
                tokens = [bos, *prompt, eos] if config.prompt_layout == "lm" else [*prompt, bos, eos]
                insertable = [False] * (len(prompt) + 1) + [True]
            rows.append(tokens)
            gaps.append([int(flag) for flag in insertable])
        # built left-padded by the shared helper, then moved left: the canvas keeps its padding on the right
        ids, mask = pad_left(rows, special["pad"], device)
        flags, _ = pad_left(gaps, 0, device)
        order = torch.sort((~mask).long(), dim=-1, stable=True).indices
        mask = mask.gather(1, order)
        return FlexMDMCanvas(
            input_ids=ids.gather(1, order).masked_fill(~mask, special["pad"]),
            attention_mask=mask,
            insertable=flags.gather(1, order).bool() & mask,
            generated=torch.zeros_like(mask),
        )


__all__ = ["FlexMDMCanvas", "FlexMDMGenerationConfig", "FlexMDMGenerationMixin", "FlexMDMGenerationOutput"]
