"""`scripts/finetune.py` on tiny models: full fine-tuning (ARLM), LoRA merged into a Hub-ready folder (MDLM), a
LoRA adapter saved alone and reloaded on its base (ILM), an adapter of a Hub model pushed and loaded with
AutoPeftModelForCausalLM where xlm_hf is absent (ARLM), and Trainer checkpoints kept out of the output."""

import json
import random
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard, constants
from isolation import run_without_xlm_hf
from script_module import load_script
from test_hub_push import RecordingHub, build_hub_cache
from test_pipelines import export_tiny


@pytest.fixture(scope="module")
def finetune():
    return load_script("finetune.py").main


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """prompt -> target = the prompt reversed (numbers 0..19); the same rows as jsonl, csv and text."""
    root = tmp_path_factory.mktemp("finetune-data")
    rng = random.Random(0)
    rows = []
    for _ in range(64):
        prompt = [str(rng.randrange(20)) for _ in range(5)]
        rows.append({"prompt": " ".join(prompt), "target": " ".join(reversed(prompt))})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "train.csv").write_text(
        "prompt,target\n" + "".join(f"{r['prompt']},{r['target']}\n" for r in rows)
    )
    (root / "train.txt").write_text("".join(f"{r['prompt']} {r['target']}\n" for r in rows))
    return {"jsonl": root / "train.jsonl", "csv": root / "train.csv", "txt": root / "train.txt"}


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("finetune-bases")
    # The MDLM without time conditioning, as every MDLM recipe trains it: an untrained time-conditioned model starts
    # with its adaLN gates at zero (DiT), so until those gates train, no gradient reaches the attention weights that
    # the LoRA runs below adapt (adaLN itself is not a LoRA target).
    return {
        "arlm": export_tiny("arlm", root / "arlm"),
        "mdlm": export_tiny("mdlm", root / "mdlm", time_conditioning=False),
        "ilm": export_tiny("ilm", root / "ilm"),
    }


COMMON = [
    "--per_device_train_batch_size",
    "16",
    "--logging_steps",
    "5",
    "--report_to",
    "none",
    "--save_strategy",
    "no",
    "--disable_tqdm",
    "true",
    "--seed",
    "0",
]


def test_full_finetuning_lowers_the_loss_and_exports(finetune, bases, data, tmp_path):
    out = tmp_path / "arlm-full"
    summary = finetune(
        [
            "--model_name_or_path",
            str(bases["arlm"]),
            "--train_file",
            str(data["jsonl"]),
            "--output_dir",
            str(out),
            "--max_steps",
            "30",
            "--learning_rate",
            "3e-3",
            *COMMON,
        ]
    )
    assert summary["saved"] == "model" and summary["global_step"] == 30
    assert summary["last_logged_loss"] < summary["first_logged_loss"] - 0.3
    from xlm_hf.hub import check_hub_folder

    assert {"model.safetensors", "config.json", "modeling_arlm.py", "README.md", "experiment.yaml"} <= set(
        check_hub_folder(out)
    )
    experiment = (out / "experiment.yaml").read_text()
    assert "Fine-tuned from arlm on train.jsonl (64 rows)" in experiment
    # the card of a fine-tune: what it was tuned on and a license; no path of this machine anywhere
    card = ModelCard.load(out / "README.md")
    assert card.data.license == "apache-2.0" and "trained on **train.jsonl (64 rows)**" in card.text
    assert card.data.base_model is None and not card.data.datasets  # a local base with no known Hub id
    for text in (experiment, card.content, (out / "config.json").read_text()):
        assert str(tmp_path) not in text and str(bases["arlm"]) not in text


def test_text_file_trains_the_language_model_collator(finetune, bases, data, tmp_path):
    summary = finetune(
        [
            "--model_name_or_path",
            str(bases["arlm"]),
            "--train_file",
            str(data["txt"]),
            "--output_dir",
            str(tmp_path / "lm"),
            "--max_steps",
            "10",
            "--learning_rate",
            "3e-3",
            *COMMON,
        ]
    )
    assert summary["global_step"] == 10 and summary["last_logged_loss"] < summary["first_logged_loss"]


@pytest.fixture(scope="module")
def lora_runs(finetune, bases, data, tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    merged = finetune(
        [
            "--model_name_or_path",
            str(bases["mdlm"]),
            "--train_file",
            str(data["csv"]),
            "--output_dir",
            str(root / "mdlm-merged"),
            "--max_steps",
            "60",
            "--learning_rate",
            "1e-2",
            "--lora_r",
            "8",
            "--lora_target_modules",
            "q_proj,k_proj,v_proj,o_proj",
            "--lora_modules_to_save",
            "lm_head",
            "--merge_lora",
            "--base_model_id",
            "my-org/tiny-mdlm",
            "--license",
            "mit",
            *COMMON,
        ]
    )
    adapter = finetune(
        [
            "--model_name_or_path",
            str(bases["ilm"]),
            "--train_file",
            str(data["jsonl"]),
            "--output_dir",
            str(root / "ilm-adapter"),
            "--max_steps",
            "60",
            "--learning_rate",
            "1e-2",
            "--lora_r",
            "8",
            "--lora_target_modules",
            "all-linear",
            *COMMON,
        ]
    )
    return {"merged": merged, "adapter": adapter}


def test_lora_lowers_the_loss(lora_runs):
    for summary in lora_runs.values():
        assert summary["global_step"] == 60
        assert summary["last_logged_loss"] < summary["first_logged_loss"], summary


def test_merged_lora_is_a_full_hub_ready_model(lora_runs, bases):
    out = Path(lora_runs["merged"]["output_dir"])
    assert lora_runs["merged"]["saved"] == "model"
    assert not (out / "adapter_config.json").exists()
    from safetensors.torch import load_file

    merged, base = load_file(out / "model.safetensors"), load_file(bases["mdlm"] / "model.safetensors")
    assert set(merged) == set(base)  # plain weights: no lora_A/lora_B or modules_to_save copies left
    assert not torch.equal(
        merged["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"]
    )
    assert not torch.equal(merged["lm_head.weight"], base["lm_head.weight"])
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "my-org/tiny-mdlm" and card.data.license == "mit"
    assert (
        "fine-tuned from [my-org/tiny-mdlm](https://huggingface.co/my-org/tiny-mdlm) on **train.csv"
        in card.text
    )


def test_adapter_reloads_on_its_base_and_helps(lora_runs, bases, data):
    out = Path(lora_runs["adapter"]["output_dir"])
    assert lora_runs["adapter"]["saved"] == "adapter"
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 8 and set(config["modules_to_save"]) == {
        "lm_head",
        "stopping_head",
    }  # ILM's new heads
    # transformers' auto class, not xlm_hf's module (outside peft's import allowlist, absent on a user's machine)
    assert config["auto_mapping"] == {"base_model_class": "AutoModel", "parent_library": "transformers"}
    assert not (out / "training_args.bin").exists()
    card = ModelCard.load(out / "README.md")  # ours, not peft's
    assert card.data.library_name == "peft" and card.data.license == "apache-2.0"
    assert (
        "--base_model_id" in card.text
    )  # the base was a local folder: the card says how to record its Hub id

    from peft import PeftModel

    from xlm_hf.export import load_model_and_tokenizer

    base, tokenizer, family, _ = load_model_and_tokenizer(bases["ilm"])
    rows = [json.loads(line) for line in data["jsonl"].read_text().splitlines()[:32]]
    examples = [
        {
            "prompt_ids": tokenizer(r["prompt"], add_special_tokens=False)["input_ids"],
            "target_ids": tokenizer(r["target"], add_special_tokens=False)["input_ids"],
        }
        for r in rows
    ]
    batch = family.collators["seq2seq"](tokenizer=tokenizer, input_block_size=8, block_size=6, seed=0)(
        examples
    )
    batch = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        base_loss = float(base(**batch).loss)
        adapted = PeftModel.from_pretrained(base, str(out)).eval()
        adapted_loss = float(adapted(**batch).loss)
    assert adapted_loss < base_loss


def test_finetuned_folders_load_and_generate_without_xlm_hf(lora_runs, bases, tmp_path):
    code = f"""
    import torch
    from peft import PeftModel
    from transformers import AutoModel, AutoTokenizer

    merged_dir = {lora_runs["merged"]["output_dir"]!r}
    model = AutoModel.from_pretrained(merged_dir, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    assert "xlm_hf" not in type(model).__module__
    inputs = tokenizer(["1 2 3 4 5"], return_tensors="pt", add_special_tokens=False)
    out = model.generate(**inputs, max_new_tokens=5, num_steps=5, sampler="unmask", temperature=0.0)
    assert out.sequences.shape[1] - out.output_start_idx == 5

    base = AutoModel.from_pretrained({str(bases["ilm"])!r}, trust_remote_code=True)
    reference = base(**inputs).logits.detach().clone()
    adapted = PeftModel.from_pretrained(base, {lora_runs["adapter"]["output_dir"]!r})
    logits = adapted(**inputs).logits
    assert not torch.allclose(logits, reference)
    out = adapted.generate(**inputs, max_new_tokens=3)

    # in one call: the adapter config names transformers' AutoModel and the base
    from peft import AutoPeftModel

    auto = AutoPeftModel.from_pretrained({lora_runs["adapter"]["output_dir"]!r}, trust_remote_code=True)
    assert torch.allclose(auto(**inputs).logits, logits)
    print("OK", out.sequences.shape)
    """
    result = run_without_xlm_hf(code, cwd=str(tmp_path))
    assert "OK" in result.stdout


def test_bad_data_is_one_clear_error(finetune, bases, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "1 2", "answer": "3"}) + "\n")
    with pytest.raises(ValueError, match="prompt"):
        finetune(
            [
                "--model_name_or_path",
                str(bases["arlm"]),
                "--train_file",
                str(bad),
                "--output_dir",
                str(tmp_path / "x"),
            ]
        )
    with pytest.raises(ValueError, match="unsupported file type"):
        finetune(
            [
                "--model_name_or_path",
                str(bases["arlm"]),
                "--train_file",
                str(tmp_path / "data.xml"),
                "--output_dir",
                str(tmp_path / "x"),
            ]
        )


def test_adapter_of_a_hub_model_is_pushed_and_loads_with_auto_peft_without_xlm_hf(
    finetune, bases, data, tmp_path, monkeypatch
):
    """The base comes from the Hub (a local Hub cache, offline): the adapter config and the card name its Hub id;
    pushed, the adapter loads with AutoPeftModelForCausalLM and with PeftModel where xlm_hf is absent."""
    cache = tmp_path / "hub-cache"
    build_hub_cache(cache, "my-org/tiny-arlm", {"main": bases["arlm"]})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    out = tmp_path / "arlm-lora"
    finetune(
        [
            "--model_name_or_path",
            "my-org/tiny-arlm",
            "--train_file",
            str(data["jsonl"]),
            "--output_dir",
            str(out),
            "--max_steps",
            "20",
            "--learning_rate",
            "1e-2",
            "--lora_r",
            "8",
            *COMMON,
        ]
    )
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "my-org/tiny-arlm"  # not the snapshot's local path
    assert config["auto_mapping"] == {
        "base_model_class": "AutoModelForCausalLM",
        "parent_library": "transformers",
    }
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "my-org/tiny-arlm" and card.data.library_name == "peft"
    assert card.data.license == "apache-2.0" and "train.jsonl (64 rows)" in card.text
    assert "AutoPeftModelForCausalLM.from_pretrained" in card.text
    assert 'AutoTokenizer.from_pretrained("my-org/tiny-arlm", trust_remote_code=True)' in card.text

    # push (intercepted), then serve what was pushed from the Hub cache
    from xlm_hf.hub import push_to_hub

    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub = RecordingHub().install(monkeypatch)
    push_to_hub(out, "my-org/tiny-arlm-lora")
    (commit,) = hub.commits
    assert sorted(commit["files"]) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "experiment.yaml",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    pushed = tmp_path / "pushed"
    pushed.mkdir()
    for name, content in commit["files"].items():
        (pushed / name).write_bytes(content)
    assert (
        'from_pretrained("my-org/tiny-arlm-lora", trust_remote_code=True)'
        in (pushed / "README.md").read_text()
    )
    build_hub_cache(cache, "my-org/tiny-arlm-lora", {"main": pushed})

    code = """
    import torch
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModel, AutoTokenizer

    model = AutoPeftModelForCausalLM.from_pretrained("my-org/tiny-arlm-lora", trust_remote_code=True).eval()
    assert "xlm_hf" not in type(model.get_base_model()).__module__
    tokenizer = AutoTokenizer.from_pretrained("my-org/tiny-arlm", trust_remote_code=True)  # as the card says
    inputs = tokenizer(["1 2 3 4 5"], return_tensors="pt", add_special_tokens=False)
    base = AutoModel.from_pretrained("my-org/tiny-arlm", trust_remote_code=True).eval()
    with torch.no_grad():
        reference = base(**inputs).logits.clone()
        adapted = PeftModel.from_pretrained(base, "my-org/tiny-arlm-lora").eval()
        logits = model(**inputs).logits
        assert torch.allclose(logits, adapted(**inputs).logits, atol=1e-6)
        assert not torch.allclose(logits, reference)
        print("OK", model.generate(**inputs, max_new_tokens=3).shape)
    """
    result = run_without_xlm_hf(code, cwd=str(tmp_path))
    assert "OK" in result.stdout


def test_output_holds_no_optimizer_state_and_kept_checkpoints_resume(finetune, bases, data, tmp_path):
    def run(out: Path, *extra: str) -> dict:
        return finetune(
            [
                "--model_name_or_path",
                str(bases["arlm"]),
                "--train_file",
                str(data["jsonl"]),
                "--output_dir",
                str(out),
                "--max_steps",
                "4",
                *COMMON,
                "--save_strategy",
                "steps",
                "--save_steps",
                "2",
                *extra,
            ]
        )

    out = tmp_path / "clean"
    run(out)
    leftovers = [
        p.relative_to(out) for p in out.rglob("*") if p.is_dir() or p.suffix in (".pt", ".pth", ".bin")
    ]
    assert leftovers == [] and not (out / "trainer_state.json").exists()
    assert (out / "model.safetensors").is_file()

    kept = tmp_path / "kept"
    run(kept, "--keep_checkpoints", "true")
    checkpoints = sorted(p.name for p in (kept / "training").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]
    assert (kept / "training" / "checkpoint-2" / "optimizer.pt").is_file()
    assert not list(kept.glob("*.pt")) and not list(kept.glob("checkpoint-*"))  # the top level stays clean
    resumed = run(tmp_path / "resumed", "--resume_from_checkpoint", str(kept / "training" / "checkpoint-2"))
    assert resumed["global_step"] == 4
