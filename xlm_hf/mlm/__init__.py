"""MLM: the masked language model family ("absorbing diffusion without time")."""

from transformers import AutoModelForMaskedLM

from ..families import INFILL_PIPELINE, TEXT_GENERATION_PIPELINE, Family, register_family
from ..modeling.configuration_mlm import MLMConfig
from ..modeling.modeling_mlm import MLMForMaskedLM
from .collator_mlm import (
    MLMCollatorForInfill,
    MLMCollatorForInfillPrediction,
    MLMCollatorForLM,
    MLMCollatorForSeq2Seq,
    MLMCollatorForSeq2SeqPrediction,
    MLMCollatorForUnconditionalPrediction,
)
from .trainer_mlm import MLMTrainer

FAMILY = register_family(
    Family(
        name="mlm",
        config_class=MLMConfig,
        model_class=MLMForMaskedLM,
        trainer_class=MLMTrainer,
        collators={
            "lm": MLMCollatorForLM,
            "seq2seq": MLMCollatorForSeq2Seq,
            "seq2seq_pred": MLMCollatorForSeq2SeqPrediction,
            "infill": MLMCollatorForInfill,
            "infill_pred": MLMCollatorForInfillPrediction,
            "unconditional": MLMCollatorForUnconditionalPrediction,
        },
        auto_map={
            "AutoConfig": "configuration_mlm.MLMConfig",
            "AutoModel": "modeling_mlm.MLMForMaskedLM",
            "AutoModelForMaskedLM": "modeling_mlm.MLMForMaskedLM",
        },
        title="A masked language model (MLM)",
        paper="https://arxiv.org/abs/1810.04805",
        pipeline_tag="fill-mask",
        pipelines={"text-generation": TEXT_GENERATION_PIPELINE, "infill": INFILL_PIPELINE},
        card_template="mlm",
        extra_auto_classes=[AutoModelForMaskedLM],
    )
)

__all__ = [
    "MLMConfig",
    "MLMForMaskedLM",
    "MLMTrainer",
    "MLMCollatorForLM",
    "MLMCollatorForSeq2Seq",
    "MLMCollatorForSeq2SeqPrediction",
    "MLMCollatorForInfill",
    "MLMCollatorForInfillPrediction",
    "MLMCollatorForUnconditionalPrediction",
    "FAMILY",
]
