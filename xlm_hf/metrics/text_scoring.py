"""Scoring text with a model: held-out NLL per family, and a judge causal LM's NLL of generated samples.

Held-out NLL (`sequence_nll`) returns, per sequence, its summed negative log-likelihood in nats and the number of
real tokens it covers; `text_perplexity` turns those into per-token NLL and perplexity. What each family gives:

| family | what is computed | exact? |
|---|---|---|
| ARLM | `-log p(x)`: the next-token cross-entropy over the sequence's targets | exact |
| MDLM | the continuous-time NELBO with the model's noise schedule: `E_t[w(t) Σ_masked -log p(x_i | z_t)]`, `w(t) = σ'(t) / (e^σ(t) - 1)` | upper bound |
| MLM  | the same NELBO with the MLM's own noise (mask probability t, `w(t) = 1/t`): a bound for any time-free denoiser | upper bound |
| ILM  | the insertion-order ELBO: `-E_order[log p(x, order)] - log L!` (uniform posterior over the L! orders) | upper bound |
| FlexMDM | the ELBO of its insert-and-unmask chain: the training loss's terms with the exact (uncapped) rates | upper bound |

Monte Carlo estimates use a fixed seed and `num_samples` draws per sequence, stratified over their range (times
`t` for the masked families, numbers of kept tokens for the ILM), so two evaluations of one model agree exactly.

The sequences are laid out as the family's language-model collator lays them out (`[BOS] x [EOS]` for the ARLM,
`[BOS]? x [EOS]?` for the masked families, `[CLS] [BOS] x` for the ILM) and the count is of the tokens whose
likelihood is part of the sum: the text and its end (`[EOS]`; for the ILM, which has no `[EOS]`, the decision to
stop). Padding never counts. A masked model trained with `loss_on_padding` generates its block's padding too, so
its padding is scored (in the sum), as part of how that model ends a text, but never counted.
"""

import math
from collections.abc import Sequence
from typing import Any

import torch

# The masked families' NELBO integrates over t in (0, 1]; times are kept above this so the weight stays finite.
MIN_TIME = 1e-6
MASKED_FAMILIES = ("mlm", "mdlm")
IS_BOUND = {"arlm": False, "mlm": True, "mdlm": True, "ilm": True, "flexmdm": True}


def _chunks(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _token_id(tokenizer, name: str) -> int:
    token_id = getattr(tokenizer, f"{name}_id", None)
    if token_id is None:
        raise ValueError(f"The tokenizer has no {name}; held-out NLL needs it for the family's layout.")
    return token_id


# ----- held-out NLL per family -----------------------------------------------------------------------------------


@torch.no_grad()
def sequence_nll(
    model: torch.nn.Module,
    family: str,
    texts: list[list[int]],
    collator: Any,
    *,
    num_samples: int = 8,
    seed: int = 0,
    batch_size: int = 16,
    mask_rate: float | None = None,
) -> list[tuple[float, int]]:
    """`(nll, num_tokens)` per text (token ids without special tokens), laid out as `collator` (the family's `lm`
    collator) lays out training sequences; see the module docstring for what each family computes.

    `mask_rate` (masked families only): instead of the NELBO, the mean cross-entropy of the masked tokens at that
    fixed masking rate (xlm-core's MLM validation loss), reported per masked token; not a likelihood.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    try:
        if family == "arlm":
            return _arlm_nll(model, texts, collator, batch_size)
        if family in MASKED_FAMILIES:
            return _masked_nll(model, family, texts, collator, num_samples, generator, batch_size, mask_rate)
        if family == "ilm":
            return _ilm_nll(model, texts, collator, num_samples, generator, batch_size)
        if family == "flexmdm":  # the ELBO of its insert-and-unmask chain (`xlm_hf/flexmdm/likelihood.py`)
            # imported here, not at the top: the flexmdm package imports the Trainer, which imports this module
            from ..flexmdm.likelihood import flexmdm_nll

            return flexmdm_nll(model, texts, collator, num_samples, generator, batch_size)
    finally:
        model.train(was_training)
    raise ValueError(
        f"Held-out NLL is defined for the families {', '.join(IS_BOUND)}; family {family!r} has none yet."
    )


def _arlm_nll(model, texts, collator, batch_size) -> list[tuple[float, int]]:
    """Exact: the collator's (deterministic) `[BOS] x [EOS]` rows and their shifted labels."""
    scores = []
    for chunk in _chunks(texts, batch_size):
        batch = collator([{"input_ids": text} for text in chunk])
        # packed rows (a text task's `blocks`) carry position_ids that restart after each [EOS]
        keys = ("input_ids", "attention_mask", "position_ids")
        logits = model(**{k: batch[k].to(model.device) for k in keys if k in batch}).logits.float()
        labels = batch["labels"][:, 1:].to(logits.device)
        token_nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), labels, ignore_index=-100, reduction="none"
        )
        counted = labels.ne(-100)
        for row in range(len(chunk)):
            scores.append((float(token_nll[row][counted[row]].sum()), int(counted[row].sum())))
    return scores


def _masked_layout(collator, texts: list[list[int]]) -> tuple[torch.Tensor, ...]:
    """Clean rows as the masked families' LM collator builds them: `(clean, attention_mask, maskable, counted,
    position_ids)`; `position_ids` is None unless the rows are packed (a text task's `blocks`)."""
    layout = getattr(collator, "layout", None)
    collator = getattr(collator, "collator", collator)  # a text task wraps the family's collator
    tokenizer = collator.tokenizer
    pad, eos = _token_id(tokenizer, "pad_token"), _token_id(tokenizer, "eos_token")
    add_bos, add_eos = getattr(collator, "add_bos", False), getattr(collator, "add_eos", True)
    loss_on_padding = getattr(collator, "loss_on_padding", False)
    head = [_token_id(tokenizer, "bos_token")] if add_bos else []
    tail = [eos] if add_eos else []
    room = collator.block_size - len(head) - len(tail)
    rows = [[*head, *text[:room], *tail] for text in texts]
    # with loss_on_padding the model always saw (and generated) a full block: score it as it saw it
    width = collator.block_size if loss_on_padding else max(len(row) for row in rows)
    clean = torch.full((len(rows), width), pad, dtype=torch.long)
    real = torch.zeros_like(clean, dtype=torch.bool)
    for index, row in enumerate(rows):
        clean[index, : len(row)] = torch.tensor(row, dtype=torch.long)
        real[index, : len(row)] = True
    attention_mask = torch.ones_like(clean) if loss_on_padding else real.long()
    maskable = attention_mask.bool().clone()
    if add_bos:
        maskable[:, 0] = False
    counted = real.clone()
    if add_bos:
        counted[:, 0] = False  # [BOS] is given, never predicted
    position_ids = None
    if layout == "blocks":  # packed documents: positions restart after each [EOS], as in training
        from ..tasks.text import positions_restarting_after

        position_ids = positions_restarting_after(clean[:, len(head) :], eos, len(head))
    return clean, attention_mask, maskable, counted, position_ids


def _masked_nll(model, family, texts, collator, num_samples, generator, batch_size, mask_rate):
    """The NELBO `E_t[w(t) Σ_masked -log p(x_i | z_t)]` by stratified Monte Carlo over t (or, with `mask_rate`, the
    masked-token cross-entropy at that rate)."""
    clean, attention_mask, maskable, counted, position_ids = _masked_layout(collator, texts)
    mask_id = _token_id(getattr(collator, "collator", collator).tokenizer, "mask_token")
    schedule = model.config.get_noise_schedule() if family == "mdlm" else None
    conditioned = family == "mdlm" and getattr(model.config, "time_conditioning", True)
    num_rows = clean.shape[0]
    # stratified times: draw j of row b lies in [j / K, (j + 1) / K)
    strata = torch.arange(num_samples, dtype=torch.float64)[None, :]
    t = (strata + torch.rand(num_rows, num_samples, generator=generator, dtype=torch.float64)) / num_samples
    t = t.clamp(min=MIN_TIME)
    draws = torch.rand(num_rows, num_samples, clean.shape[1], generator=generator)
    totals = torch.zeros(num_rows, dtype=torch.float64)
    masked_counts = torch.zeros(num_rows, dtype=torch.float64)
    pairs = [(row, j) for row in range(num_rows) for j in range(num_samples)]
    for chunk in _chunks(pairs, batch_size):
        rows = torch.tensor([row for row, _ in chunk])
        times = torch.stack([t[row, j] for row, j in chunk])
        if mask_rate is not None:
            probability = torch.full_like(times, float(mask_rate))
        elif schedule is not None:
            probability = schedule.mask_probability(times)
        else:
            probability = times  # the MLM's noise: each token masked with probability t
        noise = torch.stack([draws[row, j] for row, j in chunk])
        masked = maskable[rows] & (noise < probability[:, None].float())
        input_ids = clean[rows].masked_fill(masked, mask_id)
        inputs = {
            "input_ids": input_ids.to(model.device),
            "attention_mask": attention_mask[rows].to(model.device),
        }
        if position_ids is not None:
            inputs["position_ids"] = position_ids[rows].to(model.device)
        if conditioned:
            inputs["noise_level"] = schedule.sigma(times).float().to(model.device)
        logits = model(**inputs).logits.float()
        token_nll = (
            torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), clean[rows].to(logits.device), reduction="none"
            )
            .double()
            .cpu()
        )
        token_nll = torch.where(masked, token_nll, torch.zeros_like(token_nll)).sum(-1)
        if mask_rate is not None:
            weight = torch.ones_like(times)
        elif schedule is not None:
            weight = schedule.loss_weight(times)
        else:
            weight = 1.0 / times
        totals.index_add_(0, rows, token_nll * weight)
        masked_counts.index_add_(0, rows, masked.sum(-1).double())
    if mask_rate is not None:
        return [(float(totals[row]), int(masked_counts[row])) for row in range(num_rows)]
    return [(float(totals[row]) / num_samples, int(counted[row].sum())) for row in range(num_rows)]


def _ilm_nll(model, texts, collator, num_samples, generator, batch_size):
    """The insertion-order ELBO with a uniform posterior over orders.

    A text of L tokens is built by L insertions then a stop. For one order, `log p(x, order) = Σ_k [log p(gap_k,
    token_k | x_S_k) + log p(continue | x_S_k)] + log p(stop | x)`, where `x_S_k` holds k of the tokens. Under a
    uniform order, `x_S_k` is a uniform k-subset and the next token a uniform missing one, so the expectation of
    step k is the ILM training cross-entropy at k kept tokens (`insertion_loss`); and `log p(x) >= E_order[log p(x,
    order)] + log L!`. The sum over k is estimated by `L` times the mean over `num_samples` stratified draws of k.
    """
    from ..ilm.collator_ilm import attribute_deletions

    collator = getattr(collator, "collator", collator)  # a text task wraps the family's collator
    tokenizer = collator.tokenizer
    cls, bos, pad = (_token_id(tokenizer, name) for name in ("cls_token", "bos_token", "pad_token"))
    room = collator.block_size - 2  # as ILMCollatorForLM: [CLS] [BOS] and every target fit the block
    texts = [list(text[:room]) for text in texts]
    # (text index, kept positions): K draws per text with L >= 1, plus the full text (the stop decision)
    states: list[tuple[int, list[int]]] = []
    for index, text in enumerate(texts):
        length = len(text)
        states.append((index, list(range(length))))
        if length == 0:
            continue
        for j in range(num_samples):
            kept_count = int((j + float(torch.rand((), generator=generator))) / num_samples * length)
            kept_count = min(kept_count, length - 1)
            order = torch.randperm(length, generator=generator)[:kept_count]
            states.append((index, sorted(order.tolist())))
    step_costs = [0.0] * len(texts)
    stop_costs = [0.0] * len(texts)
    for chunk in _chunks(states, batch_size):
        sequences, targets = [], []
        for index, kept_positions in chunk:
            text = texts[index]
            deleted_positions = sorted(set(range(len(text))) - set(kept_positions))
            kept, gaps, deleted = attribute_deletions(text, deleted_positions)
            sequences.append([cls, bos, *kept])
            targets.append(([1 + gap for gap in gaps], deleted))  # [BOS] is column 1
        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), width), pad, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, sequence in enumerate(sequences):
            input_ids[row, : len(sequence)] = torch.tensor(sequence)
            attention_mask[row, : len(sequence)] = 1
        max_deleted = max([1] + [len(d) for _, d in targets])
        target_positions = torch.full((len(sequences), max_deleted), -100, dtype=torch.long)
        target_tokens = torch.full_like(target_positions, -100)
        for row, (positions, tokens) in enumerate(targets):
            if positions:
                target_positions[row, : len(positions)] = torch.tensor(positions)
                target_tokens[row, : len(tokens)] = torch.tensor(tokens)
        device = model.device
        output = model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            cls_position=torch.zeros(len(sequences), dtype=torch.long, device=device),
            target_positions=target_positions.to(device),
            target_tokens=target_tokens.to(device),
        )
        # class 0 of the stopping head (binary or length) means "nothing left to insert"
        stop_log_probs = torch.log_softmax(output.stopping_logits.float(), dim=-1)
        log_stop = stop_log_probs[:, 0].double().cpu()
        log_continue = torch.logsumexp(stop_log_probs[:, 1:], dim=-1).double().cpu()
        insertion = output.insertion_loss.double().cpu()
        for row, (index, kept_positions) in enumerate(chunk):
            if len(kept_positions) == len(texts[index]):
                stop_costs[index] = float(-log_stop[row])
            else:
                step_costs[index] += float(insertion[row] - log_continue[row])
    scores = []
    for index, text in enumerate(texts):
        length = len(text)
        steps = length * step_costs[index] / num_samples if length else 0.0
        scores.append((steps + stop_costs[index] - math.lgamma(length + 1), length + 1))
    return scores


# ----- judge: generative perplexity ------------------------------------------------------------------------------


def load_judge(name_or_path: str, device: torch.device | str | None = None):
    """A judge causal LM and its tokenizer: any `AutoModelForCausalLM` path or Hub id (an exported xlm-hf ARLM
    folder too: its code is loaded with `trust_remote_code`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=True)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, trust_remote_code=True)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"The judge {name_or_path!r} cannot be loaded as a causal LM ({str(error).splitlines()[0]}); give a "
            "folder or Hub id of an AutoModelForCausalLM, e.g. an exported ARLM (`xlm-hf train text_..._arlm`)."
        ) from None
    if device is not None:
        model.to(device)
    return model.eval(), tokenizer


def judge_context_length(model, tokenizer) -> int:
    """The longest window the judge reads: its position embeddings, bounded by its tokenizer's maximum."""
    limits = [
        getattr(model.config, name, None)
        for name in ("max_position_embeddings", "n_positions", "max_seq_len")
    ]
    limits.append(tokenizer.model_max_length if tokenizer.model_max_length < 1_000_000 else None)
    limits = [int(limit) for limit in limits if limit]
    if not limits:
        raise ValueError("The judge does not say how long a context it reads; set judge_max_length.")
    return min(limits)


def default_add_bos(model) -> bool:
    """xlm-hf ARLMs read `[BOS] text` (their LM layout): they get `[BOS]`; other judges get the text alone, as
    xlm-core scored with GPT-2 (the first token is then context, not scored)."""
    return str(getattr(model.config, "model_type", "")).startswith("xlm-hf-")


@torch.no_grad()
def judge_nll(
    texts: list[str],
    model,
    tokenizer,
    *,
    max_length: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    add_bos: bool | None = None,
    add_eos: bool = False,
) -> list[tuple[float, int]]:
    """`(nll, length)` per text under the judge: the text re-tokenized by the judge's tokenizer without special
    tokens (then `[BOS]`/`[EOS]` added when asked), every token after the first predicted from those before it.

    Texts longer than the judge's context (`max_length`, default the judge's own) are scored in windows of
    `max_length` tokens that advance by `stride` (default `max_length // 2`): each token is scored once, by the
    first window that holds it with context, so a long text keeps at least `max_length - stride` tokens of context.
    Windows of all texts are batched together (`batch_size`), right-padded.
    """
    max_length = max_length or judge_context_length(model, tokenizer)
    if max_length < 2:
        raise ValueError(f"The judge's window must hold at least 2 tokens, got max_length={max_length}.")
    stride = stride or max(1, max_length // 2)
    if not 1 <= stride <= max_length - 1:
        raise ValueError(
            f"The judge's stride must be in [1, max_length - 1 = {max_length - 1}], got {stride}."
        )
    add_bos = default_add_bos(model) if add_bos is None else add_bos
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if add_bos and bos is None:
        raise ValueError("judge_add_bos is set but the judge's tokenizer has no bos_token.")
    if add_eos and eos is None:
        raise ValueError("judge_add_eos is set but the judge's tokenizer has no eos_token.")
    windows: list[
        tuple[int, list[int], int]
    ] = []  # (text index, window ids, number of scored tokens at its end)
    for index, text in enumerate(texts):
        # long texts are expected here (they are scored in windows): no warning about the judge's maximum length
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"] if text else []
        ids = [*([bos] if add_bos else []), *ids, *([eos] if add_eos else [])]
        scored_until = 1  # the first token has no context
        begin = 0
        while scored_until < len(ids):
            end = min(begin + max_length, len(ids))
            windows.append((index, ids[begin:end], end - scored_until))
            scored_until = end
            begin += stride
    totals = [0.0] * len(texts)
    lengths = [0] * len(texts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos if eos is not None else 0)
    device = model.device
    for chunk in _chunks(windows, batch_size):
        width = max(len(w) for _, w, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        targets = torch.full_like(input_ids, -100)
        for row, (_, window, num_scored) in enumerate(chunk):
            input_ids[row, : len(window)] = torch.tensor(window)
            attention_mask[row, : len(window)] = 1
            start = len(window) - num_scored
            targets[row, start : len(window)] = input_ids[row, start : len(window)]
        logits = model(
            input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)
        ).logits.float()
        token_nll = (
            torch.nn.functional.cross_entropy(
                logits[:, :-1].transpose(1, 2), targets[:, 1:].to(device), ignore_index=-100, reduction="none"
            )
            .double()
            .cpu()
        )
        for row, (index, _, num_scored) in enumerate(chunk):
            totals[index] += float(token_nll[row].sum())
            lengths[index] += num_scored
    return list(zip(totals, lengths))


__all__ = [
    "IS_BOUND",
    "sequence_nll",
    "load_judge",
    "judge_nll",
    "judge_context_length",
    "default_add_bos",
]
