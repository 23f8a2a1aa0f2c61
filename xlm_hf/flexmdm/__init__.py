"""FlexMDM (arXiv 2509.01025): masked diffusion that also inserts tokens, so the length is chosen by the model."""

from ..families import INFILL_PIPELINE, TEXT_GENERATION_PIPELINE, Family, register_family
from ..modeling.configuration_flexmdm import FlexMDMConfig
from ..modeling.modeling_flexmdm import FlexMDMForDiffusionLM
from .collator_flexmdm import (
    FlexMDMCollatorForInfill,
    FlexMDMCollatorForInfillPrediction,
    FlexMDMCollatorForLM,
    FlexMDMCollatorForSeq2Seq,
    FlexMDMCollatorForSeq2SeqPrediction,
    FlexMDMCollatorForUnconditionalPrediction,
)
from .trainer_flexmdm import FlexMDMTrainer

FAMILY = register_family(
    Family(
        name="flexmdm",
        config_class=FlexMDMConfig,
        model_class=FlexMDMForDiffusionLM,
        trainer_class=FlexMDMTrainer,
        collators={
            "lm": FlexMDMCollatorForLM,
            "seq2seq": FlexMDMCollatorForSeq2Seq,
            "seq2seq_pred": FlexMDMCollatorForSeq2SeqPrediction,
            "infill": FlexMDMCollatorForInfill,
            "infill_pred": FlexMDMCollatorForInfillPrediction,
            "unconditional": FlexMDMCollatorForUnconditionalPrediction,
        },
        auto_map={
            "AutoConfig": "configuration_flexmdm.FlexMDMConfig",
            "AutoModel": "modeling_flexmdm.FlexMDMForDiffusionLM",
        },
        title="A variable-length masked diffusion model (FlexMDM)",
        paper="https://arxiv.org/abs/2509.01025",
        pipeline_tag="text-generation",
        pipelines={"text-generation": TEXT_GENERATION_PIPELINE, "infill": INFILL_PIPELINE},
        card_template="flexmdm",
    )
)

__all__ = [
    "FlexMDMConfig",
    "FlexMDMForDiffusionLM",
    "FlexMDMTrainer",
    "FlexMDMCollatorForLM",
    "FlexMDMCollatorForSeq2Seq",
    "FlexMDMCollatorForSeq2SeqPrediction",
    "FlexMDMCollatorForInfill",
    "FlexMDMCollatorForInfillPrediction",
    "FlexMDMCollatorForUnconditionalPrediction",
    "FAMILY",
]
