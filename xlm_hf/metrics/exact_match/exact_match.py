"""Sequence exact match over token ids (xlm-core's `ExactMatch`).

An example scores 1 only if the prediction equals the reference at every position of the compared window,
padding included (so a correct answer followed by extra tokens is wrong). Sequences of different lengths
never match. The result is the mean over examples.
"""

import datasets
import evaluate

_DESCRIPTION = "Fraction of examples whose predicted token ids equal the reference ids at every position."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[int]]`): predicted token ids, one list per example.
    references (`list[list[int]]`): reference token ids, one list per example.
Returns:
    exact_match (`float`): mean over examples of 1[prediction == reference].
Example:
    >>> metric = evaluate.load("xlm_hf/metrics/exact_match")
    >>> metric.compute(predictions=[[1, 2, 0], [1, 2, 3]], references=[[1, 2, 0], [1, 2, 0]])
    {'exact_match': 0.5}
"""


class ExactMatch(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions, references):
        if len(predictions) == 0:
            raise ValueError("exact_match needs at least one example.")
        matches = [float(list(p) == list(r)) for p, r in zip(predictions, references)]
        return {"exact_match": sum(matches) / len(matches)}
