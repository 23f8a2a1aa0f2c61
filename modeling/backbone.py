"""The pre-LayerNorm rotary transformer shared by every xlm_hf family.

Reading order: positions and packed sequences -> neighbour embeddings -> rotary embedding -> attention-mask
builder -> attention -> MLP -> noise-level embedding (for the diffusion families) -> block -> the `PreTrainedModel`
base class -> the bare transformer `XLMModel`, the base model every family's head model holds as `self.model`.

Hub-side file: it imports only torch, transformers and sibling files, so that `save_pretrained` can copy
it next to a checkpoint and `AutoModel.from_pretrained(..., trust_remote_code=True)` works without xlm_hf.
"""

import json
import math
import os
from collections.abc import Callable

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import GENERATION_CONFIG_NAME, cached_file
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import is_tracing

from .configuration_backbone import XLMBackboneConfig


def positions_from_padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of every token counted over real tokens only, so left padding never shifts a prompt.

    `attention_mask` is `(batch, length)` with 1 on real tokens. Padding positions get 0 (they are masked anyway).
    """
    mask = attention_mask.long()
    return (mask.cumsum(-1) - 1).clamp(min=0) * mask


def packed_sequence_ids(position_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Index (from 1) of the packed sequence each token belongs to, from where `position_ids` restart.

    A sequence starts at every real token whose position is not one more than the previous real token's, as in
    the rows of transformers' `DataCollatorWithFlattening` (positions `0..n1-1, 0..n2-1, ...`). Padding never
    splits a sequence, so left or right padding with positions counted over real tokens gives one sequence per
    row. Padding before the first real token gets 0. No data-dependent control flow: safe to trace.
    """
    real = attention_mask.bool()
    columns = torch.arange(position_ids.shape[-1], device=position_ids.device).expand_as(position_ids)
    last_real = torch.where(real, columns, -1).cummax(dim=-1).values
    previous_real = torch.cat([torch.full_like(last_real[:, :1], -1), last_real[:, :-1]], dim=-1)
    previous_position = position_ids.gather(-1, previous_real.clamp(min=0))
    starts = real & ((previous_real < 0) | (position_ids != previous_position + 1))
    return starts.long().cumsum(dim=-1)


def shift_along_sequence(values: torch.Tensor, offset: int, fill_value: float | int = 0) -> torch.Tensor:
    """`values` (`(batch, length, ...)`) moved so that position i holds what position `i + offset` held; positions
    whose neighbour falls outside the row get `fill_value`."""
    length = values.shape[1]
    trailing = [0, 0] * (values.dim() - 2)
    if offset < 0:
        return nn.functional.pad(values, [*trailing, -offset, 0], value=fill_value)[:, :length]
    return nn.functional.pad(values, [*trailing, 0, offset], value=fill_value)[:, offset:]


class XLMNeighborEmbedding(nn.Module):
    """Adds to each position's embedding a projection of its `window` left and right neighbours' embeddings
    (`config.neighbor_token_window`). Padding and the tokens of other packed sequences count as absent (zeros), so
    the result does not depend on padding or packing."""

    def __init__(self, config: XLMBackboneConfig):
        super().__init__()
        self.window = config.neighbor_token_window
        self.neighbor_proj = nn.Linear(2 * self.window * config.hidden_size, config.hidden_size, bias=False)

    def forward(
        self,
        embeddings: torch.Tensor,
        attention_mask: torch.Tensor,
        sequence_ids: torch.Tensor | None,
    ) -> torch.Tensor:
        present = attention_mask.to(embeddings.dtype).unsqueeze(-1)
        visible_embeddings = embeddings * present
        neighbors = []
        for offset in [*range(-self.window, 0), *range(1, self.window + 1)]:
            neighbor = shift_along_sequence(visible_embeddings, offset)
            if sequence_ids is not None:
                same_sequence = shift_along_sequence(sequence_ids, offset, fill_value=-1) == sequence_ids
                neighbor = neighbor * same_sequence.unsqueeze(-1).to(neighbor.dtype)
            neighbors.append(neighbor)
        return embeddings + self.neighbor_proj(torch.cat(neighbors, dim=-1))


class XLMRotaryEmbedding(nn.Module):
    """Rotary position embedding (rotate-half / NeoX layout) on the first `rotary_dim` dimensions of each head.

    The frequencies are recomputed from `rotary_dim` on every call: they are a handful of numbers, and holding
    them in no buffer keeps loading from meta-device initialisation trivially correct.
    """

    def __init__(self, config: XLMBackboneConfig):
        super().__init__()
        self.rotary_dim = config.rotary_dim
        self.base = config.rope_theta

    @torch.no_grad()
    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        exponent = torch.arange(0, self.rotary_dim, 2, device=position_ids.device, dtype=torch.float32)
        inv_freq = 1.0 / (self.base ** (exponent / self.rotary_dim))
        freqs = position_ids.float()[..., None] * inv_freq  # (batch, length, rotary_dim / 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(
    query: torch.Tensor, key: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotates the first `cos.shape[-1]` dims of each head of `query`/`key` `(batch, heads, length, head_dim)`."""
    rotary_dim = cos.shape[-1]
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # broadcast over heads

    def rotate(x: torch.Tensor) -> torch.Tensor:
        x_rot, x_pass = x[..., :rotary_dim], x[..., rotary_dim:]
        return torch.cat((x_rot * cos + rotate_half(x_rot) * sin, x_pass), dim=-1)

    return rotate(query), rotate(key)


def build_attention_mask(
    attention_mask: torch.Tensor,
    query_length: int,
    is_causal: bool,
    dtype: torch.dtype,
    attn_implementation: str,
    sequence_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Turns a `(batch, key_length)` padding mask into the 4-D mask the attention functions expect.

    Queries are the last `query_length` keys (a KV cache holds the earlier ones). A query may attend to real
    keys (and, if causal, only earlier ones) of its own packed sequence (`sequence_ids`, `(batch, key_length)`,
    when given) and always to itself, so that a padding query never sees an empty row (which would give NaNs in
    SDPA) while real queries never see padding.
    """
    batch_size, key_length = attention_mask.shape
    past_length = key_length - query_length
    device = attention_mask.device
    allowed = attention_mask.bool()[:, None, None, :].expand(batch_size, 1, query_length, key_length)
    query_index = torch.arange(query_length, device=device)[:, None] + past_length
    key_index = torch.arange(key_length, device=device)[None, :]
    if is_causal:
        allowed = allowed & (key_index <= query_index)
    if sequence_ids is not None:
        query_sequence = sequence_ids[:, past_length:]
        allowed = allowed & (query_sequence[:, None, :, None] == sequence_ids[:, None, None, :])
    allowed = allowed | (key_index == query_index)
    if attn_implementation == "eager":
        # eager adds the mask to the scores
        return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )
    return allowed


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


class XLMAttention(nn.Module):
    """Multi-head attention with separate q/k/v/o projections (the names PEFT targets by default)."""

    def __init__(self, config: XLMBackboneConfig, layer_idx: int, is_causal: bool):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.is_causal = is_causal
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_key_value_groups = 1
        self.scaling = self.head_dim**-0.5
        inner = self.num_heads * self.head_dim
        self.q_proj = nn.Linear(config.hidden_size, inner, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, inner, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, inner, bias=False)
        self.o_proj = nn.Linear(inner, config.hidden_size, bias=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor,
        cache: Cache | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, length, _ = hidden_states.shape
        shape = (batch_size, length, self.num_heads, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)

        cos, sin = position_embeddings
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.config.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            is_causal=False,  # causality is already in the explicit mask
            # only eager returns weights; transformers' sdpa function warns when asked for them
            output_attentions=output_attentions,
        )
        output = self.o_proj(output.reshape(batch_size, length, -1))
        return output, weights


class XLMMLP(nn.Module):
    def __init__(self, config: XLMBackboneConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=True)
        self.act_fn = ACT2FN[config.hidden_act]
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=True)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.up_proj(hidden_states)))


class XLMTimestepEmbedding(nn.Module):
    """Embeds scalar noise levels (any shape): sinusoid (256 features) -> MLP -> SiLU, as in DiT / MDLM."""

    frequency_dim = 256

    def __init__(self, config: XLMBackboneConfig):
        super().__init__()
        self.linear_1 = nn.Linear(self.frequency_dim, config.time_embedding_dim, bias=True)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(config.time_embedding_dim, config.time_embedding_dim, bias=True)

    def forward(self, noise_level: torch.Tensor) -> torch.Tensor:
        half = self.frequency_dim // 2
        freqs = torch.exp(
            -math.log(10000.0) * torch.arange(half, device=noise_level.device, dtype=torch.float32) / half
        )
        args = noise_level.float()[..., None] * freqs
        features = torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(self.linear_1.weight.dtype)
        return self.act(self.linear_2(self.act(self.linear_1(features))))


class XLMAdaLNModulation(nn.Linear):
    """adaLN's projection of the noise-level embedding to shifts, scales (and gates). Its own class so that
    `_init_weights` can zero it: transformers initialises a module of custom code only when the module holds
    parameters itself, so a rule keyed on the block or the model around it would never run."""


def modulate(hidden_states: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN; `shift`/`scale` are `(batch, 1, hidden)` (one noise level per row) or `(batch, length, hidden)`."""
    return hidden_states * (1 + scale) + shift


class XLMBlock(GradientCheckpointingLayer):
    """Pre-LN block: x + attn(LN(x)), then x + mlp(LN(x)); with adaLN when the config asks for time conditioning.

    With adaLN the residual stream keeps the un-modulated `x` (as in DiT). The original xlm-core replaced it by
    the modulated, normalised input after attention, a quirk we do not reproduce (see docs/quirks.md).
    """

    def __init__(self, config: XLMBackboneConfig, layer_idx: int, is_causal: bool):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = XLMAttention(config, layer_idx, is_causal)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = XLMMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.adaln_modulation = (
            XLMAdaLNModulation(config.time_embedding_dim, 6 * config.hidden_size, bias=True)
            if config.time_conditioning
            else None
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor,
        time_embedding: torch.Tensor | None = None,
        cache: Cache | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.adaln_modulation is not None:
            shift_attn, scale_attn, gate_attn, shift_mlp, scale_mlp, gate_mlp = self.adaln_modulation(
                time_embedding
            ).chunk(6, dim=-1)
        normed = self.attention_norm(hidden_states)
        if self.adaln_modulation is not None:
            normed = modulate(normed, shift_attn, scale_attn)
        attn_output, attn_weights = self.self_attn(
            normed, position_embeddings, attention_mask, cache, output_attentions=output_attentions
        )
        attn_output = self.dropout(attn_output)
        if self.adaln_modulation is not None:
            attn_output = gate_attn * attn_output
        hidden_states = hidden_states + attn_output

        normed = self.mlp_norm(hidden_states)
        if self.adaln_modulation is not None:
            normed = modulate(normed, shift_mlp, scale_mlp)
        mlp_output = self.dropout(self.mlp(normed))
        if self.adaln_modulation is not None:
            mlp_output = gate_mlp * mlp_output
        return hidden_states + mlp_output, attn_weights


# No trained floating-point weight comes near this. Random bytes read as float32 or bfloat16 have exponents spread
# evenly over their range, so about a third of them exceed it (and 1 in 256 is NaN or inf): a tensor overwritten
# with junk is caught unless it holds only a handful of values.
ABSURD_WEIGHT_MAGNITUDE = 1e12
# The arguments of `from_pretrained` that say where and how to fetch a file from the Hub.
HUB_KWARGS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision")
# How many tensor names an error lists before it says "and N more".
MAX_NAMES_IN_ERROR = 8


def _list_names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_IN_ERROR])
    return shown + (f" and {len(names) - MAX_NAMES_IN_ERROR} more" if len(names) > MAX_NAMES_IN_ERROR else "")


def damaged_weights(model: nn.Module) -> list[str]:
    """Names (with what is wrong) of the floating-point tensors that hold NaN, inf or absurdly large values."""
    damaged = []
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point() or tensor.numel() == 0 or tensor.device.type == "meta":
            continue
        peak = tensor.detach().abs().amax().item()  # NaN propagates through amax
        if not math.isfinite(peak):
            damaged.append(f"{name} (NaN or inf)")
        elif peak > ABSURD_WEIGHT_MAGNITUDE:
            damaged.append(f"{name} (values up to {peak:.1e})")
    return damaged


def weights_report_problems(loading_info: dict, ignore_mismatched_sizes: bool) -> list[str]:
    """transformers' loading report (`output_loading_info=True`) as sentences, one per kind of problem."""
    problems = []
    if loading_info["missing_keys"]:
        missing = _list_names(sorted(loading_info["missing_keys"]))
        problems.append(f"missing from the file (they would be left randomly initialised): {missing}")
    if loading_info["unexpected_keys"]:
        unexpected = _list_names(sorted(loading_info["unexpected_keys"]))
        problems.append(f"in the file but not in the model (they would be dropped): {unexpected}")
    if loading_info["mismatched_keys"] and not ignore_mismatched_sizes:
        shapes = [
            f"{key} {tuple(file_shape)} in the file, {tuple(model_shape)} in the model"
            for key, file_shape, model_shape in sorted(loading_info["mismatched_keys"])
        ]
        problems.append(f"of another shape: {_list_names(shapes)}")
    return problems


def check_generation_config_file(pretrained_model_name_or_path: str | os.PathLike, **hub_kwargs) -> None:
    """Refuses a `generation_config.json` that is not a JSON object: transformers' loaders take an unreadable file
    for a missing one and fall back to defaults, which silently changes what the model generates."""
    subfolder = hub_kwargs.get("subfolder") or ""
    path = os.path.join(pretrained_model_name_or_path, subfolder, GENERATION_CONFIG_NAME)
    if not os.path.isdir(
        pretrained_model_name_or_path
    ):  # a Hub id: the file from the cache (fetched if need be)
        path = cached_file(
            pretrained_model_name_or_path,
            GENERATION_CONFIG_NAME,
            subfolder=subfolder,
            **{key: hub_kwargs[key] for key in HUB_KWARGS if key in hub_kwargs},
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            _raise_exceptions_for_gated_repo=False,
        )
    if path is None or not os.path.isfile(path):
        return
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        content, reason = None, f"is not valid JSON ({error})"
    else:
        reason = f"holds a {type(content).__name__}, not a JSON object"
    if not isinstance(content, dict):
        raise ValueError(
            f"{path} {reason}, so the generation settings saved with the model cannot be read. Restore the file "
            "from the original export, or delete it to generate with the family's defaults."
        )


class XLMPreTrainedModel(PreTrainedModel):
    """Capabilities shared by every family. Each family sets `config_class` on its own subclass.

    `from_pretrained` refuses a checkpoint that would load silently wrong (see its docstring).
    """

    config_class = XLMBackboneConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["XLMBlock"]
    _supports_sdpa = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *model_args,
        allow_incomplete_weights: bool = False,
        allow_non_finite_weights: bool = False,
        **kwargs,
    ):
        r"""
        [`~PreTrainedModel.from_pretrained`] that refuses, with one `ValueError` naming the tensors or the file, a
        checkpoint that would otherwise load silently wrong:

        - weights that do not match the model its `config.json` describes: tensors missing (they would stay random),
          unexpected (they would be dropped) or of another shape, as a renamed tensor or an edited `config.json` (a
          key left out falls back to its default) give. This applies to a checkpoint of this very class (its
          `config.json` lists the class in `architectures`, or lists none). Loading another class's checkpoint (a
          head on a base model's weights), or asking for the report with `output_loading_info=True`, keeps
          transformers' behaviour: the weights that are not in the file are initialised and the report is logged
          (or returned). Mis-shaped weights are refused in every case unless `ignore_mismatched_sizes=True`, as in
          transformers.
        - NaN, inf or absurdly large weights (above 1e12: a damaged file or a diverged training run);
        - a `generation_config.json` that is not a JSON object (transformers would fall back to defaults).

        allow_incomplete_weights (`bool`, *optional*, defaults to `False`):
            Load anyway: missing and mis-shaped weights are initialised fresh, unexpected ones are dropped, and
            transformers' load report lists them. For initialising new weights on purpose, e.g. a fresh head.
        allow_non_finite_weights (`bool`, *optional*, defaults to `False`):
            Skip the check of the weights' values, e.g. to inspect the checkpoint of a diverged run.
        """
        if (
            pretrained_model_name_or_path is not None  # None: weights given as `state_dict=` only
            and cls.can_generate()
            and kwargs.get("generation_config") is None
            and kwargs.get("gguf_file") is None
        ):
            # before loading: the families' generation hooks would take an unreadable file for a missing one
            check_generation_config_file(pretrained_model_name_or_path, **kwargs)
        output_loading_info = kwargs.pop("output_loading_info", False)
        ignore_mismatched_sizes = kwargs.pop("ignore_mismatched_sizes", False)
        # Mis-shaped weights are reported (and refused below) with the others rather than in transformers' own error.
        model, loading_info = super().from_pretrained(
            pretrained_model_name_or_path,
            *model_args,
            ignore_mismatched_sizes=True,
            output_loading_info=True,
            **kwargs,
        )
        where = (
            repr(str(pretrained_model_name_or_path))
            if pretrained_model_name_or_path is not None
            else "the state dict"
        )
        if loading_info["mismatched_keys"] and not (ignore_mismatched_sizes or allow_incomplete_weights):
            strict = True  # as transformers: weights of another shape are an error unless asked for
        else:
            architectures = model.config.architectures
            own_checkpoint = not architectures or cls.__name__ in architectures
            strict = own_checkpoint and not (allow_incomplete_weights or output_loading_info)
        problems = weights_report_problems(loading_info, ignore_mismatched_sizes or allow_incomplete_weights)
        if strict and problems:
            raise ValueError(
                f"The weights of {where} do not match the {cls.__name__} its config describes; tensors "
                + "; tensors ".join(problems)
                + ". The weights file is damaged, or config.json was edited (a key left out falls back to its "
                "default, e.g. num_hidden_layers): restore the folder from its export. To initialise missing weights "
                "on purpose (e.g. a new head), pass allow_incomplete_weights=True."
            )
        if not allow_non_finite_weights and (damaged := damaged_weights(model)):
            raise ValueError(
                f"The weights of {where} hold non-finite or absurdly large values: {_list_names(damaged)}. The "
                "file is damaged or training diverged: restore the folder from its export or use an earlier "
                "checkpoint. To load it anyway (e.g. to inspect it), pass allow_non_finite_weights=True."
            )
        return (model, loading_info) if output_loading_info else model

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        # adaLN starts as the identity: zero shift, zero scale, zero gate (DiT).
        if isinstance(module, XLMAdaLNModulation):
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        if self.config.tie_query_key_init and isinstance(module, nn.Linear):
            # Keyed on the linear layer (its attention block holds no parameters of its own, so transformers would
            # skip a rule keyed on it); q_proj comes first in the block, so it is initialised by now. init.copy_
            # leaves a key projection loaded from a checkpoint as it is.
            for attention in self.modules():
                if isinstance(attention, XLMAttention) and attention.k_proj is module:
                    init.copy_(module.weight, attention.q_proj.weight)


class XLMModel(XLMPreTrainedModel):
    """The bare transformer: token embedding -> N blocks -> final norm. Returns hidden states; the families add
    their heads and hold it as `self.model` (the `base_model_prefix`, so checkpoint keys are `model.…`).

    `is_causal` is fixed per family (ARLM: causal; the others: bidirectional). Positions come from the padding
    mask unless given, so a left-padded prompt has the same positions as the same prompt alone. Given
    `position_ids` that restart within a row mark packed sequences (see [`packed_sequence_ids`]): attention then
    stays within each of them.
    """

    def __init__(self, config: XLMBackboneConfig, is_causal: bool = False, initialize: bool = True):
        r"""
        initialize (`bool`): Whether `post_init` initialises the weights here. A family's model passes `False`: its
            own `post_init` then initialises every weight in one pass, in the order (and so from the same seeded
            random stream) it always has, so seeded runs give the same models as before.
        """
        super().__init__(config)
        self._initialize_in_post_init = initialize
        self.is_causal = is_causal
        self.embed_tokens = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        if config.neighbor_token_window > 0 and is_causal:
            raise ValueError(
                "neighbor_token_window needs a bidirectional family: an autoregressive model decodes with a "
                "key/value cache, which holds no embeddings of earlier tokens. Set neighbor_token_window=0."
            )
        self.embed_neighbors = XLMNeighborEmbedding(config) if config.neighbor_token_window > 0 else None
        self.rotary_emb = XLMRotaryEmbedding(config)
        self.embed_positions = (
            nn.Embedding(config.max_position_embeddings, config.hidden_size)
            if config.absolute_position_embeddings
            else None
        )
        self.time_embedding = XLMTimestepEmbedding(config) if config.time_conditioning else None
        self.layers = nn.ModuleList(
            [XLMBlock(config, layer_idx, is_causal) for layer_idx in range(config.num_hidden_layers)]
        )
        if config.time_conditioning:
            # Final adaLN (shift, scale) replaces the final LayerNorm's affine parameters.
            self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, elementwise_affine=False)
            self.final_adaln_modulation = XLMAdaLNModulation(
                config.time_embedding_dim, 2 * config.hidden_size, bias=True
            )
        else:
            self.norm = (
                nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
                if config.final_layer_norm
                else nn.Identity()
            )
            self.final_adaln_modulation = None
        self.post_init()
        self._initialize_in_post_init = True

    def init_weights(self) -> None:
        if self._initialize_in_post_init:
            super().init_weights()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        noise_level: torch.Tensor | None = None,
        cache: Cache | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast | tuple:
        r"""
        noise_level (`torch.Tensor` of shape `(batch,)` or `(batch, length)`, *optional*):
            Noise level of each row, or of each token (packed sequences with their own levels); required by a
            time-conditioned model, ignored otherwise.
        cache (`Cache`, *optional*):
            Keys and values of earlier tokens; updated in place. `past_key_values` is its deprecated name.
        """
        output_attentions = (
            output_attentions if output_attentions is not None else self.config.output_attentions
        )
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids and inputs_embeds.")
        batch_size, query_length = (input_ids if inputs_embeds is None else inputs_embeds).shape[:2]
        device = (input_ids if inputs_embeds is None else inputs_embeds).device
        past_length = cache.get_seq_length() if cache is not None else 0
        if attention_mask is None:
            attention_mask = torch.ones(
                batch_size, past_length + query_length, dtype=torch.long, device=device
            )
        if attention_mask.shape[-1] != past_length + query_length:
            raise ValueError(
                f"attention_mask covers {attention_mask.shape[-1]} positions but the input has {query_length} new "
                f"tokens after {past_length} cached ones."
            )
        sequence_ids = None
        if position_ids is None:
            position_ids = positions_from_padding_mask(attention_mask)[:, past_length:]
        else:
            position_ids = position_ids.expand(batch_size, -1)
            if past_length == 0:
                # Caller-given positions may pack several sequences into a row. (With a cache the positions of
                # the cached keys are unknown, so, as in transformers, packing is read only without one.)
                sequence_ids = packed_sequence_ids(position_ids, attention_mask)
        check_inputs(input_ids if inputs_embeds is None else None, position_ids, self.config)

        hidden_states = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        if self.embed_neighbors is not None:
            if past_length > 0:
                raise ValueError(
                    "A model with neighbor_token_window > 0 reads whole sequences: pass no cache."
                )
            hidden_states = self.embed_neighbors(hidden_states, attention_mask, sequence_ids)
        if self.embed_positions is not None:
            hidden_states = hidden_states + self.embed_positions(position_ids)
        time_embedding = None
        if self.time_embedding is not None:
            if noise_level is None:
                raise ValueError(
                    "This model is time-conditioned: pass `noise_level` (one value per example)."
                )
            if noise_level.dim() == 2 and noise_level.shape[-1] == query_length and query_length > 1:
                time_embedding = self.time_embedding(noise_level)  # one level per token
            else:
                time_embedding = self.time_embedding(noise_level.reshape(batch_size, 1))
        position_embeddings = self.rotary_emb(position_ids, hidden_states.dtype)
        mask = build_attention_mask(
            attention_mask,
            query_length,
            self.is_causal,
            hidden_states.dtype,
            self.config._attn_implementation,
            sequence_ids=sequence_ids,
        )

        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states, weights = layer(
                hidden_states,
                position_embeddings,
                mask,
                time_embedding,
                cache,
                output_attentions=output_attentions,
            )
            if output_attentions:
                all_attentions += (weights,)

        hidden_states = self.norm(hidden_states)
        if self.final_adaln_modulation is not None:
            shift, scale = self.final_adaln_modulation(time_embedding).chunk(2, dim=-1)
            hidden_states = modulate(hidden_states, shift, scale)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        output = BaseModelOutputWithPast(
            last_hidden_state=hidden_states,
            cache=cache,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )
        return output if return_dict else output.to_tuple()


def check_inputs(
    input_ids: torch.Tensor | None, position_ids: torch.Tensor, config: XLMBackboneConfig
) -> None:
    """One clear error for ids the embedding cannot look up and for positions past the model's length (instead of
    an index error deep inside torch).

    Eager mode only, with one host sync for all values: the check reads tensors on the host, which
    `torch.export` / `torch.compile(fullgraph=True)` cannot trace (the graph then just indexes).
    """
    if input_ids is not None and input_ids.numel() == 0:
        raise ValueError("input_ids is empty: give at least one token per row.")
    if is_tracing(position_ids) or position_ids.numel() == 0:
        return
    values = [position_ids.max()]
    if input_ids is not None:
        values += [input_ids.min(), input_ids.max()]
    highest_position, *id_range = torch.stack(values).tolist()
    if id_range and (id_range[0] < 0 or id_range[1] >= config.vocab_size):
        bad = id_range[0] if id_range[0] < 0 else id_range[1]
        raise ValueError(
            f"input_ids contains token id {bad}, outside the model's vocabulary [0, {config.vocab_size}). "
            "Was the text tokenized with this checkpoint's tokenizer?"
        )
    if highest_position >= config.max_position_embeddings:
        raise ValueError(
            f"The sequence needs position {highest_position} but the model was built for at most "
            f"max_position_embeddings={config.max_position_embeddings} positions. Shorten the prompt or ask for "
            "fewer new tokens."
        )


__all__ = [
    "XLMPreTrainedModel",
    "XLMModel",
    "XLMBlock",
    "XLMAttention",
    "XLMMLP",
    "XLMRotaryEmbedding",
    "XLMTimestepEmbedding",
    "apply_rotary_pos_emb",
    "build_attention_mask",
    "check_inputs",
    "packed_sequence_ids",
    "positions_from_padding_mask",
]
