"""ILM: the Insertion LM family (arXiv 2505.05755)."""

from ..families import INFILL_PIPELINE, TEXT_GENERATION_PIPELINE, Family, register_family
from ..modeling.configuration_ilm import ILMConfig
from ..modeling.generation_ilm import ILMGenerationConfig, ILMGenerationOutput
from ..modeling.modeling_ilm import ILMModelForInsertionLM, ILMOutput, ilm_loss
from .collator_ilm import (
    ILMCollatorForInfillPrediction,
    ILMCollatorForLM,
    ILMCollatorForSeq2Seq,
    ILMCollatorForSeq2SeqPrediction,
    attribute_deletions,
    ilm_drop,
)
from .trainer_ilm import ILMTrainer

FAMILY = register_family(
    Family(
        name="ilm",
        config_class=ILMConfig,
        model_class=ILMModelForInsertionLM,
        trainer_class=ILMTrainer,
        collators={
            "lm": ILMCollatorForLM,
            "seq2seq": ILMCollatorForSeq2Seq,
            "seq2seq_pred": ILMCollatorForSeq2SeqPrediction,
            "infill": ILMCollatorForInfillPrediction,
        },
        auto_map={
            "AutoConfig": "configuration_ilm.ILMConfig",
            "AutoModel": "modeling_ilm.ILMModelForInsertionLM",
        },
        title="An insertion language model (ILM)",
        paper="https://arxiv.org/abs/2505.05755",
        pipeline_tag="text-generation",
        pipelines={"text-generation": TEXT_GENERATION_PIPELINE, "infill": INFILL_PIPELINE},
        card_template="ilm",
    )
)

__all__ = [
    "ILMConfig",
    "ILMModelForInsertionLM",
    "ILMOutput",
    "ILMGenerationConfig",
    "ILMGenerationOutput",
    "ILMTrainer",
    "ILMCollatorForLM",
    "ILMCollatorForSeq2Seq",
    "ILMCollatorForSeq2SeqPrediction",
    "ILMCollatorForInfillPrediction",
    "attribute_deletions",
    "ilm_drop",
    "ilm_loss",
    "FAMILY",
]
