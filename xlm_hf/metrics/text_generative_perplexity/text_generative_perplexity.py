"""Generative perplexity: how likely a judge language model finds generated samples (xlm-core's
`GenerativePerplexityPostHocEval`, spec §3).

Each sample was scored by the judge (`xlm_hf.metrics.text_scoring.judge_nll`): `nll` is its summed negative
log-likelihood in nats over the `length` judge tokens that were predicted. The two aggregates of the original:
- `generative_perplexity`: the mean over samples of the per-sample perplexity `exp(nll / length)`;
- `total_generative_perplexity`: `exp(sum nll / sum length)`, every judge token weighing the same.
Samples with `length` 0 (empty, or a single judge token without `[BOS]`) have no perplexity: they are left out of
both and counted in `num_unscored`.
"""

import math

import datasets
import evaluate

_DESCRIPTION = "Mean per-sample and total perplexity of generated samples under a judge causal LM."
_KWARGS_DESCRIPTION = """
Args:
    nll (`list[float]`): the judge's summed NLL (nats) of each sample.
    length (`list[int]`): judge tokens predicted in each sample.
Returns:
    generative_perplexity (`float`): mean over scored samples of exp(nll / length).
    total_generative_perplexity (`float`): exp(sum nll / sum length).
    judge_nll (`float`): sum nll / sum length.
    num_scored (`int`), num_unscored (`int`): samples with and without a predicted token.
Example:
    >>> metric = evaluate.load("xlm_hf/metrics/text_generative_perplexity")
    >>> round(metric.compute(nll=[0.0, 2.0], length=[1, 1])["generative_perplexity"], 4)
    4.1945
"""


class TextGenerativePerplexity(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"nll": datasets.Value("float64"), "length": datasets.Value("int64")}),
        )

    def _compute(self, nll, length):
        scored = [(total, count) for total, count in zip(nll, length) if count > 0]
        if not scored:
            raise ValueError(
                "text_generative_perplexity: no sample has a judge token to score (all samples are empty)."
            )
        total_nll = sum(total for total, _ in scored)
        total_length = sum(count for _, count in scored)
        return {
            "generative_perplexity": sum(math.exp(total / count) for total, count in scored) / len(scored),
            "total_generative_perplexity": math.exp(total_nll / total_length),
            "judge_nll": total_nll / total_length,
            "num_scored": len(scored),
            "num_unscored": len(nll) - len(scored),
        }
