"""Held-out negative log-likelihood and perplexity from per-sequence NLL sums (corpus-level, per token).

Each example is one held-out sequence scored by the model: `nll` is its summed negative log-likelihood in nats
(exact for an autoregressive model, an upper bound for the other families: see `xlm_hf.metrics.text_scoring`) and
`num_tokens` the number of real tokens it covers (padding never counts). The result divides the total NLL by the
total number of tokens, as language-model perplexity is reported: `perplexity = exp(sum nll / sum num_tokens)`.
"""

import math

import datasets
import evaluate

_DESCRIPTION = "Per-token NLL and perplexity of held-out text from per-sequence NLL sums and token counts."
_KWARGS_DESCRIPTION = """
Args:
    nll (`list[float]`): summed negative log-likelihood (nats) of each sequence.
    num_tokens (`list[int]`): real tokens scored in each sequence.
Returns:
    nll (`float`): total NLL / total tokens (nats per token).
    perplexity (`float`): exp(nll).
    bits_per_token (`float`): nll / ln 2.
    num_tokens (`int`): total tokens scored.
Example:
    >>> metric = evaluate.load("xlm_hf/metrics/text_perplexity")
    >>> metric.compute(nll=[2.0, 4.0], num_tokens=[1, 2])["nll"]
    2.0
"""


class TextPerplexity(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"nll": datasets.Value("float64"), "num_tokens": datasets.Value("int64")}
            ),
        )

    def _compute(self, nll, num_tokens):
        total_tokens = int(sum(num_tokens))
        if total_tokens <= 0:
            raise ValueError("text_perplexity needs at least one scored token.")
        mean_nll = float(sum(nll)) / total_tokens
        return {
            "nll": mean_nll,
            "perplexity": math.exp(mean_nll),
            "bits_per_token": mean_nll / math.log(2),
            "num_tokens": total_tokens,
        }
