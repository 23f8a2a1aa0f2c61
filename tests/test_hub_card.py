"""Model cards: one template per family, metadata that parses back, results from results.json, real widget outputs."""

import json

import pytest
import torch
from huggingface_hub import ModelCard
from isolation import run_without_xlm_hf
from test_pipelines import export_tiny

from xlm_hf.cli import main
from xlm_hf.model_card import write_model_card

PAPERS = {
    "arlm": "arxiv.org/abs/1706.03762",
    "mlm": "arxiv.org/abs/1810.04805",
    "mdlm": "arxiv.org/abs/2406.07524",
    "ilm": "arxiv.org/abs/2505.05755",
}
PROMPT, TARGET = "1 2 3 4 5 6", "7 8 9 10"


RESULTS = {
    "task": "star_easy",
    "split": "test",
    "num_examples": 40,
    "metrics": {
        "eval_lm_loss": 1.23456,
        "eval_lm_runtime": 0.5,
        "eval_prediction_exact_match": 0.25,
        "eval_prediction_token_accuracy": 0.5,
    },
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Tiny exports without widget data (the experiment names no task), one per family."""
    root = tmp_path_factory.mktemp("cards")
    return {name: export_tiny(name, root / name) for name in PAPERS}


@pytest.mark.parametrize("name", list(PAPERS))
def test_unevaluated_card_says_so(folders, name):
    card = ModelCard.load(folders[name] / "README.md")
    assert "Not evaluated" in card.text and "xlm-hf eval" in card.text
    assert not card.data.eval_results and "model-index" not in card.content
    assert card.data.pipeline_tag == ("fill-mask" if name == "mlm" else "text-generation")
    assert card.data.library_name == "transformers"
    assert set(card.data.tags) == {"xlm-hf", name, "custom_code"}
    assert (
        PAPERS[name] in card.text and "trust_remote_code=True" in card.text and "## Limitations" in card.text
    )
    assert f"# {name}" in card.text  # the family's template, titled with the folder name
    assert card.data.license == "apache-2.0" and not card.data.datasets and not card.data.base_model
    # the tokenizer, too, needs trust_remote_code: without it AutoTokenizer asks [y/N] (config.json has auto_map)
    assert 'AutoTokenizer.from_pretrained("path/to/' in card.text
    loads = [line for line in card.text.splitlines() if ".from_pretrained(" in line or "pipeline(" in line]
    assert loads and all("trust_remote_code=True" in line for line in loads)
    # no placeholder link: the original project by its URL, xlm_hf by name
    assert "https://github.com/)" not in card.text and "github.com/dhruvdcoder/xlm-core" in card.text


@pytest.mark.parametrize("name", ["mdlm", "mlm"])
def test_card_command_renders_results_and_real_widget_outputs(folders, name, tmp_path, capsys):
    folder = tmp_path / name
    import shutil

    shutil.copytree(folders[name], folder)
    (folder / "results.json").write_text(json.dumps(RESULTS))
    (folder / "experiment.yaml").write_text(
        f"family: {name}\ndata:\n  task: star_easy\ntraining:\n  max_steps: 7\n"
    )
    predictions = folder / "predictions" / "prediction"
    predictions.mkdir(parents=True)
    (predictions / "step=0.jsonl").write_text(
        json.dumps({"prompt": PROMPT, "generated": "", "target": TARGET}) + "\n"
    )

    assert main(["card", str(folder), "--repo-id", "my-org/tiny"]) == 0
    assert capsys.readouterr().out.strip().endswith("README.md")
    card = ModelCard.load(folder / "README.md")
    indexed = {
        r.metric_name: (r.metric_type, r.metric_value, r.dataset_name, r.dataset_split)
        for r in card.data.eval_results
    }
    assert indexed == {
        "eval_lm_loss": ("loss", 1.2346, "star_easy", "test"),
        "eval_prediction_exact_match": ("exact_match", 0.25, "star_easy", "test"),
        "eval_prediction_token_accuracy": ("token_accuracy", 0.5, "star_easy", "test"),
    }
    assert "Not evaluated" not in card.text and "| eval_prediction_exact_match | 0.25 |" in card.text
    assert "| eval_lm_loss | 1.2346 |" in card.text and "eval_lm_runtime" not in card.text
    assert (
        "max_steps: 7" in card.text and 'from_pretrained("my-org/tiny", trust_remote_code=True)' in card.text
    )
    # star_easy is generated locally, not a Hub dataset: the text says so and `datasets:` stays empty
    assert (
        card.data.datasets is None
        and "generates locally" in card.text
        and "not a dataset on the Hub" in card.text
    )
    assert card.data.license == "apache-2.0"
    assert 'AutoTokenizer.from_pretrained("my-org/tiny", trust_remote_code=True)' in card.text

    (example,) = card.data.widget
    from xlm_hf.export import load_model_and_tokenizer

    model, tokenizer, _, _ = load_model_and_tokenizer(folder)
    if name == "mlm":  # fill-mask: the top tokens of the model at the masked target token
        assert card.data.to_dict()["mask_token"] == "[MASK]"
        assert example["text"] == f"{PROMPT} [BOS] 7 8 [MASK] 10"
        ids = tokenizer([example["text"]], return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            probs = (
                model(**ids)
                .logits[0, ids["input_ids"][0].tolist().index(tokenizer.mask_token_id)]
                .softmax(-1)
            )
        top = torch.topk(probs, 3)
        assert [o["label"] for o in example["output"]] == [
            tokenizer.decode([i]).strip() for i in top.indices.tolist()
        ]
        assert [o["score"] for o in example["output"]] == [round(float(p), 4) for p in top.values]
    else:  # text generation: the prompt and the continuation `xlm-hf generate` prints (seed 0)
        from xlm_hf.jobs import generate

        torch.manual_seed(0)
        (continuation,) = generate(str(folder), [PROMPT])
        assert example == {
            "text": PROMPT,
            "example_title": "Example 1",
            "output": {"text": f"{PROMPT} {continuation}".strip()},
        }


def test_missing_results_after_they_existed(folders, tmp_path):
    import shutil

    folder = tmp_path / "ilm"
    shutil.copytree(folders["ilm"], folder)
    (folder / "results.json").write_text(json.dumps(RESULTS))
    assert ModelCard.load(write_model_card(folder, widget=False)).data.eval_results
    (folder / "results.json").unlink()
    card = ModelCard.load(write_model_card(folder, widget=False))
    assert "Not evaluated" in card.text and not card.data.eval_results


def test_card_errors_are_one_line(tmp_path, capsys):
    assert main(["card", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error:")
    (tmp_path / "results.json").write_text("{not json")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "xlm-hf-arlm"}))
    assert main(["card", str(tmp_path), "--no-widget"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "results.json" in err


def test_card_settings_and_no_local_paths(tmp_path, monkeypatch):
    """The experiment's `card` section fills license, datasets, base model and project link; the exported
    experiment.yaml and the card carry no path of the machine that trained the model."""
    experiment = {
        "family": "ilm",
        "data": {"task": "star_easy", "cache_dir": str(tmp_path / "data-cache")},
        "training": {"output_dir": str(tmp_path / "out"), "max_steps": 3},
        "card": {"license": "mit", "datasets": ["my-org/stars"], "base_model": "my-org/base"},
    }
    monkeypatch.setenv("XLM_HF_PROJECT_URL", "https://example.test/xlm_hf")
    folder = export_tiny("ilm", tmp_path / "out", experiment=experiment)
    exported = (folder / "experiment.yaml").read_text()
    card = ModelCard.load(folder / "README.md")
    assert str(tmp_path) not in exported and str(tmp_path) not in card.content
    assert "max_steps: 3" in exported and "max_steps: 3" in card.text
    assert card.data.license == "mit" and card.data.datasets == ["my-org/stars"]
    assert card.data.base_model == "my-org/base" and "fine-tuned from [my-org/base]" in card.text
    assert "[xlm_hf](https://example.test/xlm_hf)" in card.text


def test_partial_and_unreferenced_results_stay_out_of_model_index(folders, tmp_path):
    import shutil

    folder = tmp_path / "mlm"
    shutil.copytree(folders["mlm"], folder)
    (folder / "experiment.yaml").write_text(
        "family: mlm\ndata:\n  task: star_easy\neval_tasks:\n"
        "  prediction: {kind: generate, metrics: [exact_match]}\n"
        "  unconditional: {kind: generate, collator: unconditional, metrics: [token_accuracy]}\n"
    )
    results = {
        "task": "star_easy",
        "split": "test",
        "num_examples": 40,
        "split_size": 40,
        "metrics": {"eval_prediction_exact_match": 0.5, "eval_unconditional_token_accuracy": 0.1},
    }
    (folder / "results.json").write_text(json.dumps(results))
    card = ModelCard.load(write_model_card(folder, widget=False))
    # unconditional samples have no reference: shown, marked, never indexed
    assert [r.metric_name for r in card.data.eval_results] == ["eval_prediction_exact_match"]
    assert (
        "| eval_unconditional_token_accuracy † | 0.1 |" in card.text and "not a quality measure" in card.text
    )
    assert "(test split of star_easy, 40 examples)" in card.text

    # `xlm-hf eval --limit 8`: labelled as part of the split and kept out of model-index
    (folder / "results.json").write_text(json.dumps({**results, "num_examples": 8, "split_size": 1000}))
    card = ModelCard.load(write_model_card(folder, widget=False))
    assert not card.data.eval_results and "model-index:" not in card.content
    assert "test split of star_easy, first 8 of 1000 examples" in card.text
    assert "| eval_prediction_exact_match | 0.5 |" in card.text


def test_the_cards_tokenizer_line_is_silent(folders):
    """The card's own `AutoTokenizer.from_pretrained(...)` line, run where xlm_hf is absent, neither asks [y/N] nor
    warns "You are using a model of type `xlm-hf-ilm` to instantiate a model of type ``". Both come from
    AutoTokenizer reading config.json (whose auto_map names remote code) without `trust_remote_code=True`: declined,
    it falls back to a bare PreTrainedConfig and warns about the type mismatch."""
    folder = folders["ilm"]
    card = ModelCard.load(folder / "README.md")
    (line,) = [line for line in card.text.splitlines() if line.startswith("tokenizer = AutoTokenizer")]
    code = f"""
    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_warning()
    {line.replace(f"path/to/{folder.name}", str(folder))}
    print("OK", len(tokenizer))
    """
    result = run_without_xlm_hf(code, cwd=str(folder.parent))
    assert "OK" in result.stdout
    assert "model of type" not in result.stderr and "[y/N]" not in result.stdout + result.stderr
