"""Configuration shared by every xlm_hf family: the rotary transformer backbone and the special tokens.

Each family's configuration (`configuration_arlm.py`, `configuration_mlm.py`, ...) subclasses
`XLMBackboneConfig` and adds only what that family needs. This file is Hub-side: it imports only
transformers, so an exported checkpoint loads without xlm_hf installed.
"""

from transformers import PreTrainedConfig


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
        attention_dropout (`float`): Dropout on attention probabilities during training.
        hidden_dropout (`float`): Dropout on the outputs of attention and MLP before the residual add.
        layer_norm_eps (`float`): Epsilon of every LayerNorm.
        final_layer_norm (`bool`): Whether a LayerNorm precedes the output head.
        tie_word_embeddings (`bool`): Whether the output head shares the token embedding matrix.
        time_conditioning (`bool`): Whether blocks are modulated by a noise level (DiT-style adaLN, zero-initialised).
        time_embedding_dim (`int`): Width of the noise-level embedding used by adaLN.
        initializer_range (`float`): Standard deviation of the normal initialisation of linear and embedding weights.
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
        attention_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
        layer_norm_eps: float = 1e-5,
        final_layer_norm: bool = True,
        tie_word_embeddings: bool = False,
        time_conditioning: bool = False,
        time_embedding_dim: int = 128,
        initializer_range: float = 0.02,
        pad_token_id: int | None = 0,
        bos_token_id: int | None = 4,
        eos_token_id: int | None = 3,
        mask_token_id: int | None = 2,
        cls_token_id: int | None = 1,
        sep_token_id: int | None = 5,
        **kwargs,
    ):
        if hidden_size % num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_attention_heads})."
            )
        head_dim = hidden_size // num_attention_heads
        if rotary_dim is None:
            rotary_dim = head_dim - head_dim % 2
        if rotary_dim % 2 != 0 or not 0 < rotary_dim <= head_dim:
            raise ValueError(f"rotary_dim must be an even number in [2, head_dim={head_dim}], got {rotary_dim}.")
        if max_position_embeddings < 1:
            raise ValueError(f"max_position_embeddings must be positive, got {max_position_embeddings}.")
        for name, token_id in (
            ("pad_token_id", pad_token_id),
            ("bos_token_id", bos_token_id),
            ("eos_token_id", eos_token_id),
            ("mask_token_id", mask_token_id),
            ("cls_token_id", cls_token_id),
            ("sep_token_id", sep_token_id),
        ):
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
        self.attention_dropout = attention_dropout
        self.hidden_dropout = hidden_dropout
        self.layer_norm_eps = layer_norm_eps
        self.final_layer_norm = final_layer_norm
        self.tie_word_embeddings = tie_word_embeddings
        self.time_conditioning = time_conditioning
        self.time_embedding_dim = time_embedding_dim
        self.initializer_range = initializer_range
        self.mask_token_id = mask_token_id
        self.cls_token_id = cls_token_id
        self.sep_token_id = sep_token_id
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            **kwargs,
        )


__all__ = ["XLMBackboneConfig"]
