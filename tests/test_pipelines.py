"""Pipelines from exported folders, run where `import xlm_hf` fails (only torch and transformers):
text-generation for every family, fill-mask for MLM and MDLM, infill for the masked and insertion families."""

import json
from pathlib import Path

import pytest
import torch
from isolation import run_without_xlm_hf

FAMILIES = ("arlm", "mlm", "mdlm", "ilm")
SPECIAL_IDS = [0, 1, 2, 3, 4, 5, 6]  # [PAD] [CLS] [MASK] [EOS] [BOS] [SEP] [UNK] of the number tokenizer


def export_tiny(
    family_name: str, folder: Path, experiment: dict | None = None, seed: int = 0, **config
) -> Path:
    """A tiny, untrained model of the family exported as `xlm-hf train` exports it; `config` overrides its
    configuration."""
    from xlm_hf.export import export_model
    from xlm_hf.families import get_family
    from xlm_hf.tokenization import build_number_tokenizer

    family = get_family(family_name)
    tokenizer = build_number_tokenizer(20, model_max_length=48)
    torch.manual_seed(seed)
    model = family.build_model(
        tokenizer,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=48,
        **config,
    )
    return export_model(model, tokenizer, folder, family, experiment=experiment or {"family": family_name})


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipelines")
    return {name: export_tiny(name, root / name) for name in FAMILIES}


def test_export_registers_the_pipelines(exported):
    from xlm_hf.hub import hub_files

    for name, folder in exported.items():
        config = json.loads((folder / "config.json").read_text())
        if name == "arlm":  # transformers' own text-generation pipeline, subclassed for the prompt layout
            assert "AutoModelForCausalLM" in config["auto_map"]
            assert config["custom_pipelines"] == {
                "text-generation": {
                    "impl": "pipeline_xlm.XLMCausalTextGenerationPipeline",
                    "pt": ["AutoModelForCausalLM"],
                    "type": "text",
                }
            }
            assert "pipeline_xlm.py" in hub_files(folder)
            continue
        assert set(config["custom_pipelines"]) == {"text-generation", "infill"}
        assert config["custom_pipelines"]["infill"]["impl"] == "pipeline_xlm.XLMInfillPipeline"
        assert "pipeline_xlm.py" in hub_files(folder)


ISOLATED = r"""
import json
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, pipeline

folders = FOLDERS
SPECIALS = SPECIAL_IDS
PROMPTS = ["18 3 14 11 3 16 10 4", "1 2 3", "7"]
report = {}

def words(text):
    return text.split()

for name, folder in folders.items():
    tokenizer = AutoTokenizer.from_pretrained(folder)
    generator = pipeline("text-generation", model=folder, trust_remote_code=True)
    assert "xlm_hf" not in type(generator.model).__module__
    if name == "arlm":
        knobs = {"max_new_tokens": 4, "do_sample": False, "suppress_tokens": SPECIALS}
    elif name == "ilm":
        knobs = {"max_new_tokens": 4, "stopping_threshold": 1.0, "suppress_token_ids": SPECIALS}
    else:  # greedy unmasking (MDLM's default ancestral sampler draws which positions to unmask)
        knobs = {"max_new_tokens": 4, "temperature": 0.0, "num_steps": 4, "sampler": "unmask", "suppress_tokens": SPECIALS}
    one_by_one = [generator(p, return_full_text=False, **knobs)[0]["generated_text"] for p in PROMPTS]
    batched = [r[0]["generated_text"] for r in generator(PROMPTS, return_full_text=False, batch_size=3, **knobs)]
    full = [generator(p, **knobs)[0]["generated_text"] for p in PROMPTS]
    # the same as calling generate on the model directly
    model = generator.model
    encoded = tokenizer(PROMPTS[:1], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**encoded, **knobs)
    if name == "arlm":
        direct = tokenizer.decode(out[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    elif name == "ilm":
        direct = tokenizer.decode(out.sequences[0], skip_special_tokens=True)[len(PROMPTS[0]):].strip()
    else:
        direct = tokenizer.decode(out.sequences[0, out.output_start_idx:], skip_special_tokens=True)
    entry = {"one_by_one": one_by_one, "batched": batched, "full": full, "direct": direct}
    entry["pipeline_class"] = type(generator).__name__
    if name == "arlm":
        # "hole" drops the oldest prompt tokens so that prompt, [BOS] and the new tokens fit in the 48 positions
        long_prompt = " ".join(["1"] * 60)
        entry["hole"] = generator(long_prompt, handle_long_generation="hole", return_full_text=False, **knobs)[0]["generated_text"]
        encoded = tokenizer([" ".join(["1"] * (48 - 4 - 1))], return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**encoded, **knobs)
        entry["hole_direct"] = tokenizer.decode(out[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
        try:
            generator(long_prompt, handle_long_generation="hole", max_new_tokens=48, do_sample=False)
            entry["hole_error"] = None
        except ValueError as error:
            entry["hole_error"] = str(error)
    if name != "arlm":
        samples = generator(PROMPTS[1], return_full_text=False, num_return_sequences=2, **{**knobs, "seed": 1})
        entry["num_return_sequences"] = len(samples)
        infill = pipeline("infill", model=folder, trust_remote_code=True)
        extra = {"suppress_token_ids": SPECIALS, "max_new_tokens": 3, "stopping_threshold": 1.0} if name == "ilm" else {"suppress_tokens": SPECIALS, "temperature": 0.0}
        entry["infill"] = infill("1 [MASK] 3 [MASK] [MASK] 6", **extra)
        entry["infill_batched"] = [r[0] for r in infill(["1 [MASK] 3 [MASK] [MASK] 6", "[MASK] 9"], batch_size=2, **extra)]
        try:
            infill("no gap here")
            entry["infill_error"] = None
        except ValueError as error:
            entry["infill_error"] = str(error)
    if name in ("mlm", "mdlm"):
        fill = pipeline("fill-mask", model=folder, trust_remote_code=True)
        results = fill("1 2 [MASK] 4", top_k=3)
        encoded = tokenizer(["1 2 [MASK] 4"], return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            probs = fill.model(**encoded).logits[0, 2].softmax(-1)
        entry["fill_mask"] = results
        entry["fill_mask_top"] = torch.topk(probs, 3).indices.tolist()
    report[name] = entry
print("REPORT" + json.dumps(report))
"""


@pytest.fixture(scope="module")
def isolated_report(exported, tmp_path_factory) -> dict:
    folders = {name: str(folder) for name, folder in exported.items()}
    code = ISOLATED.replace("FOLDERS", repr(folders)).replace("SPECIAL_IDS", repr(SPECIAL_IDS))
    result = run_without_xlm_hf(code, cwd=str(tmp_path_factory.mktemp("isolated")))
    return json.loads(result.stdout.split("REPORT", 1)[1].strip().splitlines()[0])


@pytest.mark.parametrize("name", FAMILIES)
def test_text_generation_pipeline_gives_the_continuation(isolated_report, name):
    entry = isolated_report[name]
    for prompt, new, full in zip(["18 3 14 11 3 16 10 4", "1 2 3", "7"], entry["one_by_one"], entry["full"]):
        tokens = new.split()
        assert len(tokens) == 4 and all(t.isdigit() and int(t) < 20 for t in tokens)
        assert (
            full == f"{prompt} {new}"
        )  # one space between prompt and continuation, as the tokenizer decodes
    assert entry["one_by_one"][0] == entry["direct"]
    assert entry["batched"] == entry["one_by_one"]  # left padding in a batch changes nothing


@pytest.mark.parametrize("name", ["mlm", "mdlm", "ilm"])
def test_infill_pipeline_fills_every_gap(isolated_report, name):
    entry = isolated_report[name]
    (result,) = entry["infill"]
    fills = result["fills"]
    assert len(fills) == 2
    if name == "ilm":  # free length: the insertions spread over the gaps, within max_new_tokens
        assert sum(len(f.split()) for f in fills) == 3
    else:  # one token per [MASK]
        assert [len(f.split()) for f in fills] == [1, 2]
    expected = " ".join(part for part in ["1", fills[0], "3", fills[1], "6"] if part)
    assert result["generated_text"] == expected
    assert all(t.isdigit() for f in fills for t in f.split())
    assert entry["infill_batched"][0] == result
    second = entry["infill_batched"][1]
    assert len(second["fills"]) == 1 and second["generated_text"].endswith("9")
    assert second["generated_text"] == " ".join(p for p in [second["fills"][0], "9"] if p)
    assert "[MASK]" in entry["infill_error"]
    assert entry["num_return_sequences"] == 2


@pytest.mark.parametrize("name", ["mlm", "mdlm"])
def test_fill_mask_pipeline_ranks_the_models_tokens(isolated_report, name):
    entry = isolated_report[name]
    results = entry["fill_mask"]
    assert [r["token"] for r in results] == entry["fill_mask_top"]
    for r in results:  # special tokens are left out of the decoded sequence
        assert r["sequence"] == (f"1 2 {r['token_str']} 4" if r["token"] not in SPECIAL_IDS else "1 2 4")
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True) and sum(scores) <= 1.0 + 1e-6


def test_arlm_pipeline_is_transformers_own_with_room_for_the_layout(isolated_report):
    entry = isolated_report["arlm"]
    assert entry["pipeline_class"] == "XLMCausalTextGenerationPipeline"
    # "hole" keeps the last 48 - 4 - 1 prompt tokens: the same continuation as generating from them directly
    assert len(entry["hole"].split()) == 4 and entry["hole"] == entry["hole_direct"]
    assert "max_new_tokens=48" in entry["hole_error"]
