"""xlm_hf: HuggingFace-native training, evaluation, sharing and sampling of non-autoregressive LMs.

The Hub side lives in `xlm_hf.modeling` (the files a checkpoint ships); everything else here is the training
side. Families register themselves on first use: `get_family("ilm")` imports `xlm_hf.ilm`.
"""

__version__ = "0.1.0"

from .experiment import ExperimentError, available_experiments, load_experiment
from .export import export_model, load_model_and_tokenizer
from .families import Family, available_families, get_family, register_family
from .tokenization import add_xlm_special_tokens, build_number_tokenizer, build_word_level_tokenizer
from .trainer import EvalTask, XLMTrainer

__all__ = [
    "EvalTask",
    "ExperimentError",
    "Family",
    "XLMTrainer",
    "add_xlm_special_tokens",
    "available_experiments",
    "available_families",
    "build_number_tokenizer",
    "build_word_level_tokenizer",
    "export_model",
    "get_family",
    "load_experiment",
    "load_model_and_tokenizer",
    "register_family",
]
