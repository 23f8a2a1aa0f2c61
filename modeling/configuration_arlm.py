"""Configuration of the autoregressive baseline (ARLM)."""

from .configuration_backbone import XLMBackboneConfig, check_bool, resolve_prompt_layout


class ARLMConfig(XLMBackboneConfig):
    r"""
    Configuration of [`ARLMForCausalLM`], a causal rotary transformer. All arguments are those of
    [`XLMBackboneConfig`], plus:

    Args:
        use_cache (`bool`): Whether generation uses the KV cache (default `True`).
        prompt_layout (`str`): What a prompt is: `"seq2seq"` (`prompt [BOS] target`), `"lm"` (`[BOS] text`) or
            `"none"` (no `[BOS]`). The deprecated `bos_position` (`"after_prompt"`, `"before_prompt"`, `"none"`) is
            read and translated.

    Example:

    ```python
    >>> from xlm_hf.modeling.configuration_arlm import ARLMConfig
    >>> config = ARLMConfig(vocab_size=27, hidden_size=128, num_hidden_layers=2, num_attention_heads=2)
    ```
    """

    model_type = "xlm-hf-arlm"

    def __init__(
        self,
        use_cache: bool = True,
        prompt_layout: str | None = None,
        bos_position: str | None = None,
        **kwargs,
    ):
        check_bool("use_cache", use_cache)
        self.use_cache = use_cache
        self.prompt_layout = resolve_prompt_layout(prompt_layout, bos_position, default="seq2seq")
        super().__init__(**kwargs)


__all__ = ["ARLMConfig"]
