"""Every family trains on text end to end (tiny models, a few steps, a local corpus), exports a folder with its
tokenizer and a card that names tokenizer and corpus, and the export prints readable text where xlm_hf cannot be
imported: byte-level BPE decoded with its spaces."""

import json

import pytest
from isolation import run_without_xlm_hf
from text_corpus import SENTENCE, TINY_TEXT_OVERRIDES, write_corpus

from xlm_hf.jobs import prepare_experiment, train


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("text_runs")
    summaries = {}
    for family in ("arlm", "mlm", "mdlm", "ilm"):
        experiment = prepare_experiment(
            f"text_pydoc_{family}",
            [f"data.task=text:{corpus}", *TINY_TEXT_OVERRIDES, f"training.output_dir={out / family}"],
        )
        summaries[family] = train(experiment)
    return out, summaries


@pytest.mark.parametrize("family", ["arlm", "mlm", "mdlm", "ilm"])
def test_each_family_trains_on_text_and_exports_its_tokenizer(trained, family):
    out, summaries = trained
    summary = summaries[family]
    assert summary["global_step"] == 4 and summary["eval_lm_loss"] > 0
    folder = out / family
    assert {"tokenizer.json", "tokenizer_config.json", "model.safetensors"} <= {
        p.name for p in folder.iterdir()
    }
    card = (folder / "README.md").read_text()
    assert "byte-level BPE of 300 tokens trained on its train split" in card  # the tokenizer
    assert f"text:{out.parent}" in card or "`text:" in card  # the corpus
    config = json.loads((folder / "config.json").read_text())
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    assert config["vocab_size"] == len(tokenizer["model"]["vocab"])


def test_a_diffusion_model_prints_decoded_text_without_xlm_hf(trained, tmp_path):
    out, _ = trained
    code = f"""
        import json
        from transformers import pipeline
        generator = pipeline("text-generation", model={str(out / "mdlm")!r}, trust_remote_code=True)
        print("REPORT" + json.dumps(generator("Return the", max_new_tokens=8)[0]["generated_text"]))
    """
    result = run_without_xlm_hf(code, cwd=str(tmp_path))
    text = json.loads(result.stdout.split("REPORT", 1)[1].strip().splitlines()[0])
    assert text.startswith("Return the")
    assert not {"\u0120", "\u010a"} & set(text)  # byte-level BPE's space and newline symbols are decoded


def test_an_overfit_arlm_prints_its_sentence_with_spaces_right_without_xlm_hf(corpus, tmp_path):
    """Trained until it knows one sentence, the exported ARLM's pipeline continues a prompt into exactly that text:
    BPE pieces decoded into words with single spaces, where only torch and transformers are importable."""
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "train.jsonl").write_text(json.dumps({"text": SENTENCE}) + "\n" * 1)
    (tmp_path / "one" / "validation.jsonl").write_text(json.dumps({"text": SENTENCE}) + "\n")
    overrides = [
        f"data.task=text:{tmp_path / 'one'}",
        "data.packing=pad",  # one sentence per row
        "data.max_train_samples=1",
        *TINY_TEXT_OVERRIDES,
        "training.max_steps=60",
        "training.learning_rate=0.01",
        "training.lr_scheduler_type=constant",
        "training.eval_strategy=no",
        "generation.do_sample=false",
        "generation.top_p=1.0",
        "data.block_size=64",  # the whole sentence in one row
        "generation.max_new_tokens=48",
        f"training.output_dir={tmp_path / 'arlm'}",
    ]
    train(prepare_experiment("text_pydoc_arlm", overrides))
    code = f"""
        import json
        from transformers import pipeline
        generator = pipeline("text-generation", model={str(tmp_path / "arlm")!r}, trust_remote_code=True)
        full = generator("The quick", max_new_tokens=48, do_sample=False)[0]["generated_text"]
        new = generator("The quick", max_new_tokens=48, do_sample=False, return_full_text=False)
        print("REPORT" + json.dumps([full, new[0]["generated_text"]]))
    """
    result = run_without_xlm_hf(code, cwd=str(tmp_path))
    full, new = json.loads(result.stdout.split("REPORT", 1)[1].strip().splitlines()[0])
    assert full == SENTENCE
    assert new == SENTENCE.removeprefix("The quick")  # " brown fox ...": the space is the continuation's
