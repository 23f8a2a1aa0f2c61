"""ARLM: the autoregressive baseline family."""

from transformers import AutoModelForCausalLM

from ..families import CAUSAL_TEXT_GENERATION_PIPELINE, Family, register_family
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
        title="An autoregressive language model (ARLM baseline)",
        paper="https://arxiv.org/abs/1706.03762",
        pipeline_tag="text-generation",
        pipelines={"text-generation": CAUSAL_TEXT_GENERATION_PIPELINE},
        card_template="arlm",
        cache_option=("use_cache", True, False),  # the key/value cache of autoregressive decoding
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
