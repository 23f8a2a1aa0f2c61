"""Repetition of generated samples: distinct-n and per-sample repetition, n = 1..4.

- `distinct_<n>` (Li et al., 2016): the number of different n-grams over all samples divided by the number of
  n-grams over all samples (1 = no n-gram is ever repeated, across or within samples).
- `repetition_<n>`: the mean over samples of `1 - different n-grams / n-grams` within the sample (0 = the sample
  repeats none of its n-grams; samples shorter than n are left out).
"""

import datasets
import evaluate

_DESCRIPTION = "Corpus distinct-n and mean per-sample repetition rate of n-grams, n = 1..4."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[int]]`): token ids of each sample (special tokens already removed).
    max_n (`int`, *optional*, defaults to 4): largest n.
Returns:
    distinct_1 .. distinct_<max_n> (`float`), repetition_1 .. repetition_<max_n> (`float`).
Example:
    >>> metric = evaluate.load("xlm_hf/metrics/text_distinct_n")
    >>> metric.compute(predictions=[[1, 1, 2]], max_n=1)
    {'distinct_1': 0.6666666666666666, 'repetition_1': 0.33333333333333337}
"""


def ngrams(tokens: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


class TextDistinctN(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("int64"))}),
        )

    def _compute(self, predictions, max_n: int = 4):
        if not predictions:
            raise ValueError("text_distinct_n needs at least one sample.")
        results = {}
        for n in range(1, max_n + 1):
            per_sample = [ngrams(list(p), n) for p in predictions]
            every = [gram for grams in per_sample for gram in grams]
            results[f"distinct_{n}"] = len(set(every)) / len(every) if every else 0.0
            rates = [1 - len(set(grams)) / len(grams) for grams in per_sample if grams]
            results[f"repetition_{n}"] = sum(rates) / len(rates) if rates else 0.0
        return results
