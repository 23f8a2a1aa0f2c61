"""Unigram entropy of generated samples (MDLM/SEDD's diversity check for unconditional text).

For each sample, the entropy (nats) of the empirical distribution of its token ids; the result is the mean over
samples (empty samples are left out). Degenerate, repetitive samples have a low entropy; validation text of the
same length gives the reference value to compare with.
"""

import math
from collections import Counter

import datasets
import evaluate

_DESCRIPTION = "Mean over samples of the unigram entropy (nats) of each sample's token ids."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[int]]`): token ids of each sample (special tokens already removed).
Returns:
    entropy (`float`): mean per-sample unigram entropy in nats.
    mean_length (`float`): mean number of tokens per sample.
Example:
    >>> metric = evaluate.load("xlm_hf/metrics/text_entropy")
    >>> round(metric.compute(predictions=[[1, 2], [3, 3]])["entropy"], 4)
    0.3466
"""


def unigram_entropy(tokens: list[int]) -> float:
    counts = Counter(tokens)
    total = len(tokens)
    return -sum(c / total * math.log(c / total) for c in counts.values())


class TextEntropy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("int64"))}),
        )

    def _compute(self, predictions):
        samples = [list(p) for p in predictions if len(p) > 0]
        if not samples:
            raise ValueError("text_entropy needs at least one non-empty sample.")
        return {
            "entropy": sum(unigram_entropy(s) for s in samples) / len(samples),
            "mean_length": sum(len(p) for p in predictions) / len(predictions),
        }
