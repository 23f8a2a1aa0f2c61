"""Configuration of the masked language model (MLM): "absorbing diffusion without time"."""

from .configuration_backbone import XLMBackboneConfig

BOS_POSITIONS = ("after_prompt", "before_prompt", "none")


class MLMConfig(XLMBackboneConfig):
    r"""
    Configuration of [`MLMForMaskedLM`], a bidirectional rotary transformer that predicts the clean token at every
    `[MASK]`. All arguments are those of [`XLMBackboneConfig`] (with `time_conditioning` forced off: the MLM has no
    notion of time), plus:

    Args:
        bos_position (`str`): The layout `generate` gives a plain tokenized prompt, matching the collator the model
            was trained with: `"after_prompt"` (seq2seq: `prompt [BOS] [MASK]...`), `"before_prompt"`
            (`[BOS] prompt [MASK]...`) or `"none"` (`prompt [MASK]...`, language-model pretraining without BOS).

    Example:

    ```python
    >>> from xlm_hf.modeling.configuration_mlm import MLMConfig
    >>> config = MLMConfig(vocab_size=27, hidden_size=128, num_hidden_layers=2, num_attention_heads=2)
    ```
    """

    model_type = "xlm-hf-mlm"

    def __init__(self, bos_position: str = "after_prompt", **kwargs):
        if bos_position not in BOS_POSITIONS:
            raise ValueError(f"bos_position must be one of {BOS_POSITIONS}, got {bos_position!r}.")
        if kwargs.get("time_conditioning"):
            raise ValueError("The MLM is not time-conditioned; use the MDLM family for a noise-level input.")
        kwargs["time_conditioning"] = False
        self.bos_position = bos_position
        super().__init__(**kwargs)


__all__ = ["MLMConfig"]
