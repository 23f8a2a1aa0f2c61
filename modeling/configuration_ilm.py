"""Configuration of the Insertion LM (ILM, arXiv 2505.05755)."""

from .configuration_backbone import XLMBackboneConfig, check_bool, check_int, check_number


class ILMConfig(XLMBackboneConfig):
    r"""
    Configuration of [`ILMModelForInsertionLM`]: a bidirectional rotary transformer whose token head scores
    "insert token v into the gap right after position i", plus a stopping head on the `[CLS]` hidden state.
    All arguments of [`XLMBackboneConfig`] apply (ILM defaults to `final_layer_norm=False`, as the original
    stopping configurations), plus:

    Args:
        stopping_head (`str`):
            `"binary"`: two classes, 0 = "complete" (nothing left to insert) and 1 = "continue".
            `"length"`: `num_length_classes` classes, class k = "k tokens are missing" (the last class also
            stands for every larger number). In both variants class 0 means "stop".
        num_length_classes (`int`, *optional*):
            Number of classes of the `"length"` head; defaults to `max_position_embeddings`.
        stopping_dropout (`float`, *optional*):
            Dropout inside the stopping head's residual MLP; defaults to `hidden_dropout`.
        stopping_loss_weight (`float`):
            Weight of the stopping loss next to the insertion loss (λ; the original uses 1 on star graphs and
            LM1B, 0.001 on OpenWebText).
        stopping_class_weight (`float`, *optional*):
            For the binary head, weights `[w, 1 - w]` of the classes "complete" and "continue" in the stopping
            loss (the original uses 0.9 on OpenWebText); `None` weighs both classes 1.
        gap_head_right_neighbor (`bool`):
            Whether the token head scores the gap after position i from the states on both of its sides,
            `h_i + W h_{i+1}`, instead of `h_i` alone (the original). What belongs in a gap depends on both
            neighbours; with the right one given to the head directly, the network does not have to spend a layer
            copying it into `h_i` first.

    Example:

    ```python
    >>> from xlm_hf.modeling.configuration_ilm import ILMConfig
    >>> config = ILMConfig(vocab_size=27, hidden_size=128, num_hidden_layers=2, num_attention_heads=2)
    ```
    """

    model_type = "xlm-hf-ilm"

    def __init__(
        self,
        stopping_head: str = "binary",
        num_length_classes: int | None = None,
        stopping_dropout: float | None = None,
        stopping_loss_weight: float = 1.0,
        stopping_class_weight: float | None = None,
        gap_head_right_neighbor: bool = False,
        final_layer_norm: bool = False,
        **kwargs,
    ):
        if stopping_head not in ("binary", "length"):
            raise ValueError(f"stopping_head must be 'binary' or 'length', got {stopping_head!r}.")
        check_number("stopping_loss_weight", stopping_loss_weight, 0)
        check_number("stopping_dropout", stopping_dropout, 0, 1, optional=True)
        check_int("num_length_classes", num_length_classes, 2, optional=True)
        check_bool("gap_head_right_neighbor", gap_head_right_neighbor)
        if stopping_class_weight is not None:
            if stopping_head != "binary":
                raise ValueError("stopping_class_weight only applies to the binary stopping head.")
            check_number("stopping_class_weight", stopping_class_weight, 0, 1)
        super().__init__(final_layer_norm=final_layer_norm, **kwargs)
        if num_length_classes is None:
            num_length_classes = self.max_position_embeddings
        if num_length_classes < 2:
            raise ValueError(f"num_length_classes must be at least 2, got {num_length_classes}.")
        self.stopping_head = stopping_head
        self.num_length_classes = num_length_classes
        self.stopping_dropout = self.hidden_dropout if stopping_dropout is None else stopping_dropout
        self.stopping_loss_weight = stopping_loss_weight
        self.stopping_class_weight = stopping_class_weight
        self.gap_head_right_neighbor = gap_head_right_neighbor

    @property
    def num_stopping_classes(self) -> int:
        return 2 if self.stopping_head == "binary" else self.num_length_classes


__all__ = ["ILMConfig"]
