"""Generation shared by the masked families (MLM, MDLM): iterative denoising of `[MASK]` tokens.

Reading order: the generation config -> the output -> position scoring -> the mixin, whose `generate` lays out the
canvas, then runs blocks of denoising steps (one `sampler.step` each) and returns the canvas -> the samplers, small
classes with a `step` method (`SAMPLER_CLASSES`). Each family subclasses the config (its defaults and allowed
samplers) and the mixin (how the model is called at a noise level); see `generation_mlm.py` and
`generation_mdlm.py`. What the decoders of all families share (config base, loading, token choice, left padding,
`new_token_mask`) is in `generation_utils.py`.

Canvas layout. Plain tokenized prompts (left-padded, as `tokenizer(prompts, padding=True, return_tensors="pt")`
returns them) become `prompt [BOS] [MASK] * max_new_tokens` (the layout follows `config.prompt_layout`), still
left-padded. Every `[MASK]` of the canvas is generated, including `[MASK]`s written in the prompt (infilling); every
other token is copied unchanged. `max_new_tokens=0` therefore means pure infilling: fill the prompt's masks, add
nothing. Without `input_ids` the canvas is unconditional (`[BOS]? [MASK] * max_new_tokens`).

Token choice follows transformers: `do_sample=False` (the default) takes the argmax of the logits, `do_sample=True`
draws from them after `TemperatureLogitsWarper` / `TopKLogitsWarper` / `TopPLogitsWarper`; a caller's
`logits_processor=` list runs first in both cases. Processors see the logits of the positions being decided as one
`(positions, vocab)` batch: every masked position for the unmask sampler (its confidences read the processed
logits), the positions that unmask in the step for the ancestral one. Tokens are drawn only where a position is
committed. Random draws (tokens, the `random` order, Gumbel confidences, ancestral unmasking) use
torch's global RNG, so `transformers.set_seed` makes them reproducible; `seed=` or `generator=` gives a private one.

Two samplers (`UnmaskSampler`, `AncestralSampler`):
- `"unmask"` (MaskGIT-style, MLM and MDLM): each step commits a number of masked positions, chosen in a given order
  (`random`, `top_prob`, `prob_diff`, `entropy`), optionally by the cumulative-uncertainty `threshold` rule; at least
  `ceil(masked / steps_left)` positions per step, so the last step of a block fills the block.
- `"ancestral"` (MDLM): the reverse process of the absorbing diffusion from t = 1 towards 0. From t to s = t - dt
  a masked token becomes token v with probability p(v) (P_t - P_s) / P_t and stays masked with probability P_s / P_t
  (P_t = 1 - exp(-sigma(t))); the last step fills the rest with the argmax. With `do_sample=False` the tokens are
  argmax tokens, but which positions unmask is still drawn. Rows whose canvas did not change keep their logits
  when the model ignores time (the cache trick): same samples, fewer model calls.

Hub-side file: imports only torch and transformers.
"""

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from transformers.generation import LogitsProcessorList
from transformers.modeling_outputs import ModelOutput
from transformers.utils import logging

from .configuration_backbone import PROMPT_LAYOUTS
from .generation_utils import (
    NonAutoregressiveGenerationMixin,
    XLMGenerationConfig,
    build_logits_warpers,
    check_vocabulary,
    choose_tokens,
    pad_left,
)

logger = logging.get_logger(__name__)

UNMASKING_ORDERS = ("random", "top_prob", "prob_diff", "entropy")
SAMPLERS = ("unmask", "ancestral")
# Upper bound of num_steps: the larger of MAX_STEPS and MAX_STEPS_PER_POSITION per position to fill (MDLM's paper
# samples 1024 tokens in up to 1000 steps, so this leaves room for any schedule while refusing typos like 1e8).
MAX_STEPS = 1024
MAX_STEPS_PER_POSITION = 64

# Fields of the config, with their meaning; used for validation of keyword overrides and documentation.
_FIELDS = (
    "max_new_tokens",
    "max_length",
    "num_steps",
    "sampler",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "unmasking_order",
    "confidence_temperature",
    "threshold",
    "block_size",
    "num_return_sequences",
    "seed",
    "use_cache_trick",
    "output_history",
    "return_dict_in_generate",
    "suppress_tokens",
    "prompt_layout",
    "bos_token_id",
    "pad_token_id",
    "eos_token_id",
    "mask_token_id",
)


class MaskedGenerationConfig(XLMGenerationConfig):
    # no-format
    """
    Parameters of [`MaskedDenoisingGenerationMixin.generate`]. Unset fields (`None`) take the family's defaults
    (`_get_default_generation_params`) at generation time, so a saved config stores only what was chosen.

    Args:
        > Length

        max_new_tokens (`int`, *optional*): Number of `[MASK]` tokens appended after the prompt (and its `[BOS]`).
            `0` means infilling only: the prompt's own `[MASK]`s are filled and nothing is added.
        max_length (`int`, *optional*): Alternative to `max_new_tokens`: the total length of the canvas (prompt,
            `[BOS]` and new tokens) of the longest row. When set, it wins over `max_new_tokens`.

        > Denoising

        num_steps (`int`, *optional*): Number of denoising steps (model calls without the cache trick). `None`:
            one step per generated token for the `unmask` sampler. For `ancestral`, the last step is the argmax
            fill (xlm-core's `max_steps=T` equals `num_steps=T+1` here).
        sampler (`str`): `"unmask"` or `"ancestral"` (MDLM only).
        unmasking_order (`str`): Which masked positions the `unmask` sampler commits first: `"random"`,
            `"top_prob"` (highest max-probability), `"prob_diff"` (largest top-1 minus top-2 probability) or
            `"entropy"` (lowest entropy).
        confidence_temperature (`float`): 0 commits the most confident positions; above 0 positions are drawn
            without replacement from the softmax of confidence / temperature (Gumbel top-k).
        threshold (`float`, *optional*): Cumulative-uncertainty rule: positions are taken in order of confidence
            while the summed uncertainty of the positions already taken this step stays below `threshold`
            (uncertainty: 1 - max prob, 1 - (top-1 minus top-2), or the entropy). Always at least one position,
            and never fewer than `ceil(masked / steps_left)`.
        block_size (`int`, *optional*): Semi-autoregressive generation: the new tokens are generated block by block,
            left to right, each with its share of `num_steps`. Must divide the number of new tokens.

        > Token choice

        do_sample (`bool`): `False` (default) takes the most likely token; `True` samples from the logits after
            `temperature`, `top_k` and `top_p`, which only apply when sampling (as in transformers).
        temperature (`float`): Sampling temperature, > 0 when `do_sample=True`. `0` is accepted without
            `do_sample` (the spelling of greedy decoding in configs saved before `do_sample` existed).
        top_k (`int`, *optional*): Sample among the k most likely tokens. Not combinable with `top_p`.
        top_p (`float`, *optional*): Nucleus sampling: the smallest set of tokens whose probability reaches `top_p`.
        suppress_tokens (`list[int]`, *optional*): Ids never generated (`[MASK]` is always suppressed).

        > Other

        use_cache_trick (`bool`): Ancestral sampler: reuse a row's logits when the previous step changed nothing in
            it. Only exact when the model ignores time, so it is skipped for time-conditioned models.
        num_return_sequences (`int`): Samples per prompt (or the number of unconditional samples).
        seed (`int`, *optional*): Seed of a private `torch.Generator` (or pass `generator=` to `generate`). Unset,
            draws use torch's global RNG, which `transformers.set_seed` seeds; a saved seed makes every call draw
            the same, whatever `set_seed` says.
        output_history (`bool`): Return the canvas after every step.
        return_dict_in_generate (`bool`): Return a [`MaskedGenerationOutput`] (default) or only the sequences.
        prompt_layout (`str`, *optional*): Overrides the model config's layout (`seq2seq`: `prompt [BOS] [MASK]...`,
            `lm`: `[BOS] prompt [MASK]...`, `none`: no `[BOS]`). Deprecated alias: `bos_position`.
        bos_token_id, pad_token_id, eos_token_id, mask_token_id (`int`, *optional*): Special tokens; taken from the
            model config when unset.
    """

    _allowed_samplers: tuple[str, ...] = SAMPLERS
    # every field unset: the family's defaults apply at generation time (`with_defaults`)
    _defaults: dict[str, Any] = {name: None for name in _FIELDS}
    # infilling fills the text's masks and adds nothing after it
    infill_defaults: dict[str, Any] = {"max_new_tokens": 0}

    @staticmethod
    def _get_default_generation_params() -> dict[str, Any]:
        return {
            "max_new_tokens": 32,
            "sampler": "unmask",
            "do_sample": False,
            "temperature": 1.0,
            "unmasking_order": "top_prob",
            "confidence_temperature": 0.0,
            "use_cache_trick": True,
            "num_return_sequences": 1,
            "output_history": False,
            "return_dict_in_generate": True,
        }

    def validate(self, strict: bool = False, **unused_kwargs) -> None:
        def check(condition: bool, message: str) -> None:
            if not condition:
                raise ValueError(message)

        def is_int(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        if self.max_new_tokens is not None:
            check(
                is_int(self.max_new_tokens) and self.max_new_tokens >= 0,
                f"max_new_tokens must be an integer >= 0, got {self.max_new_tokens!r}.",
            )
        if self.max_length is not None:
            check(
                is_int(self.max_length) and self.max_length > 0,
                f"max_length must be a positive integer, got {self.max_length!r}.",
            )
        if self.num_steps is not None:
            check(
                is_int(self.num_steps) and self.num_steps > 0,
                f"num_steps must be a positive integer, got {self.num_steps!r}.",
            )
        if self.sampler is not None:
            check(
                self.sampler in self._allowed_samplers,
                f"sampler must be one of {self._allowed_samplers} for {type(self).__name__}, got {self.sampler!r}.",
            )
        if self.do_sample is not None:
            check(
                isinstance(self.do_sample, bool), f"do_sample must be True or False, got {self.do_sample!r}."
            )
        if self.temperature is not None:
            check(
                isinstance(self.temperature, (int, float))
                and not isinstance(self.temperature, bool)
                and self.temperature >= 0,
                f"temperature must be a number >= 0, got {self.temperature!r}.",
            )
            # as transformers' TemperatureLogitsWarper: sampling needs a positive temperature
            check(
                not (self.do_sample and self.temperature == 0),
                "temperature=0 cannot be combined with do_sample=True: sampling needs a temperature > 0 (e.g. "
                "temperature=1.0); for greedy decoding set do_sample=False. Checkpoints saved before do_sample "
                "existed store temperature: 0.0 to mean greedy decoding.",
            )
        if self.top_k is not None:
            check(
                is_int(self.top_k) and self.top_k > 0,
                f"top_k must be a positive integer, got {self.top_k!r}.",
            )
        if self.top_p is not None:
            check(
                isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1,
                f"top_p must be in (0, 1], got {self.top_p!r}.",
            )
        check(
            self.top_k is None or self.top_p is None,
            f"Give top_k or top_p, not both (got top_k={self.top_k}, top_p={self.top_p}).",
        )
        if self.unmasking_order is not None:
            check(
                self.unmasking_order in UNMASKING_ORDERS,
                f"unmasking_order must be one of {UNMASKING_ORDERS}, got {self.unmasking_order!r}.",
            )
        if self.confidence_temperature is not None:
            check(
                isinstance(self.confidence_temperature, (int, float)) and self.confidence_temperature >= 0,
                f"confidence_temperature must be >= 0, got {self.confidence_temperature!r}.",
            )
        if self.threshold is not None:
            check(
                isinstance(self.threshold, (int, float)) and self.threshold > 0,
                f"threshold must be a positive number, got {self.threshold!r}.",
            )
            check(
                self.unmasking_order != "random",
                "threshold needs a confidence to rank positions: set unmasking_order to top_prob, prob_diff or "
                "entropy.",
            )
            check(
                self.sampler != "ancestral", "threshold applies to the 'unmask' sampler, not to 'ancestral'."
            )
        if self.block_size is not None:
            check(
                is_int(self.block_size) and self.block_size > 0,
                f"block_size must be a positive integer, got {self.block_size!r}.",
            )
        if self.num_return_sequences is not None:
            check(
                is_int(self.num_return_sequences) and self.num_return_sequences > 0,
                f"num_return_sequences must be a positive integer, got {self.num_return_sequences!r}.",
            )
        if self.seed is not None:
            check(is_int(self.seed), f"seed must be an integer, got {self.seed!r}.")
        if self.prompt_layout is not None:
            check(
                self.prompt_layout in PROMPT_LAYOUTS,
                f"prompt_layout must be one of {PROMPT_LAYOUTS}, got {self.prompt_layout!r}.",
            )
        if self.suppress_tokens is not None:
            check(
                isinstance(self.suppress_tokens, (list, tuple))
                and all(is_int(i) for i in self.suppress_tokens),
                f"suppress_tokens must be a list of token ids, got {self.suppress_tokens!r}.",
            )

    def with_defaults(self, model_config) -> "MaskedGenerationConfig":
        """A copy where every unset field holds the family default or the model config's value."""
        resolved = copy.deepcopy(self)
        for key, value in self._get_default_generation_params().items():
            if getattr(resolved, key) is None:
                setattr(resolved, key, value)
        for key in ("bos_token_id", "pad_token_id", "eos_token_id", "mask_token_id", "prompt_layout"):
            if getattr(resolved, key) is None:
                setattr(resolved, key, getattr(model_config, key, None))
        if resolved.prompt_layout is None:
            resolved.prompt_layout = "seq2seq"
        resolved.validate()
        return resolved


@dataclass
class MaskedGenerationOutput(ModelOutput):
    """
    Output of masked-denoising generation.

    Args:
        sequences (`torch.LongTensor` of shape `(batch, length)`): The final canvases, prompt included, left-padded.
        history (`tuple[torch.LongTensor]`, *optional*): The canvas after every denoising step (with
            `output_history=True`), one entry per step.
        output_start_idx (`int`): Column where the appended tokens start (`sequences[:, output_start_idx:]` are the
            `max_new_tokens` tokens after the prompt).
        new_token_mask (`torch.BoolTensor` of shape `(batch, length)`): The tokens the model generated: every
            position that was `[MASK]` on the canvas (appended, or written in the prompt).
        steps_taken (`torch.LongTensor` of shape `(batch,)`): Steps during which each row still had masks.
        model_calls (`torch.LongTensor` of shape `(batch,)`): Model evaluations each row needed (fewer than steps
            when logits were reused or the row was finished).
        num_forward_passes (`int`): Forward passes of the model (each over the rows that needed one).
    """

    sequences: torch.LongTensor | None = None
    history: tuple[torch.LongTensor, ...] | None = None
    output_start_idx: int | None = None
    new_token_mask: torch.BoolTensor | None = None
    steps_taken: torch.LongTensor | None = None
    model_calls: torch.LongTensor | None = None
    num_forward_passes: int | None = None


def gumbel_noise(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    uniform = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
    return -torch.log(-torch.log(uniform.clamp(min=1e-20, max=1 - 1e-12)))


def confidence_and_uncertainty(probs: torch.Tensor, order: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position confidence score (higher = commit earlier) and uncertainty (for the threshold rule)."""
    if order == "top_prob":
        top = probs.max(-1).values
        return top.clamp(min=1e-30).log(), 1 - top
    if order == "prob_diff":
        top2 = torch.topk(probs, 2, dim=-1).values
        diff = top2[..., 0] - top2[..., 1]
        return diff.clamp(min=1e-30).log(), 1 - diff
    if order == "entropy":
        entropy = -(probs * probs.clamp(min=1e-30).log()).sum(-1)
        return -entropy, entropy
    raise ValueError(f"No confidence for unmasking order {order!r}.")


def rank_within_rows(scores: torch.Tensor) -> torch.Tensor:
    """Rank (0 = highest) of every entry among its row; ties broken by position, deterministically."""
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(scores.shape[-1], device=scores.device).expand_as(order))
    return ranks


class MaskedDenoisingGenerationMixin(NonAutoregressiveGenerationMixin):
    """`generate` for models that predict clean tokens at `[MASK]` positions.

    A family mixin subclasses this and implements `_denoising_logits(input_ids, attention_mask, t)` (the model's
    logits for the given rows at times `t`, one per row) and sets `_time_conditioned` when logits depend on `t`.
    The model class lists `generation_config_class`.
    """

    generation_config_class = MaskedGenerationConfig

    # ---- family hooks -------------------------------------------------------------------------------------
    def _denoising_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError

    def _mask_probability(self, t: torch.Tensor) -> torch.Tensor:
        """Masking probability at time t (the ancestral sampler's P_t). Linear unless the family has a schedule."""
        return t

    def _time_from_masked_fraction(self, fraction: torch.Tensor) -> torch.Tensor:
        return fraction

    @property
    def _time_conditioned(self) -> bool:
        return False

    # ---- generate ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        generation_config: MaskedGenerationConfig | None = None,
        logits_processor: LogitsProcessorList | list | None = None,
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> MaskedGenerationOutput | torch.LongTensor:
        r"""
        Fills the `[MASK]` positions of a canvas built from left-padded prompts, by iterative denoising.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch, prompt_length)`, *optional*): Left-padded prompts,
                as a tokenizer returns them (no special tokens needed). `None` for unconditional generation.
            attention_mask (`torch.Tensor`, *optional*): 1 on real tokens, 0 on padding.
            generation_config ([`MaskedGenerationConfig`], *optional*): Overrides the model's generation config.
            logits_processor (`LogitsProcessorList`, *optional*): transformers logits processors applied before the
                token choice (greedy or sampled) and the confidence scores, and before the temperature / top-k /
                top-p warpers. Each is called as `processor(input_ids, scores)` with `scores` `(N, vocab)`, the
                logits of the N positions decided this step, and `input_ids` `(N, length)`, the canvas row of
                each of them.
            generator (`torch.Generator`, *optional*): Private source of randomness (on the model's device);
                `seed=` builds one. Without either, draws use torch's global RNG (`transformers.set_seed`).
            kwargs: Any field of the generation config (`max_new_tokens=16`, `num_steps=8`, `do_sample=True`, ...).

        Returns:
            [`MaskedGenerationOutput`] (or only the sequences when `return_dict_in_generate=False`).

        Example:

        ```python
        >>> batch = tokenizer(["0 1 1 2 2 3 0 3"], return_tensors="pt", padding=True)
        >>> out = model.generate(**batch, max_new_tokens=14, num_steps=14)  # greedy; do_sample=True samples
        >>> tokenizer.batch_decode(out.sequences[:, out.output_start_idx:], skip_special_tokens=True)
        ```
        """
        config = self._prepare_generation_config(generation_config, kwargs)
        device = self.device
        canvas, canvas_mask, start = self._prepare_canvas(input_ids, attention_mask, config, device)
        generator = self._prepare_generator(config.seed, generator, device)
        processors, warpers = self._prepare_logits_processor(config, logits_processor)
        block_ids, num_blocks = self._prepare_blocks(canvas, canvas_mask, start, config)
        steps_per_block = self._split_steps(canvas, canvas_mask, start, config, num_blocks)

        batch_size = canvas.shape[0]
        maskable = canvas.eq(config.mask_token_id) & canvas_mask.bool()  # the only positions that ever change
        state = _DenoisingState(
            maskable_count=maskable.sum(-1),
            steps_taken=torch.zeros(batch_size, dtype=torch.long, device=device),
            model_calls=torch.zeros(batch_size, dtype=torch.long, device=device),
            cached_logits=None,
            stale=torch.ones(batch_size, dtype=torch.bool, device=device),
            logits_processor=processors,
            logits_warper=warpers,
        )
        sampler = SAMPLER_CLASSES[config.sampler](self, config, generator, state)
        history: list[torch.Tensor] = []
        for block in range(num_blocks):
            in_block = block_ids.le(block) & canvas_mask.bool()
            num_steps = steps_per_block[block]
            for step in range(num_steps):
                candidates = canvas.eq(config.mask_token_id) & in_block
                if not bool(candidates.any()):
                    break
                state.steps_taken += candidates.any(-1).long()
                canvas = sampler.step(canvas, canvas_mask, candidates, step, num_steps)
                if config.output_history:
                    history.append(canvas.clone())

        if not config.return_dict_in_generate:
            return canvas
        return MaskedGenerationOutput(
            sequences=canvas,
            history=tuple(history) if config.output_history else None,
            output_start_idx=start,
            new_token_mask=maskable,
            steps_taken=state.steps_taken,
            model_calls=state.model_calls,
            num_forward_passes=state.num_forward_passes,
        )

    # ---- preparation ------------------------------------------------------------------------------------------
    def _prepare_generation_config(
        self, generation_config: MaskedGenerationConfig | None, overrides: dict[str, Any]
    ) -> MaskedGenerationConfig:
        config = super()._prepare_generation_config(generation_config, overrides)
        config = config.with_defaults(self.config)
        if config.mask_token_id is None:
            raise ValueError(
                "Masked generation needs a mask_token_id (in the model config or the generation config)."
            )
        if config.sampler == "ancestral" and config.threshold is not None:
            raise ValueError("threshold applies to the 'unmask' sampler, not to 'ancestral'.")
        if not config.do_sample:
            # as transformers warns: sampling knobs given to a greedy call do nothing (temperature=0 is the
            # pre-do_sample spelling of greedy, so it stays quiet)
            ignored = [
                f"{key}={overrides[key]}"
                for key in ("temperature", "top_k", "top_p")
                if overrides.get(key) is not None and not (key == "temperature" and overrides[key] in (0, 1))
            ]
            if ignored:
                logger.warning_once(
                    f"do_sample is not True, so {', '.join(ignored)} has no effect: tokens are chosen greedily. "
                    "Pass do_sample=True to sample."
                )
        return config

    def _prepare_canvas(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        config: MaskedGenerationConfig,
        device: torch.device,
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """`prompt [BOS] [MASK]*n` per row, left-padded; returns (ids, attention mask, first new column)."""
        if input_ids is None:
            rows = [torch.empty(0, dtype=torch.long)] * config.num_return_sequences
            unconditional = True
        else:
            if input_ids.dim() == 1:
                input_ids = input_ids[None]
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids {tuple(input_ids.shape)}."
                )
            check_vocabulary(input_ids, attention_mask, self.config.vocab_size)
            ids_cpu, mask_cpu = input_ids.detach().cpu().long(), attention_mask.detach().cpu().bool()
            rows = [ids_cpu[i][mask_cpu[i]] for i in range(len(ids_cpu))]
            rows = [row for row in rows for _ in range(config.num_return_sequences)]
            unconditional = False

        prompt_width = max((len(row) for row in rows), default=0)
        bos_extra = 0 if config.prompt_layout == "none" else 1
        new_tokens = config.max_new_tokens
        if config.max_length is not None:
            new_tokens = config.max_length - prompt_width - bos_extra
            if new_tokens < 0:
                raise ValueError(
                    f"max_length={config.max_length} is shorter than the longest prompt ({prompt_width} tokens"
                    f"{' plus [BOS]' if bos_extra else ''})."
                )
        if unconditional and new_tokens == 0:
            raise ValueError("Unconditional generation needs max_new_tokens > 0 (or max_length).")

        bos, mask = config.bos_token_id, config.mask_token_id
        if new_tokens > 0 and config.prompt_layout != "none" and bos is None:
            raise ValueError(f"prompt_layout={config.prompt_layout!r} needs a bos_token_id.")
        laid_out = []
        for row in rows:
            if (
                new_tokens > 0
                and config.prompt_layout == "seq2seq"
                and (len(row) == 0 or int(row[-1]) != bos)
            ):
                row = torch.cat([row, row.new_tensor([bos])])
            elif new_tokens > 0 and config.prompt_layout == "lm" and (len(row) == 0 or int(row[0]) != bos):
                row = torch.cat([row.new_tensor([bos]), row])
            laid_out.append(torch.cat([row, row.new_full((new_tokens,), mask)]))

        width = max(len(row) for row in laid_out)
        limit = self.config.max_position_embeddings
        if width > limit:
            raise ValueError(
                f"The longest prompt needs {width - new_tokens} positions (with [BOS] where added) and max_new_tokens="
                f"{new_tokens} more: {width} in all, over the model's max_position_embeddings={limit}. Shorten the "
                "prompt or ask for fewer new tokens."
            )
        pad = config.pad_token_id if config.pad_token_id is not None else 0
        canvas, canvas_mask = pad_left(laid_out, pad)
        canvas_mask = canvas_mask.long()
        if not bool(canvas_mask.any(-1).all()):
            raise ValueError("A row of the canvas is empty: give a non-empty prompt or max_new_tokens > 0.")
        return canvas.to(device), canvas_mask.to(device), width - new_tokens

    def _prepare_logits_processor(
        self, config: MaskedGenerationConfig, logits_processor: LogitsProcessorList | list | None
    ) -> tuple[LogitsProcessorList, LogitsProcessorList]:
        """The caller's processors (greedy and sampling), and the warpers that only sampling applies, in the order
        of transformers' `GenerationMixin._get_logits_processor`."""
        # a copy: the caller's list is left as it was
        processors = LogitsProcessorList(logits_processor or [])
        warpers = build_logits_warpers(config.do_sample, config.temperature, config.top_k, config.top_p)
        return processors, warpers

    def _prepare_blocks(
        self, canvas: torch.Tensor, canvas_mask: torch.Tensor, start: int, config: MaskedGenerationConfig
    ) -> tuple[torch.Tensor, int]:
        """Block index of every column: semi-AR blocks over the new tokens (or the whole canvas when infilling);
        masks to the left of the first block belong to it."""
        width = canvas.shape[1]
        region_start = start if start < width else 0
        region = width - region_start
        if config.block_size is None or config.block_size >= region:
            return torch.zeros(width, dtype=torch.long, device=canvas.device)[None].expand_as(canvas), 1
        if region % config.block_size != 0:
            raise ValueError(
                f"block_size={config.block_size} must divide the number of generated positions ({region})."
            )
        columns = torch.arange(width, device=canvas.device)
        block_ids = ((columns - region_start).clamp(min=0) // config.block_size)[None].expand_as(canvas)
        return block_ids, region // config.block_size

    def _split_steps(
        self,
        canvas: torch.Tensor,
        canvas_mask: torch.Tensor,
        start: int,
        config: MaskedGenerationConfig,
        num_blocks: int,
    ) -> list[int]:
        masks = canvas.eq(config.mask_token_id) & canvas_mask.bool()
        total = max(int(masks.sum(-1).max()), 1)  # the most positions any row has to fill
        if config.num_steps is None:
            if config.sampler == "ancestral":
                raise ValueError("The ancestral sampler needs num_steps.")
            # one token per step: the most masks any row has in a block
            per_block = math.ceil(total / num_blocks)
            return [max(per_block, 1)] * num_blocks
        # Steps beyond this only re-run the model over a finished canvas (the ancestral sampler does not stop
        # early): a typo such as num_steps=1e8 would run for hours.
        limit = max(MAX_STEPS, MAX_STEPS_PER_POSITION * total)
        if config.num_steps > limit:
            raise ValueError(
                f"num_steps={config.num_steps} is more than this generation can use: at most {limit} (the larger of "
                f"{MAX_STEPS} and {MAX_STEPS_PER_POSITION} per position to fill; {total} to fill here)."
            )
        if config.num_steps < num_blocks:
            raise ValueError(
                f"num_steps={config.num_steps} is fewer than the {num_blocks} blocks of block_size={config.block_size}: "
                "every block needs at least one step."
            )
        base, extra = divmod(config.num_steps, num_blocks)
        return [base + (1 if block < extra else 0) for block in range(num_blocks)]


@dataclass
class _DenoisingState:
    maskable_count: torch.Tensor
    steps_taken: torch.Tensor
    model_calls: torch.Tensor
    cached_logits: torch.Tensor | None
    stale: torch.Tensor
    logits_processor: LogitsProcessorList  # the caller's, applied to every token choice
    logits_warper: LogitsProcessorList  # temperature / top-k / top-p, applied when sampling
    num_forward_passes: int = 0


class MaskedSampler:
    """One denoising step of a sampler, as DiffusionGemma structures its generation: built once per `generate`
    call with the model, the resolved config, the random source and the run's state; `step` turns a canvas into
    the next one. A new sampler subclasses this, implements `step` and is listed in `SAMPLER_CLASSES` (and in the
    family config's `_allowed_samplers`)."""

    def __init__(
        self,
        model: "MaskedDenoisingGenerationMixin",
        config: MaskedGenerationConfig,
        generator: torch.Generator | None,
        state: "_DenoisingState",
    ):
        self.model = model
        self.config = config
        self.generator = generator
        self.state = state

    def step(
        self,
        canvas: torch.Tensor,
        canvas_mask: torch.Tensor,
        candidates: torch.Tensor,
        step: int,
        num_steps: int,
    ) -> torch.Tensor:
        """Step `step` of `num_steps` on the masked positions in `candidates` `(batch, length)`; returns the new
        canvas (committed positions hold a token, the others are unchanged)."""
        raise NotImplementedError

    def logits(
        self,
        canvas: torch.Tensor,
        canvas_mask: torch.Tensor,
        t: torch.Tensor,
        needed: torch.Tensor,
        reuse: bool,
    ) -> torch.Tensor:
        """Logits `(batch, length, vocab)` (float32, suppressed tokens at -inf) for the rows in `needed`; rows whose
        cached logits are still valid (`reuse` and not stale) are not evaluated again."""
        state, config = self.state, self.config
        evaluate = needed & (state.stale | (not reuse) | (state.cached_logits is None))
        if bool(evaluate.any()):
            rows = evaluate.nonzero().squeeze(-1)
            logits = self.model._denoising_logits(canvas[rows], canvas_mask[rows], t[rows]).float()
            suppress = [config.mask_token_id] + list(config.suppress_tokens or [])
            logits[..., suppress] = float("-inf")
            if state.cached_logits is None:
                state.cached_logits = logits.new_zeros(canvas.shape + (logits.shape[-1],))
            state.cached_logits[rows] = logits
            state.model_calls[rows] += 1
            state.num_forward_passes += 1
            state.stale[rows] = False
        return state.cached_logits

    def candidate_scores(
        self, canvas: torch.Tensor, candidates: torch.Tensor, logits: torch.Tensor
    ) -> tuple[torch.LongTensor, torch.Tensor]:
        """The logits `(N, vocab)` of the N positions in `candidates` after the caller's logits processors, and
        the `input_ids` the processors see: the canvas row of each position (empty when there is no caller
        processor: the warpers do not read it, and N copies of the canvas would cost N x length)."""
        scores = logits[candidates]  # a copy: processors may write into it without touching cached logits
        if not self.state.logits_processor:
            return canvas.new_empty((scores.shape[0], 0)), scores
        input_ids = canvas[candidates.nonzero()[:, 0]]
        return input_ids, self.state.logits_processor(input_ids, scores)

    def choose_tokens(self, scores: torch.Tensor, input_ids: torch.LongTensor) -> torch.LongTensor:
        return choose_tokens(
            scores, input_ids, self.config.do_sample, self.state.logits_warper, self.generator
        )


class UnmaskSampler(MaskedSampler):
    """MaskGIT-style: each step commits the most confident masked positions (in `unmasking_order`), at least
    `ceil(masked / steps_left)` of them, more under the `threshold` rule."""

    def step(self, canvas, canvas_mask, candidates, step, num_steps):
        config, state, generator = self.config, self.state, self.generator
        masked = canvas.eq(config.mask_token_id) & canvas_mask.bool()
        fraction = masked.sum(-1).float() / state.maskable_count.clamp(min=1).float()
        t = self.model._time_from_masked_fraction(fraction)
        # t is a function of the canvas, so a row's logits stay valid until its canvas changes
        logits = self.logits(canvas, canvas_mask, t, candidates.any(-1), reuse=True)
        candidate_ids, candidate_logits = self.candidate_scores(canvas, candidates, logits)

        # score every candidate position; higher = committed earlier
        if config.unmasking_order == "random":
            scores = torch.rand(
                candidate_logits.shape[:1], generator=generator, device=canvas.device, dtype=torch.float64
            )
            uncertainty = None
        else:
            probs = candidate_logits.softmax(-1)
            scores, uncertainty = confidence_and_uncertainty(probs, config.unmasking_order)
            scores = scores.double()
            if config.confidence_temperature > 0:
                scores = scores / config.confidence_temperature + gumbel_noise(
                    scores.shape, generator, canvas.device
                )
        full_scores = torch.full(canvas.shape, float("-inf"), dtype=torch.float64, device=canvas.device)
        full_scores[candidates] = scores
        ranks = rank_within_rows(full_scores)

        remaining = candidates.sum(-1)
        steps_left = num_steps - step
        count = torch.div(remaining + steps_left - 1, steps_left, rounding_mode="floor")  # ceil
        if config.threshold is not None:
            full_uncertainty = torch.zeros(canvas.shape, dtype=torch.float64, device=canvas.device)
            full_uncertainty[candidates] = uncertainty.double()
            # uncertainties in commit order; a position is taken while the ones before it sum below the threshold
            order = torch.argsort(ranks, dim=-1)
            sorted_uncertainty = full_uncertainty.gather(-1, order)
            before = sorted_uncertainty.cumsum(-1) - sorted_uncertainty
            by_threshold = (before < config.threshold).long().cumprod(-1).sum(-1)
            count = torch.maximum(count, by_threshold.clamp(min=1))
        count = torch.minimum(count, remaining)
        commit = candidates & (ranks < count[:, None])

        # tokens only for the committed positions: the confidences above do not depend on them, and sampling
        # (softmax, top-p's sort over the vocabulary) at every masked position would cost steps x positions
        chosen = commit[candidates]
        tokens = self.choose_tokens(candidate_logits[chosen], candidate_ids[chosen])
        new_canvas = canvas.clone()
        new_canvas[commit] = tokens
        state.stale |= commit.any(-1)
        return new_canvas


class AncestralSampler(MaskedSampler):
    """The reverse process of the absorbing diffusion from t = 1 towards 0 (see the module docstring); the last
    step fills what is left with the argmax."""

    def step(self, canvas, canvas_mask, candidates, step, num_steps):
        config, state, model = self.config, self.state, self.model
        dt = (1 - 1e-5) / num_steps
        t_value = 1.0 - step * dt
        t = torch.full((canvas.shape[0],), t_value, dtype=torch.float32, device=canvas.device)
        reuse = bool(config.use_cache_trick) and not model._time_conditioned
        logits = self.logits(canvas, canvas_mask, t, candidates.any(-1), reuse=reuse)
        new_canvas = canvas.clone()
        if step == num_steps - 1:
            # last step: fill every remaining mask with the most likely token
            _, candidate_logits = self.candidate_scores(canvas, candidates, logits)
            new_canvas[candidates] = candidate_logits.argmax(-1)
        else:
            s = torch.tensor(t_value - dt, dtype=torch.float64)
            p_t = model._mask_probability(torch.tensor(t_value, dtype=torch.float64))
            p_s = model._mask_probability(s)
            # q(token v) = p(v) (P_t - P_s), q([MASK]) = P_s, normalised by P_t: a categorical over vocab + [MASK],
            # drawn as "unmask with probability (P_t - P_s) / P_t, then a token from p". Whether a position
            # unmasks does not depend on its token, so tokens are drawn (and the logits processed) only where one
            # does, about 1 / steps of the masks: the same distribution at a fraction of the cost.
            draws = torch.rand(
                (int(candidates.sum()),), generator=self.generator, device=canvas.device, dtype=torch.float64
            )
            unmask = candidates.clone()
            unmask[candidates] = draws < float((p_t - p_s) / p_t)
            if bool(unmask.any()):
                candidate_ids, candidate_logits = self.candidate_scores(canvas, unmask, logits)
                new_canvas[unmask] = self.choose_tokens(candidate_logits, candidate_ids)
        state.stale |= new_canvas.ne(canvas).any(-1)
        return new_canvas


SAMPLER_CLASSES: dict[str, type[MaskedSampler]] = {"unmask": UnmaskSampler, "ancestral": AncestralSampler}


__all__ = [
    "MaskedGenerationConfig",
    "MaskedGenerationOutput",
    "MaskedDenoisingGenerationMixin",
    "MaskedSampler",
    "UnmaskSampler",
    "AncestralSampler",
    "SAMPLER_CLASSES",
    "choose_tokens",
]
