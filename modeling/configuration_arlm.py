"""Configuration of the autoregressive baseline (ARLM)."""

from .configuration_backbone import XLMBackboneConfig, check_bool


class ARLMConfig(XLMBackboneConfig):
    r"""
    Configuration of [`ARLMForCausalLM`], a causal rotary transformer. All arguments are those of
    [`XLMBackboneConfig`], plus:

    Args:
        use_cache (`bool`): Whether generation uses the KV cache (default `True`).
        bos_position (`str`): Where `[BOS]` goes in a prompt: `"after_prompt"` (seq2seq layout
            `prompt [BOS] target`), `"before_prompt"` (language-model layout `[BOS] text`) or `"none"`.

    Example:

    ```python
    >>> from xlm_hf.modeling.configuration_arlm import ARLMConfig
    >>> config = ARLMConfig(vocab_size=27, hidden_size=128, num_hidden_layers=2, num_attention_heads=2)
    ```
    """

    model_type = "xlm-hf-arlm"

    def __init__(self, use_cache: bool = True, bos_position: str = "after_prompt", **kwargs):
        check_bool("use_cache", use_cache)
        if bos_position not in ("after_prompt", "before_prompt", "none"):
            raise ValueError(
                f"bos_position must be 'after_prompt', 'before_prompt' or 'none', got {bos_position!r}."
            )
        self.use_cache = use_cache
        self.bos_position = bos_position
        super().__init__(**kwargs)


__all__ = ["ARLMConfig"]
