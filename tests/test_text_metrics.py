"""Text metrics: held-out NLL per family (exact or bound), generative perplexity under a judge, entropy,
distinct-n, infilling reports, and the eval task kinds that run them (experiment checks, Trainer, `xlm-hf eval`)."""

import itertools
import json
import math

import pytest
import torch
from datasets import Dataset
from model_contract import TinyFamily
from transformers import TrainingArguments

from xlm_hf.experiment import ExperimentError, load_experiment
from xlm_hf.export import export_model
from xlm_hf.families import get_family
from xlm_hf.metrics import load_metric
from xlm_hf.metrics.text_eval import length_matched_references, text_eval_task_parts
from xlm_hf.metrics.text_scoring import judge_nll, load_judge, sequence_nll
from xlm_hf.trainer import EvalTask

TEXTS = [[8, 9, 10, 11, 12], [13, 14, 15], [20, 21, 22, 23, 24, 25, 26], [7, 7, 8]]
FAMILY_OVERRIDES = {
    "arlm": {},
    "mlm": {},
    "mdlm": {"zero_init_output": False, "time_embedding_dim": 16},
    "ilm": {},
}


def tiny(family: str, **overrides):
    spec = TinyFamily()
    spec.family, spec.config_overrides = family, {**FAMILY_OVERRIDES[family], **overrides}
    return spec.make_model(), spec.make_tokenizer()


def lm_collator(family: str, tokenizer, **options):
    return get_family(family).collators["lm"](tokenizer=tokenizer, block_size=16, **options)


# ----- the evaluate modules ---------------------------------------------------------------------------------------


def test_perplexity_is_total_nll_over_total_tokens():
    result = load_metric("text_perplexity").compute(nll=[3.0, 6.0], num_tokens=[1, 5])
    assert result["nll"] == pytest.approx(1.5)
    assert result["perplexity"] == pytest.approx(math.exp(1.5))
    assert result["num_tokens"] == 6


def test_generative_perplexity_has_the_per_sample_mean_and_the_total():
    result = load_metric("text_generative_perplexity").compute(nll=[2.0, 12.0, 0.0], length=[2, 3, 0])
    assert result["generative_perplexity"] == pytest.approx((math.exp(1.0) + math.exp(4.0)) / 2)
    assert result["total_generative_perplexity"] == pytest.approx(math.exp(14.0 / 5))
    assert (result["num_scored"], result["num_unscored"]) == (2, 1)


def test_entropy_and_distinct_n():
    entropy = load_metric("text_entropy").compute(predictions=[[1, 1, 1, 1], [1, 2, 3, 4]])
    assert entropy["entropy"] == pytest.approx(math.log(4) / 2)
    result = load_metric("text_distinct_n").compute(predictions=[[1, 2, 1, 2], [1, 2, 3, 4]])
    # unigrams: 8, different 4; bigrams: (1,2) (2,1) (1,2) | (1,2) (2,3) (3,4): 6, different 4
    assert result["distinct_1"] == pytest.approx(4 / 8)
    assert result["distinct_2"] == pytest.approx(4 / 6)
    assert result["repetition_1"] == pytest.approx((1 - 2 / 4 + 0) / 2)
    assert result["repetition_2"] == pytest.approx((1 - 2 / 3 + 0) / 2)
    assert set(result) == {f"{kind}_{n}" for kind in ("distinct", "repetition") for n in range(1, 5)}


# ----- held-out NLL ------------------------------------------------------------------------------------------------


def test_arlm_nll_is_exact_and_matches_the_models_own_loss():
    model, tokenizer = tiny("arlm")
    collator = lm_collator("arlm", tokenizer)
    scores = sequence_nll(model, "arlm", TEXTS, collator, batch_size=3)
    assert [count for _, count in scores] == [len(t) + 1 for t in TEXTS]  # the text and its [EOS]
    batch = collator([{"input_ids": t} for t in TEXTS])
    with torch.no_grad():
        loss = model(**batch).loss  # mean over every target of the batch
    total = sum(nll for nll, _ in scores) / sum(count for _, count in scores)
    assert total == pytest.approx(float(loss), rel=1e-5)


@pytest.mark.parametrize("family", ["mlm", "mdlm"])
def test_masked_nelbo_of_a_uniform_model(family):
    # A model with zero output weights predicts every token with probability 1/V. Then the NELBO is
    # independent of the model's inputs: E_t[w(t) * #masked] * log V = (sum over maskable tokens of E[w(t) * P(masked at t)]) log V,
    # and w(t) * P(masked at t) = a (the log-linear schedule's 1 - exp(-sigma_max); 1 for the MLM's own noise).
    model, tokenizer = tiny(family)
    torch.nn.init.zeros_(model.lm_head.weight)
    texts = [list(range(7, 7 + 8))] * 32
    collator = lm_collator(family, tokenizer, loss_on_padding=False)
    scores = sequence_nll(model, family, texts, collator, num_samples=32, seed=0)
    a = 1 - math.exp(-model.config.sigma_max) if family == "mdlm" else 1.0
    per_token = sum(nll for nll, _ in scores) / sum(count for _, count in scores)
    assert per_token == pytest.approx(a * math.log(model.config.vocab_size), rel=0.15)
    # fixed seed: the same estimate every time; another seed: another estimate
    again = sequence_nll(model, family, texts[:4], collator, num_samples=4, seed=3)
    assert again == sequence_nll(model, family, texts[:4], collator, num_samples=4, seed=3)
    assert again != sequence_nll(model, family, texts[:4], collator, num_samples=4, seed=4)


def test_masked_nll_counts_real_tokens_and_masked_rate_option():
    model, tokenizer = tiny("mdlm")
    collator = lm_collator("mdlm", tokenizer, loss_on_padding=False)
    scores = sequence_nll(model, "mdlm", TEXTS, collator, num_samples=2)
    assert [count for _, count in scores] == [len(t) + 1 for t in TEXTS]
    assert all(nll >= 0 for nll, _ in scores) and sum(nll for nll, _ in scores) > 0
    # at a fixed rate the count is of the masked tokens, at most the real ones of each draw
    masked = sequence_nll(model, "mdlm", TEXTS, collator, num_samples=2, mask_rate=1.0)
    assert [count for _, count in masked] == [2 * (len(t) + 1) for t in TEXTS]


def test_mdlm_bound_keeps_the_nelbo_weights_when_training_caps_them():
    model, tokenizer = tiny("mdlm")
    collator = lm_collator("mdlm", tokenizer, loss_on_padding=False)
    nelbo = sequence_nll(model, "mdlm", TEXTS, collator, num_samples=2, seed=0)
    model.config.loss_weight_cap = 1.0  # a training option: the bound must not change with it
    assert sequence_nll(model, "mdlm", TEXTS, collator, num_samples=2, seed=0) == nelbo


def _ilm_exact(model, text: list[int]) -> tuple[float, float]:
    """(-log p(x), -ELBO) of an ILM by enumerating every insertion order of a text of distinct tokens."""
    log_paths = []
    for order in itertools.permutations(range(len(text))):
        log_p, kept = 0.0, []
        for position in order:
            sequence = [1, 4, *[text[i] for i in sorted(kept)]]  # [CLS] [BOS] kept
            gap = sum(1 for i in kept if i < position)
            with torch.no_grad():
                output = model(input_ids=torch.tensor([sequence]))
            logits = output.logits[0].float().clone()
            logits[0] = float("-inf")  # [CLS] is no gap
            log_p += float(torch.log_softmax(logits.flatten(), -1).view_as(logits)[1 + gap, text[position]])
            stop = torch.log_softmax(output.stopping_logits[0].float(), -1)
            log_p += float(torch.logsumexp(stop[1:], -1))
            kept.append(position)
        with torch.no_grad():
            stop = torch.log_softmax(
                model(input_ids=torch.tensor([[1, 4, *text]])).stopping_logits[0].float(), -1
            )
        log_paths.append(log_p + float(stop[0]))
    log_likelihood = torch.logsumexp(torch.tensor(log_paths), 0).item()
    elbo = sum(log_paths) / len(log_paths) + math.lgamma(len(text) + 1)
    return -log_likelihood, -elbo


def test_ilm_bound_is_the_insertion_order_elbo_and_bounds_the_exact_nll():
    model, tokenizer = tiny("ilm")
    text = [9, 12, 15]
    exact_nll, negative_elbo = _ilm_exact(model, text)
    assert negative_elbo >= exact_nll
    collator = lm_collator("ilm", tokenizer)
    [(bound, count)] = sequence_nll(model, "ilm", [text], collator, num_samples=300, seed=0)
    assert count == len(text) + 1  # the tokens and the stop decision
    assert bound == pytest.approx(negative_elbo, rel=0.02)


def test_unsupported_family_is_a_clear_error():
    model, tokenizer = tiny("arlm")
    with pytest.raises(ValueError, match="Held-out NLL is defined for"):
        sequence_nll(model, "no_such_family", TEXTS, None)


# ----- the judge ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    model, tokenizer = tiny("arlm")
    path = tmp_path_factory.mktemp("judge") / "arlm"
    export_model(model, tokenizer, path, "arlm")
    return path


def _direct_nll(model, ids: list[int], scored_from: int = 1) -> float:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    log_probs = torch.log_softmax(logits[:-1], -1)
    return -sum(float(log_probs[i - 1, ids[i]]) for i in range(scored_from, len(ids)))


def test_judge_scores_retokenized_text_with_windows_and_batches(judge_dir):
    model, tokenizer = load_judge(str(judge_dir))
    bos = tokenizer.bos_token_id
    text = "8 9 10 11 12 13 14"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    # an xlm-hf ARLM reads [BOS] text: every text token is scored
    [(nll, length)] = judge_nll([text], model, tokenizer)
    assert length == len(ids)
    assert nll == pytest.approx(_direct_nll(model, [bos, *ids]), rel=1e-5)
    # without [BOS] (as xlm-core scored with GPT-2) the first token is context only
    [(nll, length)] = judge_nll([text], model, tokenizer, add_bos=False)
    assert length == len(ids) - 1
    assert nll == pytest.approx(_direct_nll(model, ids), rel=1e-5)
    # windows of 4 tokens moving by 2: tokens 1-3 from [0:4], 4-5 from [2:6], 6-7 from [4:8]
    full = [bos, *ids]
    [(windowed, length)] = judge_nll([text], model, tokenizer, max_length=4, stride=2)
    assert length == len(ids)
    expected = (
        _direct_nll(model, full[:4])
        + _direct_nll(model, full[2:6], scored_from=2)
        + _direct_nll(model, full[4:8], scored_from=2)
    )
    assert windowed == pytest.approx(expected, rel=1e-5)
    assert abs(windowed - _direct_nll(model, full)) > 1e-4  # less context: another value
    texts = [text, "8", "", "9 9 9"]
    one_by_one = judge_nll(texts, model, tokenizer, batch_size=1)
    batched = judge_nll(texts, model, tokenizer, batch_size=8)  # right padding changes nothing
    assert [length for _, length in one_by_one] == [length for _, length in batched] == [7, 1, 0, 3]
    assert [nll for nll, _ in one_by_one] == pytest.approx([nll for nll, _ in batched], rel=1e-5)
    assert judge_nll([""], model, tokenizer)[0] == (0.0, 0)


def test_a_missing_judge_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot be loaded as a causal LM"):
        load_judge(str(tmp_path))


# ----- eval task kinds ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("eval_tasks.ppl={kind: perplexity, judge: x}", r"eval_tasks\.ppl\.judge is an option of kind"),
        ("eval_tasks.ppl={kind: perplexity, num_samples: 0}", r"num_samples must be at least 1"),
        ("eval_tasks.ppl={kind: perplexity, metrics: [exact_match]}", r"computes its own metrics"),
        ("eval_tasks.g={kind: generative_perplexity, judge: 3}", r"eval_tasks\.g\.judge must be"),
        ("eval_tasks.g={kind: generative_perplexity, judge_max_length: 8, judge_stride: 8}", r"judge_stride"),
        ("eval_tasks.i={kind: infill, gap_fraction: 1.5}", r"gap_fraction must be in"),
        ("eval_tasks.l={kind: loss, num_samples: 3}", r"not of kind loss"),
    ],
)
def test_experiment_checks_text_eval_tasks(override, message):
    with pytest.raises(ExperimentError, match=message):
        load_experiment("star_easy_arlm", [override])


def build_text_eval_task(name, spec, dataset, family, experiment, tokenizer, task_info, block_size):
    """The eval task `xlm_hf.jobs.build_eval_tasks` builds for a text kind."""
    collator, options = text_eval_task_parts(name, spec, family, experiment, tokenizer, task_info, block_size)
    return EvalTask(name, dataset, collator, kind=spec["kind"], options=options)


def _trainer(family: str, model, tokenizer, tmp_path, tasks):
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", per_device_eval_batch_size=4)
    return get_family(family).trainer_class(
        model=model, args=args, processing_class=tokenizer, eval_tasks=tasks, generation_kwargs={}
    )


@pytest.mark.parametrize("family", ["arlm", "mlm", "mdlm", "ilm"])
def test_perplexity_task_runs_in_the_trainer(family, tmp_path):
    model, tokenizer = tiny(family)
    dataset = Dataset.from_list([{"input_ids": t} for t in TEXTS])
    task = build_text_eval_task(
        "ppl",
        {"kind": "perplexity", "num_samples": 2},
        dataset,
        get_family(family),
        {"data": {"task": "tiny"}},
        tokenizer,
        None,
        16,
    )
    metrics = _trainer(family, model, tokenizer, tmp_path, {"ppl": task}).evaluate()
    assert metrics["eval_ppl_is_bound"] == (0.0 if family == "arlm" else 1.0)
    assert metrics["eval_ppl_perplexity"] == pytest.approx(math.exp(metrics["eval_ppl_nll"]))
    assert metrics["eval_ppl_num_tokens"] == sum(len(t) + 1 for t in TEXTS)


def test_generative_perplexity_task_writes_samples_and_metrics(judge_dir, tmp_path):
    model, tokenizer = tiny("mdlm")
    dataset = Dataset.from_list([{"input_ids": t} for t in TEXTS])
    spec = {"kind": "generative_perplexity", "num_samples": 5, "max_new_tokens": 6, "judge": str(judge_dir)}
    task = build_text_eval_task("gen", spec, dataset, get_family("mdlm"), {}, tokenizer, None, 16)
    metrics = _trainer("mdlm", model, tokenizer, tmp_path, {"gen": task}).evaluate()
    rows = [
        json.loads(line)
        for line in (tmp_path / "predictions" / "gen" / "step=0.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 5
    scored = [row for row in rows if row["judge_length"]]
    assert metrics["eval_gen_num_scored"] == len(scored)
    expected = sum(row["judge_perplexity"] for row in scored) / len(scored)
    assert metrics["eval_gen_generative_perplexity"] == pytest.approx(expected, rel=1e-6)
    for key in ("entropy", "reference_entropy", "distinct_1", "repetition_4", "total_generative_perplexity"):
        assert f"eval_gen_{key}" in metrics
    # a fixed seed: the same samples at the next evaluation
    again = _trainer("mdlm", model, tokenizer, tmp_path / "again", {"gen": task}).evaluate()
    assert again["eval_gen_generative_perplexity"] == metrics["eval_gen_generative_perplexity"]


def test_generative_perplexity_needs_a_judge_before_training(tmp_path):
    model, tokenizer = tiny("arlm")
    dataset = Dataset.from_list([{"input_ids": t} for t in TEXTS])
    with pytest.raises(ValueError, match=r"outputs/nowhere_arlm.*train and export the ARLM first"):
        build_text_eval_task(
            "gen",
            {"kind": "generative_perplexity"},
            dataset,
            get_family("arlm"),
            {"data": {"task": "nowhere"}},
            tokenizer,
            None,
            16,
        )


@pytest.mark.parametrize("family", ["mlm", "ilm"])
def test_infill_task_reports_each_example(family, tmp_path):
    model, tokenizer = tiny(family)
    dataset = Dataset.from_list([{"input_ids": t} for t in TEXTS])
    spec = {"kind": "infill", "gap_fraction": 0.4, "max_new_tokens": 4}
    task = build_text_eval_task("fill", spec, dataset, get_family(family), {}, tokenizer, None, 16)
    metrics = _trainer(family, model, tokenizer, tmp_path, {"fill": task}).evaluate()
    rows = [
        json.loads(line)
        for line in (tmp_path / "predictions" / "fill" / "step=0.jsonl").read_text().splitlines()
    ]
    assert len(rows) == len(TEXTS) == metrics["eval_fill_infill_examples"]
    for row, text in zip(rows, TEXTS):
        assert {"prompt", "fill", "reference", "text"} <= set(row)
        assert "[MASK]" in row["prompt"]
        assert row["reference_length"] == max(1, min(len(text) - 1, round(0.4 * len(text))))
        if family == "mlm":  # fixed length: at most the gap's length (an untrained model may write [PAD]s)
            assert row["fill_length"] <= row["reference_length"]
        # the visible tokens are kept, in order, around the fill
        start = row["prompt"].split().index("[MASK]")
        visible = [w for w in row["prompt"].split() if w != "[MASK]"]
        assert row["text"].split()[:start] == visible[:start]
        assert row["text"].split()[len(row["text"].split()) - (len(visible) - start) :] == visible[start:]
    assert ("eval_fill_infill_token_accuracy" in metrics) == (family == "mlm")


def test_infill_task_refuses_a_family_that_does_not_infill():
    model, tokenizer = tiny("arlm")
    dataset = Dataset.from_list([{"input_ids": t} for t in TEXTS])
    with pytest.raises(ValueError, match="does not infill"):
        build_text_eval_task("fill", {"kind": "infill"}, dataset, get_family("arlm"), {}, tokenizer, None, 16)


def test_reference_text_is_cut_to_each_samples_length():
    """Short samples meet equally short reference text (entropy grows with length); empty samples are skipped."""
    documents = [list(range(10)), list(range(20, 30)), list(range(40, 50))]
    cut = length_matched_references(documents, sample_lengths=[2, 0, 5], default_length=7)
    assert cut == [[0, 1], list(range(20, 25)), [40, 41]]
    # with no sample at all, the generation length
    assert length_matched_references(documents[:1], sample_lengths=[0], default_length=7) == [list(range(7))]
