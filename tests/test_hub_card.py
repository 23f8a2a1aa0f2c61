"""Model cards: one template per family, metadata that parses back, results from results.json, real widget outputs."""

import json

import pytest
import torch
from huggingface_hub import ModelCard
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
    assert card.data.datasets == ["star_easy"]

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
            "output": {"text": f"{PROMPT} {continuation}"},
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
