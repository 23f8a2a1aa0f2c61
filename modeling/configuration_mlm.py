"""Configuration of the masked language model (MLM): "absorbing diffusion without time"."""

from .configuration_backbone import XLMBackboneConfig, resolve_prompt_layout


class MLMConfig(XLMBackboneConfig):
    r"""
    Configuration of [`MLMForMaskedLM`], a bidirectional rotary transformer that predicts the clean token at every
    `[MASK]`. All arguments are those of [`XLMBackboneConfig`] (with `time_conditioning` forced off: the MLM has no
    notion of time), plus:

    Args:
        prompt_layout (`str`): The layout `generate` gives a plain tokenized prompt, matching the collator the model
            was trained with: `"seq2seq"` (`prompt [BOS] [MASK]...`), `"lm"` (`[BOS] prompt [MASK]...`) or
            `"none"` (`prompt [MASK]...`, language-model pretraining without BOS). The deprecated `bos_position`
            (`"after_prompt"`, `"before_prompt"`, `"none"`) is read and translated.

    Example:

    ```python
    >>> from xlm_hf.modeling.configuration_mlm import MLMConfig
    >>> config = MLMConfig(vocab_size=27, hidden_size=128, num_hidden_layers=2, num_attention_heads=2)
    ```
    """

    model_type = "xlm-hf-mlm"

    def __init__(self, prompt_layout: str | None = None, bos_position: str | None = None, **kwargs):
        prompt_layout = resolve_prompt_layout(prompt_layout, bos_position, default="seq2seq")
        if kwargs.get("time_conditioning"):
            raise ValueError("The MLM is not time-conditioned; use the MDLM family for a noise-level input.")
        kwargs["time_conditioning"] = False
        self.prompt_layout = prompt_layout
        super().__init__(**kwargs)


__all__ = ["MLMConfig"]
