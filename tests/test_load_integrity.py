"""A checkpoint never loads silently wrong: damaged weights, edited config files and mismatched tokenizers are one
clear error, through the `xlm-hf` command line and through `from_pretrained` of the exported remote code."""

import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch
from isolation import run_without_xlm_hf
from safetensors.torch import load_file, save_file
from xlm_hf.modeling.backbone import XLMModel

from xlm_hf.cli import main
from xlm_hf.export import export_model, load_model_and_tokenizer
from xlm_hf.families import get_family
from xlm_hf.tokenization import build_number_tokenizer, check_tokenizer_matches_model

FAMILIES = ("arlm", "ilm", "mdlm", "mlm")
TINY = dict(
    vocab_size=27, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32
)
# Values off each family's defaults wherever a default would build other tensors, so that a key left out of
# config.json changes the model (the sweep below).
OFF_DEFAULT = {
    "arlm": dict(intermediate_size=24, absolute_position_embeddings=True),
    "ilm": dict(
        intermediate_size=24,
        final_layer_norm=True,
        gap_head_right_neighbor=True,
        stopping_head="length",
        num_length_classes=5,
    ),
    "mdlm": dict(intermediate_size=24, time_conditioning=False),
    "mlm": dict(intermediate_size=24, final_layer_norm=False, tie_word_embeddings=True),
}
WEIGHTS = "model.safetensors"
DAMAGED_TENSOR = "model.layers.0.mlp.up_proj.weight"


def export_tiny(family: str, path: Path, **overrides) -> Path:
    torch.manual_seed(0)
    config = get_family(family).config_class(**{**TINY, **OFF_DEFAULT[family], **overrides})
    export_model(get_family(family).model_class(config), build_number_tokenizer(20), path, family)
    return path


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    return {family: export_tiny(family, root / family) for family in FAMILIES}


@pytest.fixture
def arlm_copy(exports, tmp_path) -> Path:
    return Path(shutil.copytree(exports["arlm"], tmp_path / "arlm"))


def edit_weights(folder: Path, edit) -> None:
    state_dict = load_file(folder / WEIGHTS)
    edit(state_dict)
    save_file(state_dict, folder / WEIGHTS, metadata={"format": "pt"})


def edit_json(path: Path, edit) -> None:
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))


def cli_error(args: list[str], capsys) -> str:
    """The one `error:` line the command printed; it must exit with 2 and show no traceback."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "LOAD REPORT" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


# ----- weights that do not match the config ----------------------------------------------------------------------

DAMAGE = {
    "missing": (lambda sd: sd.pop(DAMAGED_TENSOR), DAMAGED_TENSOR),
    "renamed": (
        lambda sd: sd.__setitem__("model.layers.0.mlp.upproj.weight", sd.pop(DAMAGED_TENSOR)),
        "upproj",
    ),
    "unexpected": (
        lambda sd: sd.__setitem__("model.layers.1.mlp.up_proj.weight", sd[DAMAGED_TENSOR].clone()),
        "layers.1",
    ),
    "mis-shaped": (lambda sd: sd.__setitem__(DAMAGED_TENSOR, torch.zeros(8, 16)), "(8, 16) in the file"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_weights_that_do_not_match_the_config_are_refused(arlm_copy, damage):
    edit, named = DAMAGE[damage]
    edit_weights(arlm_copy, edit)
    with pytest.raises(ValueError, match="do not match") as error:
        load_model_and_tokenizer(arlm_copy)
    assert named in str(error.value) and "allow_incomplete_weights=True" in str(error.value)


def test_generate_and_eval_refuse_a_missing_tensor_in_one_line(arlm_copy, capsys):
    edit_weights(arlm_copy, DAMAGE["missing"][0])
    assert DAMAGED_TENSOR in cli_error(["generate", str(arlm_copy), "--prompt", "7 8 9"], capsys)
    assert DAMAGED_TENSOR in cli_error(["eval", str(arlm_copy), "--limit", "2"], capsys)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_key_left_out_of_config_json_is_refused_or_changes_no_weight(exports, tmp_path, family):
    """The sweep of the findings: without `num_hidden_layers`, `absolute_position_embeddings`, MDLM's
    `time_conditioning`, ILM's `final_layer_norm` or `gap_head_right_neighbor` ... the defaults built other tensors,
    and the checkpoint loaded with random or dropped weights."""
    model_class = get_family(family).model_class
    expected = model_class.from_pretrained(exports[family]).state_dict()
    folder = Path(shutil.copytree(exports[family], tmp_path / family))
    original = json.loads((folder / "config.json").read_text())
    refused = []
    for key in original:
        (folder / "config.json").write_text(json.dumps({k: v for k, v in original.items() if k != key}))
        try:
            state_dict = model_class.from_pretrained(folder).state_dict()
        except ValueError:
            refused.append(key)
            continue
        assert state_dict.keys() == expected.keys(), key
        for name, tensor in expected.items():
            assert torch.equal(state_dict[name], tensor), (key, name)
    architecture = {"hidden_size", "num_hidden_layers", "vocab_size", *OFF_DEFAULT[family]}
    assert architecture <= set(refused)


def test_absolute_position_embeddings_left_out_is_refused_through_the_cli(arlm_copy, capsys):
    edit_json(arlm_copy / "config.json", lambda config: config.pop("absolute_position_embeddings"))
    assert "model.embed_positions.weight" in cli_error(["generate", str(arlm_copy), "--prompt", "7"], capsys)


def test_a_head_on_base_weights_loads_and_a_lost_head_needs_the_opt_in(tmp_path):
    """Initialising a new head on a trained backbone is what users do on purpose: a base model's checkpoint loads
    into a head model (the head initialised, as in transformers). A head model's own checkpoint without its head is
    damage, and loads only when asked for."""
    model_class = get_family("ilm").model_class
    config = get_family("ilm").config_class(**TINY)
    model = model_class(config)
    model.model.save_pretrained(tmp_path / "base")
    loaded = model_class.from_pretrained(tmp_path / "base")
    torch.testing.assert_close(loaded.model.embed_tokens.weight, model.model.embed_tokens.weight)

    model.save_pretrained(tmp_path / "head")
    edit_weights(
        tmp_path / "head", lambda sd: [sd.pop(k) for k in list(sd) if k.startswith("stopping_head.")]
    )
    with pytest.raises(ValueError, match="stopping_head.classifier.weight"):
        model_class.from_pretrained(tmp_path / "head")
    loaded = model_class.from_pretrained(tmp_path / "head", allow_incomplete_weights=True)
    torch.testing.assert_close(loaded.model.embed_tokens.weight, model.model.embed_tokens.weight)
    assert "allow_incomplete_weights" not in loaded.config.to_dict()  # consumed, not stored in the config
    # asking for the load report: transformers' behaviour, the caller reads it
    _, info = model_class.from_pretrained(tmp_path / "head", output_loading_info=True)
    assert "stopping_head.classifier.weight" in info["missing_keys"]
    # the backbone alone from a full checkpoint: the head's tensors are another class's
    XLMModel.from_pretrained(tmp_path / "head")


# ----- values of the weights ----------------------------------------------------------------------------------


def overwrite_tensor_bytes(folder: Path, name: str, data: bytes | None = None) -> None:
    """Writes random bytes over one tensor's data in the safetensors file (the header stays valid)."""
    path = folder / WEIGHTS
    raw = bytearray(path.read_bytes())
    (header_size,) = struct.unpack("<Q", raw[:8])
    start, end = json.loads(raw[8 : 8 + header_size])[name]["data_offsets"]
    offset = 8 + header_size
    raw[offset + start : offset + end] = data if data is not None else os.urandom(end - start)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 3e30])
def test_non_finite_or_absurd_weights_are_refused(arlm_copy, value):
    edit_weights(arlm_copy, lambda sd: sd[DAMAGED_TENSOR].view(-1).__setitem__(5, value))
    with pytest.raises(ValueError, match=rf"{DAMAGED_TENSOR} \((NaN or inf|values up to 3\.0e\+30)\)"):
        load_model_and_tokenizer(arlm_copy)
    model = get_family("arlm").model_class.from_pretrained(arlm_copy, allow_non_finite_weights=True)
    assert model.state_dict()[DAMAGED_TENSOR].view(-1)[5].item() == pytest.approx(value, nan_ok=True)


def test_random_bytes_in_a_tensor_are_refused(arlm_copy):
    # seeded junk (as random bytes are), so the test cannot flake: float32 words with uniform exponents
    junk = torch.randint(
        0, 256, (16 * 24 * 4,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    overwrite_tensor_bytes(arlm_copy, DAMAGED_TENSOR, junk.numpy().tobytes())
    with pytest.raises(ValueError, match=DAMAGED_TENSOR):
        load_model_and_tokenizer(arlm_copy)


def test_a_truncated_weights_file_is_one_line_naming_the_folder(arlm_copy, capsys):
    data = (arlm_copy / WEIGHTS).read_bytes()
    (arlm_copy / WEIGHTS).write_bytes(data[: len(data) // 2])
    line = cli_error(["generate", str(arlm_copy), "--prompt", "7"], capsys)
    assert f"Could not read the weights in {arlm_copy}" in line


def test_nan_weights_end_generate_and_eval_in_one_line(arlm_copy, capsys):
    edit_weights(arlm_copy, lambda sd: sd[DAMAGED_TENSOR].fill_(float("nan")))
    assert "non-finite" in cli_error(["generate", str(arlm_copy), "--prompt", "7 8 9"], capsys)
    assert "non-finite" in cli_error(["eval", str(arlm_copy), "--limit", "2"], capsys)


# ----- config.json, generation_config.json, tokenizer ---------------------------------------------------------


@pytest.mark.parametrize(
    "text", ['{"max_new_tokens": 5, "do_sa', "[1, 2]", "\xff\xfe junk"], ids=["truncated", "list", "junk"]
)
def test_an_unreadable_generation_config_is_refused_not_replaced_by_defaults(exports, tmp_path, text, capsys):
    folder = Path(shutil.copytree(exports["ilm"], tmp_path / "ilm"))
    (folder / "generation_config.json").write_text(text, encoding="latin-1")
    with pytest.raises(ValueError, match="generation_config.json"):
        get_family("ilm").model_class.from_pretrained(folder)
    assert "generation_config.json" in cli_error(["generate", str(folder), "--prompt", "7 8"], capsys)


def test_an_invalid_generation_setting_names_the_file(arlm_copy, capsys):
    edit_json(arlm_copy / "generation_config.json", lambda config: config.update(max_new_tokens="abc"))
    line = cli_error(["generate", str(arlm_copy), "--prompt", "7"], capsys)
    assert "generation_config.json" in line and "weights" not in line


@pytest.mark.parametrize(
    ("family", "field", "value"),
    [
        ("arlm", "num_hidden_layers", 0),
        ("ilm", "num_hidden_layers", -1),
        ("arlm", "num_hidden_layers", "abc"),
        ("ilm", "hidden_size", -32),
        ("arlm", "hidden_size", 0),
        ("arlm", "layer_norm_eps", "garbage"),
        ("arlm", "vocab_size", "27"),
        ("arlm", "hidden_act", "nope"),
        ("arlm", "hidden_dropout", 2),
        ("arlm", "absolute_position_embeddings", "yes"),
        ("arlm", "use_cache", "no"),
        ("ilm", "gap_head_right_neighbor", 1),
        ("ilm", "stopping_loss_weight", "x"),
        ("mdlm", "sigma_max", "high"),
        ("mdlm", "noise_schedule", ["loglinear"]),
    ],
)
def test_config_values_are_checked_in_the_config(family, field, value):
    with pytest.raises(ValueError, match=field):
        get_family(family).config_class(**{**TINY, field: value})


def test_config_json_problems_name_the_file(arlm_copy, capsys):
    config_file = arlm_copy / "config.json"
    original = config_file.read_text()
    for broken in ("junk{", original[: len(original) // 2], json.dumps([1])):
        config_file.write_text(broken)
        assert str(config_file) in cli_error(["generate", str(arlm_copy), "--prompt", "7"], capsys)
    config_file.write_text(original)
    edit_json(config_file, lambda config: config.update(layer_norm_eps="garbage"))
    line = cli_error(["generate", str(arlm_copy), "--prompt", "7"], capsys)
    assert str(config_file) in line and "layer_norm_eps" in line and "weights" not in line


def test_a_folder_without_auto_map_loads_with_a_warning_that_it_is_no_export(arlm_copy, caplog):
    """A Trainer checkpoint has no auto_map: the command line loads it, and says why it would not load elsewhere
    (transformers would only suggest upgrading itself)."""
    edit_json(arlm_copy / "config.json", lambda config: config.pop("auto_map"))
    load_model_and_tokenizer(arlm_copy)
    assert "not exported by xlm-hf export (no auto_map" in caplog.text


@pytest.mark.parametrize(
    "missing", [("tokenizer.json",), ("tokenizer_config.json",), ("tokenizer.json", "tokenizer_config.json")]
)
def test_missing_tokenizer_files_are_named(arlm_copy, missing, capsys):
    for name in missing:
        (arlm_copy / name).unlink()
    line = cli_error(["generate", str(arlm_copy), "--prompt", "7"], capsys)
    assert str(arlm_copy) in line and all(name in line for name in missing) and "sentencepiece" not in line


def test_a_tokenizer_smaller_than_the_model_is_refused(arlm_copy, capsys):
    config = get_family("arlm").config_class(**TINY)
    with pytest.raises(ValueError, match=r"ids 17\.\.26, which the tokenizer lacks"):
        check_tokenizer_matches_model(build_number_tokenizer(10), config)
    build_number_tokenizer(10).save_pretrained(arlm_copy)
    assert "resize_token_embeddings" in cli_error(["generate", str(arlm_copy), "--prompt", "7"], capsys)


# ----- the exported remote code, where xlm_hf cannot be imported ----------------------------------------------


def test_exported_remote_code_refuses_damage_without_xlm_hf(exports, tmp_path):
    folders = {}
    for damage in ("missing", "nan", "generation", "layers"):
        folders[damage] = Path(shutil.copytree(exports["ilm"], tmp_path / damage))
    edit_weights(folders["missing"], lambda sd: sd.pop("stopping_head.classifier.weight"))
    edit_weights(folders["nan"], lambda sd: sd[DAMAGED_TENSOR].fill_(float("nan")))
    (folders["generation"] / "generation_config.json").write_text('{"max_new_tok')
    edit_json(folders["layers"] / "config.json", lambda config: config.pop("num_hidden_layers"))
    result = run_without_xlm_hf(
        f"""
        from transformers import AutoModel
        folders = { ({name: str(path) for name, path in folders.items()})!r}
        for name, folder in folders.items():
            try:
                AutoModel.from_pretrained(folder, trust_remote_code=True)
                print(name, "LOADED")
            except ValueError as error:
                print(name, "REFUSED", str(error).replace(chr(10), " "))
        model = AutoModel.from_pretrained(folders["missing"], trust_remote_code=True, allow_incomplete_weights=True)
        print("OPT-IN", type(model).__module__)
        """,
        cwd=str(tmp_path),
    )
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["missing"].startswith("REFUSED") and "stopping_head.classifier.weight" in lines["missing"]
    assert lines["nan"].startswith("REFUSED") and DAMAGED_TENSOR in lines["nan"]
    assert lines["generation"].startswith("REFUSED") and "generation_config.json" in lines["generation"]
    assert lines["layers"].startswith("REFUSED") and "model.layers.1" in lines["layers"]
    assert "transformers_modules" in lines["OPT-IN"]
