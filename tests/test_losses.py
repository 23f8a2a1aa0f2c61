"""One loss per family: `<family>_loss` in `modeling/` returns (sum, count); `forward(labels=...)` divides the sum by
`num_items_in_batch` or the count, and the family's Trainer trains on exactly that. The MDLM's configuration owns
its noise schedule."""

import inspect
import math

import pytest
import torch
from test_masked_trainers import EXAMPLES, TINY  # the same tiny models and examples as the Trainer tests
from transformers import TrainingArguments
from xlm_hf.modeling.modeling_arlm import arlm_loss
from xlm_hf.modeling.modeling_ilm import ilm_loss
from xlm_hf.modeling.modeling_mdlm import mdlm_loss
from xlm_hf.modeling.modeling_mlm import mlm_loss

from xlm_hf.experiment import ExperimentError, load_experiment
from xlm_hf.families import get_family

FAMILIES = ["arlm", "mlm", "mdlm", "ilm"]
MASK = 2


def make_model(family: str, **overrides):
    torch.manual_seed(0)
    options = dict(TINY)
    if family == "mdlm":  # a zero output layer would make every loss log(vocab)
        options.update(time_embedding_dim=16, zero_init_output=False)
    options.update(overrides)
    spec = get_family(family)
    return spec.model_class(spec.config_class(**options)).eval()


def make_batch(family: str, tokenizer, **options) -> dict[str, torch.Tensor]:
    collator_class = get_family(family).collators["seq2seq"]
    if "seed" in inspect.signature(collator_class).parameters:
        options.setdefault("seed", 0)
    collator = collator_class(tokenizer=tokenizer, input_block_size=6, block_size=6, **options)
    return collator(EXAMPLES)


def forward_inputs(family: str, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch as a user calls the model's forward with it (the collators' names for the loss inputs)."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if family == "ilm":
        keys = ("cls_position", "target_positions", "target_tokens")
        return {**inputs, **{key: batch[key] for key in keys}}
    if family == "mdlm":
        inputs.update(noise_level=batch["total_noise"], noise_rate=batch["noise_rate"])
    return {**inputs, "labels": batch["labels"]}


def loss_sum_and_count(family: str, model, batch: dict[str, torch.Tensor], logits, stopping_logits=None):
    """The family's loss function called directly."""
    if family == "arlm":
        return arlm_loss(logits, batch["labels"])
    if family == "mlm":
        return mlm_loss(logits, batch["labels"])
    if family == "mdlm":
        return mdlm_loss(
            logits,
            batch["labels"],
            batch["input_ids"],
            batch["total_noise"],
            model.config,
            noise_rate=batch["noise_rate"],
        )
    config = model.config
    return ilm_loss(
        logits,
        stopping_logits,
        batch["attention_mask"],
        batch["cls_position"],
        batch["target_positions"],
        batch["target_tokens"],
        stopping_head=config.stopping_head,
        stopping_loss_weight=config.stopping_loss_weight,
        stopping_class_weight=config.stopping_class_weight,
    )


def make_trainer(family: str, model, tmp_path):
    args = TrainingArguments(
        output_dir=str(tmp_path), report_to="none", remove_unused_columns=False, use_cpu=True
    )
    return get_family(family).trainer_class(model=model, args=args)


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_and_trainer_compute_the_same_loss(family, star_tokenizer, tmp_path):
    model = make_model(family)
    trainer = make_trainer(family, model, tmp_path)
    batch = make_batch(family, star_tokenizer)
    with torch.no_grad():
        for num_items in (None, torch.tensor(37)):
            forward = model(**forward_inputs(family, batch), num_items_in_batch=num_items)
            trained = trainer.compute_loss(model, batch, num_items_in_batch=num_items)
            assert torch.equal(forward.loss, trained), (family, num_items)
        stopping_logits = getattr(forward, "stopping_logits", None)
        loss_sum, count = loss_sum_and_count(family, model, batch, forward.logits, stopping_logits)
    assert torch.equal(loss_sum / 37, trained)
    torch.testing.assert_close(model(**forward_inputs(family, batch)).loss, loss_sum / count)
    # count is what Trainer counts in `labels` as num_items_in_batch: the two normalisations agree
    assert int(count) == int(trainer._get_num_items_in_batch([batch], torch.device("cpu")))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_loss_function_returns_a_sum_and_a_count(family, star_tokenizer):
    model = make_model(family)
    batch = make_batch(family, star_tokenizer)
    with torch.no_grad():
        outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    stopping_logits = getattr(outputs, "stopping_logits", None)
    whole = loss_sum_and_count(family, model, batch, outputs.logits, stopping_logits)
    parts = [
        loss_sum_and_count(
            family,
            model,
            {k: v[rows] for k, v in batch.items() if torch.is_tensor(v)},
            outputs.logits[rows],
            stopping_logits[rows] if stopping_logits is not None else None,
        )
        for rows in (slice(0, 3), slice(3, None))
    ]
    # sums and counts add up over the rows of a batch: what makes gradient accumulation exact
    torch.testing.assert_close(whole[0], parts[0][0] + parts[1][0])
    assert int(whole[1]) == int(parts[0][1]) + int(parts[1][1]) > 0


@pytest.mark.parametrize("normalization", ["elbo", "masked_mean"])
def test_mdlm_forward_is_the_training_loss_for_both_normalisations(normalization, star_tokenizer, tmp_path):
    model = make_model("mdlm")
    trainer = make_trainer("mdlm", model, tmp_path)
    batch = make_batch("mdlm", star_tokenizer, loss_normalization=normalization)
    with torch.no_grad():
        forward = model(**forward_inputs("mdlm", batch)).loss
        unweighted = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(forward, trainer.compute_loss(model, batch))
    masked = batch["input_ids"].eq(MASK)
    ce = torch.nn.functional.cross_entropy(unweighted[masked], batch["labels"][masked], reduction="none")
    weights = (1 / batch["t"])[:, None].expand_as(masked)[masked]  # 1/t for the log-linear schedule
    expected = (ce * weights).sum() / batch["labels"].ne(-100).sum()
    torch.testing.assert_close(forward, expected, rtol=1e-5, atol=1e-6)


def test_mdlm_forward_takes_the_rate_and_the_noise_from_its_schedule(star_tokenizer):
    model = make_model("mdlm", time_conditioning=False, sigma_max=5.0)
    batch = make_batch("mdlm", star_tokenizer)
    schedule = model.config.get_noise_schedule()
    sigma = schedule.sigma(batch["t"])
    inputs = forward_inputs("mdlm", batch)
    with torch.no_grad():
        given = model(**{**inputs, "noise_level": sigma, "noise_rate": schedule.rate(batch["t"])}).loss
        derived = model(**{**inputs, "noise_level": sigma, "noise_rate": None}).loss
        torch.testing.assert_close(derived, given, rtol=1e-4, atol=1e-6)
        # without noise_level (a model that ignores time): sigma(t) estimated from the masked fraction
        estimated = model(**{**inputs, "noise_level": None, "noise_rate": None}).loss
    assert math.isfinite(float(estimated)) and float(estimated) > 0


def test_mdlm_rows_without_masks_add_nothing(star_tokenizer):
    model = make_model("mdlm")
    ids = torch.tensor([[7, 8, MASK, 10], [7, 8, 9, 10]])
    labels = torch.tensor([[7, 8, 9, 10], [7, 8, 9, 10]])
    with torch.no_grad():
        # the second row's estimated sigma is 0 (weight 1/0): its labels count in the denominator only
        loss = model(input_ids=ids, labels=labels).loss
        first = model(input_ids=ids[:1], labels=labels[:1]).loss
    assert math.isfinite(float(loss))
    torch.testing.assert_close(loss, first / 2)


def test_mdlm_collator_sigma_max_moved_to_the_model(tmp_path):
    with pytest.warns(FutureWarning, match="collator.sigma_max is deprecated: it moved to model.sigma_max"):
        experiment = load_experiment("star_easy_mdlm", ["collator.sigma_max=10.0"])
    assert "sigma_max" not in experiment["collator"] and experiment["model"]["sigma_max"] == 10.0
    # an old experiment that set the schedule on the collator only
    old = tmp_path / "old_mdlm.yaml"
    old.write_text(
        "family: mdlm\ndefaults: [base/star_easy]\ncollator: {sigma_max: 5.0, noise_schedule: loglinear}\n"
    )
    with pytest.warns(FutureWarning):
        moved = load_experiment(str(old))
    assert moved["model"]["sigma_max"] == 5.0 and moved["model"]["noise_schedule"] == "loglinear"
    assert "sigma_max" not in moved["collator"] and "noise_schedule" not in moved["collator"]
    with pytest.raises(ExperimentError, match="Remove collator.sigma_max and set model.sigma_max"):
        load_experiment("star_easy_mdlm", ["collator.sigma_max=5.0"])


def test_built_in_experiments_set_the_noise_schedule_once():
    for name in ("star_easy_mdlm", "star_medium_mdlm", "star_hard_mdlm"):
        experiment = load_experiment(name)
        assert "sigma_max" not in experiment["collator"] and experiment["model"]["sigma_max"] == 10.0
