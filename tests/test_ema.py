"""EMA of the weights (`ema:` section, xlm_hf/ema.py): the average's arithmetic, evaluation and export with the
averaged weights, checkpoints that carry the average so that a resumed run ends exactly like an uninterrupted one."""

import shutil

import pytest
import torch
from safetensors.torch import load_file

from xlm_hf import jobs
from xlm_hf.ema import EMA_FILE, EMACallback
from xlm_hf.experiment import ExperimentError, load_experiment

TINY = [
    "model.hidden_size=32",
    "model.num_hidden_layers=1",
    "model.num_attention_heads=2",
    "model.intermediate_size=64",
    "data.max_train_samples=40",
    "data.max_eval_samples=16",
    "training.per_device_train_batch_size=8",
    "training.per_device_eval_batch_size=16",
    "training.max_steps=8",
    "training.learning_rate=0.01",
    "training.warmup_steps=0",
    "training.eval_strategy=steps",
    "training.eval_steps=4",
    "training.save_strategy=steps",
    "training.save_steps=4",
    "training.logging_steps=4",
    "training.disable_tqdm=true",
    "ema.decay=0.8",
    "ema.use_num_updates=false",
]


def test_average_follows_the_update_rule():
    model = torch.nn.Linear(2, 1, bias=False)
    ema = EMACallback(decay=0.9, use_num_updates=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # the first call takes the weights as they are
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), 0.9 * 1.0 + 0.1 * 3.0))
    ema.update(model)
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), 0.9 * 1.2 + 0.1 * 3.0))
    assert ema.num_updates == 2


def test_warm_up_caps_the_decay_like_torch_ema():
    ema = EMACallback(decay=0.9999)
    assert ema.current_decay() == pytest.approx(1 / 10)
    ema.num_updates = 1500
    assert ema.current_decay() == pytest.approx(1501 / 1510)  # far below 0.9999 at CPU budgets
    assert EMACallback(decay=0.5).current_decay() == pytest.approx(0.1)


def test_swapped_in_puts_the_raw_weights_back():
    model = torch.nn.Linear(2, 2)
    ema = EMACallback(decay=0.5, use_num_updates=False)
    ema.update(model)
    raw = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    trained = {name: p.detach().clone() for name, p in model.named_parameters()}
    with ema.swapped_in(model):
        for name, p in model.named_parameters():
            assert torch.allclose(p, raw[name] + 0.5)
    for name, p in model.named_parameters():
        assert torch.equal(p, trained[name])


@pytest.mark.parametrize(
    "override, message",
    [
        ("ema.decay=1.5", "ema.decay must be a number in"),
        ("ema.rate=0.9", "Unknown key"),
        ("ema=0.9", "mapping"),
    ],
)
def test_bad_ema_sections_are_clear_errors(override, message):
    with pytest.raises(ExperimentError, match=message):
        load_experiment("star_easy_mlm", [override])


def _train(output_dir, *overrides):
    experiment = jobs.prepare_experiment(
        "star_easy_mlm", [*TINY, f"training.output_dir={output_dir}", *overrides]
    )
    experiment["eval_tasks"] = {"lm": {"kind": "loss", "split": "validation"}}
    return jobs.train(experiment)


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory, data_dir):
    output_dir = tmp_path_factory.mktemp("ema") / "run"
    return output_dir, _train(output_dir)


def test_export_writes_the_averaged_weights(ema_run):
    output_dir, _ = ema_run
    exported = load_file(str(output_dir / "model.safetensors"))
    average = load_file(str(output_dir / "checkpoint-8" / EMA_FILE))
    raw = load_file(str(output_dir / "checkpoint-8" / "model.safetensors"))
    name = "model.embed_tokens.weight" if "model.embed_tokens.weight" in average else next(iter(average))
    assert torch.equal(exported[name], average[name])
    assert not torch.equal(average[name], raw[name])  # the average is not the raw weights


def test_evaluation_uses_the_averaged_weights(ema_run):
    output_dir, summary = ema_run
    # the exported (averaged) model, evaluated on its own, scores the loss that training reported
    results = jobs.evaluate(str(output_dir), split="validation", limit=16)
    assert results["metrics"]["eval_lm_loss"] == pytest.approx(summary["eval_lm_loss"], rel=1e-5)
    # and the raw weights score another loss
    plain = _train(output_dir.parent / "no-ema", "ema=null")
    assert plain["eval_lm_loss"] != pytest.approx(summary["eval_lm_loss"], rel=1e-4)


def test_resumed_run_continues_the_same_average(ema_run, tmp_path):
    output_dir, summary = ema_run
    shutil.copytree(output_dir / "checkpoint-4", tmp_path / "run" / "checkpoint-4")
    resumed = _train(tmp_path / "run", "training.resume_from_checkpoint=true")
    assert resumed["global_step"] == 8
    assert resumed["eval_lm_loss"] == pytest.approx(summary["eval_lm_loss"], abs=1e-6)
    first, second = (load_file(str(d / "model.safetensors")) for d in (output_dir, tmp_path / "run"))
    assert all(torch.allclose(first[name], second[name], atol=1e-6) for name in first)
