"""The Inference Endpoints handler (`modeling/handler.py`), exported with every checkpoint and called as
Endpoints calls it, in a fresh interpreter where xlm_hf cannot be imported."""

import json

import pytest
from demo_models import STAR_PROMPT, export_tiny
from isolation import run_without_xlm_hf

from xlm_hf.families import family_names

# every family, including ones added later: the handler reads the generation history each family returns
FAMILIES = ["arlm", "mlm", "mdlm", "ilm", *sorted(set(family_names()) - {"arlm", "mlm", "mdlm", "ilm"})]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("handler")
    for family in FAMILIES:
        export_tiny(family, root / family)
    return root


# Runs in the isolated interpreter: the handler next to the weights, imported as Endpoints imports it (a top-level
# module of the folder), against the model's own `generate` through transformers alone.
CALLS = """
import importlib.util, json, sys, torch
from transformers import AutoModel, AutoTokenizer
report = {}
for family in FAMILIES:
    folder = f"{ROOT}/{family}"
    spec = importlib.util.spec_from_file_location("handler", f"{folder}/handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = module.EndpointHandler(folder)
    ok = handler({"inputs": PROMPT, "parameters": {"max_new_tokens": 4, "num_steps": 4, "seed": 0, "return_history": True}}
                 if family != "arlm" else {"inputs": PROMPT, "parameters": {"max_new_tokens": 4, "return_history": True}})
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    ids = tokenizer([PROMPT], return_tensors="pt", add_special_tokens=False)
    options = {"max_new_tokens": 4} if family == "arlm" else {"max_new_tokens": 4, "num_steps": 4, "seed": 0, "output_history": True}
    with torch.no_grad():
        out = model.generate(**ids, return_dict_in_generate=True, **options)
    sequence = out.sequences[0][out.sequences[0].ne(tokenizer.pad_token_id)]
    if getattr(out, "history_positions", None) is not None:
        steps = out.history_positions.shape[1]
    elif getattr(out, "history", None) is not None:
        steps = len(out.history)
    else:
        steps = out.sequences.shape[1] - ids["input_ids"].shape[1] - 1  # [BOS] added after the prompt
    report[family] = {
        "result": json.loads(json.dumps(ok)),
        "expected_text": tokenizer.decode(sequence, skip_special_tokens=True).strip(),
        "expected_steps": steps,
        "batch": handler({"inputs": [PROMPT, "3 4"], "parameters": {"max_new_tokens": 2}}),
        "infill": handler({"inputs": "3 [MASK] 7 [MASK] 5"}),  # the family's infilling defaults
        "errors": [handler(bad) for bad in BAD],
    }
print("REPORT" + json.dumps(report))
"""
BAD = [
    {"inputs": ""},
    {"inputs": "3 seven 7"},
    {"inputs": " ".join(["3"] * 60)},
    {"inputs": "3 4", "parameters": {"max_new_tokens": 2, "bogus_option": 1}},
    {"inputs": "3 4", "parameters": {"max_new_tokens": -1}},
    {"parameters": {}},
    ["not", "a", "dict"],
]


@pytest.fixture(scope="module")
def report(folders):
    code = f"FAMILIES, ROOT, PROMPT, BAD = {FAMILIES!r}, {str(folders)!r}, {STAR_PROMPT!r}, {BAD!r}\n" + CALLS
    result = run_without_xlm_hf(code, cwd=str(folders))
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORT"))
    return json.loads(line[len("REPORT") :])


def test_every_export_ships_the_handler(folders):
    for family in FAMILIES:
        assert (folders / family / "handler.py").is_file()


@pytest.mark.parametrize("family", FAMILIES)
def test_handler_output_is_the_models_generation(report, family):
    (result,) = report[family]["result"]
    assert result["generated_text"] == report[family]["expected_text"]
    assert result["generated_text"].startswith(STAR_PROMPT) or family == "ilm"


@pytest.mark.parametrize("family", FAMILIES)
def test_history_has_one_frame_per_step_ending_at_the_output(report, family):
    (result,) = report[family]["result"]
    history = result["history"]
    assert len(history) == result["num_steps"] == report[family]["expected_steps"]
    assert history[-1]["text"] == result["generated_text"]
    for frame in history:
        assert len(frame["tokens"]) == len(frame["tags"])
        assert set(frame["tags"]) <= {"", "new", "mask"}
    if family in ("arlm", "ilm"):  # one token per step
        assert all(frame["tags"].count("new") <= 1 for frame in history)
    if family in ("mlm", "mdlm"):  # the masks only go away, and every new token was a mask before
        masks = [frame["tags"].count("mask") for frame in history]
        assert masks == sorted(masks, reverse=True) and masks[-1] == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_batches_and_infilling(report, family):
    assert isinstance(report[family]["batch"], list) and len(report[family]["batch"]) == 2
    infill = report[family]["infill"]
    if family == "arlm":
        assert "cannot infill" in infill["error"]
    else:
        (result,) = infill
        words = result["generated_text"].split()
        assert words[0] == "3" and "7" in words and words[-1] == "5"  # the given tokens stay


@pytest.mark.parametrize("family", FAMILIES)
def test_bad_requests_get_a_json_error(report, family):
    errors = report[family]["errors"]
    assert all(isinstance(error, dict) and set(error) == {"error"} for error in errors)
    empty, unknown, long, option, negative, no_inputs, not_dict = (error["error"] for error in errors)
    assert "empty" in empty
    assert "seven" in unknown
    assert "too long" in long
    assert "bogus_option" in option
    assert "max_new_tokens" in negative
    assert '"inputs"' in no_inputs and '"inputs"' in not_dict
    assert not any("Traceback" in error["error"] for error in errors)
