"""MDLM: the masked diffusion language model family (arXiv 2406.07524)."""

from transformers import AutoModelForMaskedLM

from ..families import INFILL_PIPELINE, TEXT_GENERATION_PIPELINE, Family, register_family
from ..modeling.configuration_mdlm import MDLMConfig
from ..modeling.modeling_mdlm import MDLMForMaskedDiffusionLM
from .collator_mdlm import (
    MDLMCollatorForInfill,
    MDLMCollatorForInfillPrediction,
    MDLMCollatorForLM,
    MDLMCollatorForSeq2Seq,
    MDLMCollatorForSeq2SeqPrediction,
    MDLMCollatorForUnconditionalPrediction,
)
from .trainer_mdlm import MDLMTrainer

FAMILY = register_family(
    Family(
        name="mdlm",
        config_class=MDLMConfig,
        model_class=MDLMForMaskedDiffusionLM,
        trainer_class=MDLMTrainer,
        collators={
            "lm": MDLMCollatorForLM,
            "seq2seq": MDLMCollatorForSeq2Seq,
            "seq2seq_pred": MDLMCollatorForSeq2SeqPrediction,
            "infill": MDLMCollatorForInfill,
            "infill_pred": MDLMCollatorForInfillPrediction,
            "unconditional": MDLMCollatorForUnconditionalPrediction,
        },
        # AutoModelForMaskedLM: the fill-mask pipeline (the noise level is estimated from the masked fraction).
        auto_map={
            "AutoConfig": "configuration_mdlm.MDLMConfig",
            "AutoModel": "modeling_mdlm.MDLMForMaskedDiffusionLM",
            "AutoModelForMaskedLM": "modeling_mdlm.MDLMForMaskedDiffusionLM",
        },
        title="A masked diffusion language model (MDLM)",
        paper="https://arxiv.org/abs/2406.07524",
        pipeline_tag="text-generation",
        pipelines={"text-generation": TEXT_GENERATION_PIPELINE, "infill": INFILL_PIPELINE},
        card_template="mdlm",
        # the ancestral sampler reuses a row's logits after a step that changed nothing
        cache_option=("use_cache_trick", True, False),
        extra_auto_classes=[AutoModelForMaskedLM],
    )
)

__all__ = [
    "MDLMConfig",
    "MDLMForMaskedDiffusionLM",
    "MDLMTrainer",
    "MDLMCollatorForLM",
    "MDLMCollatorForSeq2Seq",
    "MDLMCollatorForSeq2SeqPrediction",
    "MDLMCollatorForInfill",
    "MDLMCollatorForInfillPrediction",
    "MDLMCollatorForUnconditionalPrediction",
    "FAMILY",
]
