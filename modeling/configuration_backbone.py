"""Configuration shared by every xlm_hf family: the rotary transformer backbone and the special tokens.

Each family's configuration (`configuration_arlm.py`, `configuration_mlm.py`, ...) subclasses
`XLMBackboneConfig` and adds only what that family needs. This file is Hub-side: it imports only
transformers, so an exported checkpoint loads without xlm_hf installed.
"""

from numbers import Integral, Real

from transformers import PreTrainedConfig
from transformers.activations import ACT2FN
from transformers.utils import logging

logger = logging.get_logger(__name__)

# What a plain prompt is, in every family: `"seq2seq"` a source to answer (`prompt [BOS] answer`; ILM: `[CLS]
# prompt [BOS]`), `"lm"` text to continue (`[BOS] prompt ...`; ILM: `[CLS] [BOS] prompt`, insertions anywhere),
# `"none"` text without `[BOS]` (masked and autoregressive families only).
PROMPT_LAYOUTS = ("seq2seq", "lm", "none")
# The masked and autoregressive families once spelled the option `bos_position`, by where `[BOS]` goes.
BOS_POSITION_TO_PROMPT_LAYOUT = {"after_prompt": "seq2seq", "before_prompt": "lm", "none": "none"}


def check_int(name: str, value, minimum: int, optional: bool = False) -> None:
    """One clear error for a config field that must be an integer of at least `minimum` (a `config.json` edited by
    hand or an override of the wrong type would otherwise fail deep inside the model, or not at all)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def check_number(
    name: str,
    value,
    minimum: float,
    maximum: float | None = None,
    inclusive: bool = True,
    optional: bool = False,
) -> None:
    """One clear error for a config field that must be a real number in `[minimum, maximum]` (or above `minimum`
    when `inclusive` is false)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, Real) or value != value:  # value != value: NaN
        raise ValueError(f"{name} must be a number, got {value!r}.")
    too_small = value < minimum if inclusive else value <= minimum
    if too_small or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if inclusive else f"> {minimum}"
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise ValueError(f"{name} must be {bound}{upper}, got {value!r}.")


def check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}.")


def resolve_prompt_layout(
    prompt_layout: str | None, bos_position: str | None, default: str | None
) -> str | None:
    """`prompt_layout`, or the deprecated `bos_position` translated to it (warned once); giving both is an error."""
    if bos_position is not None:
        if prompt_layout is not None:
            raise ValueError(
                "Got both `bos_position` and `prompt_layout`; they are one option: give only `prompt_layout`."
            )
        if bos_position not in BOS_POSITION_TO_PROMPT_LAYOUT:
            raise ValueError(
                f"bos_position must be one of {tuple(BOS_POSITION_TO_PROMPT_LAYOUT)}, got {bos_position!r}."
            )
        prompt_layout = BOS_POSITION_TO_PROMPT_LAYOUT[bos_position]
        logger.warning_once(
            f"`bos_position` is deprecated: use `prompt_layout` (bos_position={bos_position!r} is "
            f"prompt_layout={prompt_layout!r})."
        )
    if prompt_layout is None:
        return default
    if prompt_layout not in PROMPT_LAYOUTS:
        raise ValueError(f"prompt_layout must be one of {PROMPT_LAYOUTS}, got {prompt_layout!r}.")
    return prompt_layout


class XLMBackboneConfig(PreTrainedConfig):
    r"""
    Arguments of the pre-LayerNorm rotary transformer in `backbone.py`.

    Args:
        vocab_size (`int`): Size of the vocabulary, special tokens included (the output head predicts every id).
        hidden_size (`int`): Width of the residual stream.
        num_hidden_layers (`int`): Number of transformer blocks.
        num_attention_heads (`int`): Number of attention heads; must divide `hidden_size`.
        intermediate_size (`int`, *optional*): Width of the MLP; defaults to `4 * hidden_size`.
        hidden_act (`str`): Activation of the MLP (`"relu"`, `"gelu"`, `"silu"`, ...).
        max_position_embeddings (`int`): Longest sequence (prompt and generation together) the model accepts.
        rotary_dim (`int`, *optional*): Number of dimensions of each head that get rotary embeddings. Any even
            number up to the head size; defaults to the whole head.
        rope_theta (`float`): Base of the rotary frequencies.
        absolute_position_embeddings (`bool`): Whether learned absolute position embeddings (GPT-2 style) are
            added to the token embeddings, on top of rotary attention. Rotary scores see only relative offsets, and
            their fastest frequency (1 radian per position) cannot express "even or odd position", which a prompt
            made of pairs (the star graphs' edge lists) needs. The star recipes turn it on.
        neighbor_token_window (`int`): Number of neighbours on each side whose token embeddings every position also
            reads before the first block, through one learned projection (`neighbor_proj`; a convolution of width
            `2 * window + 1` over the embeddings). 0 (the default) turns it off. A masked position then knows its
            visible neighbours without spending an attention layer to gather them, so a look-up keyed on a
            neighbour takes one layer, as it does for a model that predicts at the neighbour's own position.
            Padding and the tokens of other packed sequences count as absent. Bidirectional families only: an
            autoregressive model decodes with a key/value cache that holds no embeddings of earlier tokens.
        attention_dropout (`float`): Dropout on attention probabilities during training.
        hidden_dropout (`float`): Dropout on the outputs of attention and MLP before the residual add.
        layer_norm_eps (`float`): Epsilon of every LayerNorm.
        final_layer_norm (`bool`): Whether a LayerNorm precedes the output head.
        tie_word_embeddings (`bool`): Whether the output head shares the token embedding matrix.
        time_conditioning (`bool`): Whether blocks are modulated by a noise level (DiT-style adaLN, zero-initialised).
        time_embedding_dim (`int`): Width of the noise-level embedding used by adaLN.
        initializer_range (`float`): Standard deviation of the normal initialisation of linear and embedding weights.
        tie_query_key_init (`bool`): Whether each layer's key projection starts as a copy of its query projection
            (they train apart from there). A token's query then matches its own key best, so at initialisation
            attention already leans toward positions that hold the same token: the look-up a star-graph path needs
            ("the edge whose first node is the node just written"). Off by default; the star_hard ILM recipe turns
            it on (docs/benchmarks.md).
        pad_token_id, bos_token_id, eos_token_id, mask_token_id, cls_token_id, sep_token_id (`int`, *optional*):
            Ids of the special tokens; the families use them to lay out inputs during generation.
    """

    model_type = "xlm-hf-backbone"

    def __init__(
        self,
        vocab_size: int = 32,
        hidden_size: int = 128,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 2,
        intermediate_size: int | None = None,
        hidden_act: str = "gelu",
        max_position_embeddings: int = 128,
        rotary_dim: int | None = None,
        rope_theta: float = 10000.0,
        absolute_position_embeddings: bool = False,
        neighbor_token_window: int = 0,
        attention_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
        layer_norm_eps: float = 1e-5,
        final_layer_norm: bool = True,
        tie_word_embeddings: bool = False,
        time_conditioning: bool = False,
        time_embedding_dim: int = 128,
        initializer_range: float = 0.02,
        tie_query_key_init: bool = False,
        pad_token_id: int | None = 0,
        bos_token_id: int | None = 4,
        eos_token_id: int | None = 3,
        mask_token_id: int | None = 2,
        cls_token_id: int | None = 1,
        sep_token_id: int | None = 5,
        **kwargs,
    ):
        # Types and ranges first, so that a bad value is named here and not in an arithmetic error further down.
        check_int("vocab_size", vocab_size, 1)
        check_int("hidden_size", hidden_size, 1)
        check_int("num_hidden_layers", num_hidden_layers, 1)
        check_int("num_attention_heads", num_attention_heads, 1)
        check_int("intermediate_size", intermediate_size, 1, optional=True)
        if not isinstance(hidden_act, str) or hidden_act not in ACT2FN:
            raise ValueError(f"hidden_act must be one of {', '.join(sorted(ACT2FN))}; got {hidden_act!r}.")
        check_int("max_position_embeddings", max_position_embeddings, 1)
        check_int("rotary_dim", rotary_dim, 2, optional=True)
        check_number("rope_theta", rope_theta, 0, inclusive=False)
        check_number("attention_dropout", attention_dropout, 0, 1)
        check_number("hidden_dropout", hidden_dropout, 0, 1)
        check_number("layer_norm_eps", layer_norm_eps, 0, inclusive=False)
        check_number("initializer_range", initializer_range, 0)
        check_int("time_embedding_dim", time_embedding_dim, 1)
        check_int("neighbor_token_window", neighbor_token_window, 0)
        for name, flag in (
            ("absolute_position_embeddings", absolute_position_embeddings),
            ("final_layer_norm", final_layer_norm),
            ("tie_word_embeddings", tie_word_embeddings),
            ("time_conditioning", time_conditioning),
            ("tie_query_key_init", tie_query_key_init),
        ):
            check_bool(name, flag)
        if hidden_size % num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_attention_heads})."
            )
        head_dim = hidden_size // num_attention_heads
        if rotary_dim is None:
            rotary_dim = head_dim - head_dim % 2
        if rotary_dim % 2 != 0 or not 0 < rotary_dim <= head_dim:
            raise ValueError(
                f"rotary_dim must be an even number in [2, head_dim={head_dim}], got {rotary_dim}."
            )
        for name, token_id in (
            ("pad_token_id", pad_token_id),
            ("bos_token_id", bos_token_id),
            ("eos_token_id", eos_token_id),
            ("mask_token_id", mask_token_id),
            ("cls_token_id", cls_token_id),
            ("sep_token_id", sep_token_id),
        ):
            check_int(name, token_id, 0, optional=True)
            if token_id is not None and not 0 <= token_id < vocab_size:
                raise ValueError(f"{name}={token_id} is outside the vocabulary (vocab_size={vocab_size}).")

        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.head_dim = head_dim
        self.intermediate_size = intermediate_size if intermediate_size is not None else 4 * hidden_size
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.rotary_dim = rotary_dim
        self.rope_theta = rope_theta
        self.absolute_position_embeddings = absolute_position_embeddings
        self.neighbor_token_window = neighbor_token_window
        self.attention_dropout = attention_dropout
        self.hidden_dropout = hidden_dropout
        self.layer_norm_eps = layer_norm_eps
        self.final_layer_norm = final_layer_norm
        self.tie_word_embeddings = tie_word_embeddings
        self.time_conditioning = time_conditioning
        self.time_embedding_dim = time_embedding_dim
        self.initializer_range = initializer_range
        self.tie_query_key_init = tie_query_key_init
        self.mask_token_id = mask_token_id
        self.cls_token_id = cls_token_id
        self.sep_token_id = sep_token_id
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            **kwargs,
        )


__all__ = ["XLMBackboneConfig", "check_bool", "check_int", "check_number"]
