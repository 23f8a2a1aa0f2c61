"""Held-out NLL of FlexMDM: the continuous-time ELBO of its insert-and-unmask Markov chain, an upper bound on
`-log p(x)`.

FlexMDM generates by a continuous-time Markov chain from `[BOS] [EOS]` at t = 0 to the text at t = 1: each gap
after `[BOS]` receives a `[MASK]` at rate `rate_ins(t) * g_hat` (the gap head's expected number of missing tokens)
and each `[MASK]` becomes token v at rate `rate_unm(t) * p(v | x_t)`. The noising process of training, conditioned
on the text x (every token inserted at its own time, unmasked at a later one: `flexmdm_noise`), is another chain
that ends at x. For two chains from the same start, `-log p(x) <= KL(noising chain | model chain)`, and the KL is
the integral over t of the rate mismatch at the noised state (arXiv 2509.01025 derives FlexMDM's loss this way):

    -log p(x) <= E_t E_{x_t | x} [ rate_unm(t) sum_masks -log p(x_i | x_t)
                                  + rate_ins(t) sum_gaps (g_hat - g + g log(g / g_hat)) ],   t ~ U(0, 1),

with g the tokens of x missing in a gap. (Which missing token of a gap a new `[MASK]` stands for is not in x_t;
the bound gives the model's chain the noising chain's own uniform choice there, which costs nothing.) These are
the training loss's terms with the schedules' exact rates: a model trained with `loss_weight_cap` (equal weights,
not the ELBO's `1 / (1 - t)`) has the same bound, only its training loss is not this bound.

The expectation is estimated with `num_samples` times per text, stratified and importance-sampled towards t = 1
(`_times`), and the noise drawn from a fixed generator, so an evaluation is repeatable. The count per text is its
tokens plus its end (the `[EOS]`, whose place the model chooses by inserting nothing more), as for the other
families.
"""

import torch

from ..modeling.modeling_flexmdm import MAX_TRAINING_TIME, flexmdm_noise, stratified_times

# Floor of the predicted gap length inside the logarithm: a zero prediction where tokens are missing would make
# the bound infinite; this keeps it finite and (far) above any useful value.
MIN_GAP_PREDICTION = 1e-30


def _times(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` times in (0, MAX_TRAINING_TIME) and their importance weights, for `E_{t ~ U(0, 1)}[f(t)]`.

    Near t = 1 the rates grow as `1 / (1 - t)` while a token is still missing or masked with probability of order
    `1 - t`: the integrand's values there are rare and large, and with uniform times its variance is infinite.
    Times are drawn as `t = 1 - (1 - v)^2` for stratified uniform v (`v_j` in `[j/K, (j+1)/K)`), denser near 1,
    and weighted by `dt/dv = 2 (1 - v)`, which keeps the estimate unbiased and its variance finite. As in
    training, times stop at `MAX_TRAINING_TIME` (a float32 time cannot come closer to 1).
    """
    v = stratified_times(count, torch.rand(count, generator=generator)).double() / MAX_TRAINING_TIME
    return (1 - (1 - v) ** 2) * MAX_TRAINING_TIME, 2 * (1 - v) * MAX_TRAINING_TIME


@torch.no_grad()
def flexmdm_nll(
    model: torch.nn.Module,
    texts: list[list[int]],
    collator,
    num_samples: int,
    generator: torch.Generator,
    batch_size: int,
) -> list[tuple[float, int]]:
    """`(bound on -log p(x) in nats, tokens + 1)` per text (ids without special tokens), laid out as FlexMDM's
    `lm` collator lays out training rows: `[BOS] text [EOS]`, the text cut to `collator.block_size - 2` tokens."""
    config = model.config
    collator = getattr(collator, "collator", collator)  # a text task wraps the family's collator
    room = collator.block_size - 2
    texts = [list(text[:room]) for text in texts]
    if not texts:
        return []
    width = max(len(text) for text in texts) + 2
    insertion, unmasking = config.get_insertion_schedule(), config.get_unmasking_schedule()
    # (text index, time, weight): num_samples stratified times per text, importance-sampled (see `_times`)
    states = []
    for index in range(len(texts)):
        times, weights = _times(num_samples, generator)
        states.extend((index, float(t), float(w)) for t, w in zip(times, weights))
    totals = [0.0] * len(texts)
    device = model.device
    for start in range(0, len(states), batch_size):
        chunk = states[start : start + batch_size]
        rows = len(chunk)
        clean = torch.full((rows, width), config.pad_token_id, dtype=torch.long)
        labels = torch.full_like(clean, -100)
        real = torch.zeros_like(clean)
        for row, (index, _, _) in enumerate(chunk):
            text = texts[index]
            clean[row, : len(text) + 2] = torch.tensor([config.bos_token_id, *text, config.eos_token_id])
            labels[row, 1 : len(text) + 1] = torch.tensor(text, dtype=torch.long)
            real[row, : len(text) + 2] = 1
        t = torch.tensor([time for _, time, _ in chunk], dtype=torch.float64)
        noised = flexmdm_noise(
            clean.to(device),
            real.to(device),
            labels.to(device),
            config,
            t.to(device),
            torch.rand((rows, width), generator=generator).to(device),
            torch.rand((rows, width), generator=generator).to(device),
        )
        output = model(input_ids=noised["input_ids"], attention_mask=noised["attention_mask"], t=noised["t"])
        weight = torch.tensor([w for _, _, w in chunk], dtype=torch.float64, device=device)
        masked = noised["masked"]
        token_nll = torch.nn.functional.cross_entropy(
            output.logits.double().transpose(1, 2),
            noised["clean"].masked_fill(~masked, -100),
            ignore_index=-100,
            reduction="none",
        )
        t = noised["t"].double()  # the float32 time the state was drawn at and the model saw
        unmask_cost = unmasking.rate(t) * torch.where(masked, token_nll, 0.0).sum(-1)
        g = noised["gaps"].double()
        g_hat = output.gap_lengths.double().clamp(min=MIN_GAP_PREDICTION)
        # the Poisson Bregman divergence, with 0 log 0 = 0 where nothing is missing
        bregman = g_hat - g + torch.xlogy(g, g) - torch.xlogy(g, g_hat)
        insert_cost = insertion.rate(t) * torch.where(noised["gap_mask"], bregman, 0.0).sum(-1)
        cost = weight * (unmask_cost + insert_cost)
        for row, (index, _, _) in enumerate(chunk):
            totals[index] += float(cost[row])
    return [(total / num_samples, len(text) + 1) for total, text in zip(totals, texts)]


__all__ = ["flexmdm_nll"]
