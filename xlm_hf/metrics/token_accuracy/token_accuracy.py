"""Per-example token accuracy over token ids (xlm-core's `TokenAccuracy`).

For each example: (number of positions where prediction == reference) / (number of counted positions);
the result is the mean over examples. Positions where the reference equals `ignore_index` are not counted
(xlm_hf passes the padding id, so only the target tokens and `[EOS]` count). A prediction shorter than the
reference counts its missing positions as wrong.
"""

import datasets
import evaluate

_DESCRIPTION = "Mean over examples of the fraction of reference positions predicted exactly."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[int]]`): predicted token ids, one list per example.
    references (`list[list[int]]`): reference token ids, one list per example.
    ignore_index (`int`, *optional*): reference id whose positions are not counted (e.g. the padding id).
Returns:
    token_accuracy (`float`): mean over examples of the per-example accuracy.
Example:
    >>> metric = evaluate.load("xlm_hf/metrics/token_accuracy")
    >>> metric.compute(predictions=[[1, 2, 9, 0]], references=[[1, 2, 3, 0]], ignore_index=0)
    {'token_accuracy': 0.6666666666666666}
"""


class TokenAccuracy(evaluate.Metric):
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

    def _compute(self, predictions, references, ignore_index=None):
        if len(predictions) == 0:
            raise ValueError("token_accuracy needs at least one example.")
        scores = []
        for prediction, reference in zip(predictions, references):
            counted = [i for i, ref in enumerate(reference) if ignore_index is None or ref != ignore_index]
            if not counted:
                continue
            correct = sum(1 for i in counted if i < len(prediction) and prediction[i] == reference[i])
            scores.append(correct / len(counted))
        return {"token_accuracy": sum(scores) / len(scores) if scores else 0.0}
