"""ARLM: the autoregressive baseline family."""

from transformers import AutoModelForCausalLM

from ..families import Family, register_family
from ..modeling.configuration_arlm import ARLMConfig
from ..modeling.modeling_arlm import ARLMForCausalLM
from .collator_arlm import ARLMCollatorForLM, ARLMCollatorForSeq2Seq, ARLMCollatorForSeq2SeqPrediction
from .trainer_arlm import ARLMTrainer

FAMILY = register_family(
    Family(
        name="arlm",
        config_class=ARLMConfig,
        model_class=ARLMForCausalLM,
        trainer_class=ARLMTrainer,
        collators={
            "lm": ARLMCollatorForLM,
            "seq2seq": ARLMCollatorForSeq2Seq,
            "seq2seq_pred": ARLMCollatorForSeq2SeqPrediction,
        },
        auto_map={
            "AutoConfig": "configuration_arlm.ARLMConfig",
            "AutoModel": "modeling_arlm.ARLMForCausalLM",
            "AutoModelForCausalLM": "modeling_arlm.ARLMForCausalLM",
        },
        pipeline_tag="text-generation",
        paper="",
        extra_auto_classes=[AutoModelForCausalLM],
    )
)

__all__ = [
    "ARLMConfig",
    "ARLMForCausalLM",
    "ARLMTrainer",
    "ARLMCollatorForLM",
    "ARLMCollatorForSeq2Seq",
    "ARLMCollatorForSeq2SeqPrediction",
    "FAMILY",
]
