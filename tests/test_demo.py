"""The Gradio demo (`xlm_hf/demo.py`): controls from the family's generation config, the trajectory, the star-graph
check, bad input, the Space folder (which runs without xlm_hf) and its push, and the card's widget metadata."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from demo_models import STAR_PROMPT, export_tiny
from huggingface_hub import ModelCard, constants
from isolation import run_without_xlm_hf

gr = pytest.importorskip("gradio", reason="the demo needs gradio: pip install 'xlm_hf[demo]'")

from xlm_hf import demo  # noqa: E402
from xlm_hf.cli import main  # noqa: E402
from xlm_hf.families import get_family  # noqa: E402
from xlm_hf.jobs import widget_examples  # noqa: E402


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    models = {family: export_tiny(family, root / family) for family in ("arlm", "mdlm", "ilm")}
    return root, models


@pytest.fixture(scope="module")
def loaded(checkpoints):
    root, _ = checkpoints
    return {family: demo.DemoModel(str(root / family)) for family in ("arlm", "mdlm", "ilm")}


def test_star_path_check():
    prompt = "1 2 2 3 1 4 4 5 1 3"  # edges 1-2 2-3 1-4 4-5, source 1, goal 3
    assert demo.star_path_check(prompt, "1 2 2 3")["valid_path"]
    assert "not an edge" in demo.star_path_check(prompt, "1 2 2 5")["reason"]
    assert "does not start" in demo.star_path_check(prompt, "1 2 4 5")["reason"]
    assert "goal" in demo.star_path_check(prompt, "1 4 4 5")["reason"]
    assert not demo.star_path_check(prompt, "1 2 2")["valid_path"]
    assert not demo.star_path_check(prompt, "")["valid_path"]


def test_controls_follow_the_family(loaded):
    assert {"num_steps", "threshold", "block_size", "temperature"} <= set(loaded["mdlm"].controls)
    assert "stopping_threshold" in loaded["ilm"].controls and "threshold" not in loaded["ilm"].controls
    assert "num_beams" in loaded["arlm"].controls and "num_steps" not in loaded["arlm"].controls
    gr_app, options = demo.build_demo(loaded["ilm"])
    assert isinstance(gr_app, gr.Blocks) and "css" in options


@pytest.mark.parametrize("family", ["arlm", "mdlm", "ilm"])
def test_run_gives_the_models_generation_and_one_frame_per_step(checkpoints, loaded, family):
    _, models = checkpoints
    model, tokenizer = models[family]
    app = loaded[family]
    values = [{"max_new_tokens": 4, "num_steps": 4, "seed": 0}.get(name) for name in app.controls]
    result = app.run(STAR_PROMPT, values, "")
    ids = tokenizer([STAR_PROMPT], return_tensors="pt", add_special_tokens=False)
    options = {"max_new_tokens": 4} if family == "arlm" else {"max_new_tokens": 4, "num_steps": 4, "seed": 0}
    with torch.no_grad():
        output = model.generate(**ids, return_dict_in_generate=True, **options)
    sequence = output.sequences[0][output.sequences[0].ne(tokenizer.pad_token_id)]
    assert result["generated_text"] == tokenizer.decode(sequence, skip_special_tokens=True).strip()
    assert len(result["history"]) == result["num_steps"] >= 1
    html = demo.trajectory_html(result["history"])
    assert html.count('class="xlm-step"') == result["num_steps"]
    assert "valid_path" in result["metrics"]  # a star_easy checkpoint: the path is checked


def test_bad_input_is_a_message(loaded):
    app = loaded["mdlm"]
    values = [None] * len(app.controls)
    for prompt, message in [
        ("", "empty"),
        ("3 seven", "seven"),
        (" ".join(["3"] * 60), "too long"),
        ("3 [BOS] 4", "[BOS]"),
    ]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            app.run(prompt, values, "")
    with pytest.raises(ValueError, match="key=value"):
        app.run("3 4", values, "num_steps")
    with pytest.raises(ValueError, match="unknown"):
        app.run("3 4", values, "no_such_option=1")


def test_masked_infilling_fills_only_the_gaps(loaded):
    app = loaded["mdlm"]
    values = [{"max_new_tokens": 8}.get(name) for name in app.controls]
    result = app.run("3 [MASK] 7 [MASK] 5", values, "")
    assert len(result["history"][0]["tokens"]) == 5  # no tokens appended after the text
    assert "metrics" not in result


def test_space_folder_runs_without_xlm_hf(checkpoints, tmp_path):
    root, _ = checkpoints
    space = tmp_path / "space"
    assert main(["space", "my-org/star-ilm", str(space)]) == 0
    assert sorted(p.name for p in space.iterdir()) == sorted(
        ["README.md", "app.py", "handler.py", "requirements.txt", "xlm_demo.py"]
    )
    assert (space / "xlm_demo.py").read_text() == Path(demo.__file__).read_text()
    metadata = yaml.safe_load((space / "README.md").read_text().split("---")[1])
    assert metadata["sdk"] == "gradio" and metadata["app_file"] == "app.py"
    assert metadata["models"] == ["my-org/star-ilm"]
    requirements = (space / "requirements.txt").read_text()
    assert "gradio==" in requirements and "transformers==" in requirements and "xlm" not in requirements
    assert 'MODEL_ID = "my-org/star-ilm"' in (space / "app.py").read_text()
    # the Space's code with the local checkpoint in place of the Hub id, where xlm_hf cannot be imported
    result = run_without_xlm_hf(
        f"""
        import sys; sys.path.insert(0, ".")
        import xlm_demo
        model = xlm_demo.DemoModel({str(root / "ilm")!r})
        app, options = xlm_demo.build_demo(model)
        result = model.run({STAR_PROMPT!r}, [None] * len(model.controls), "max_new_tokens=3")
        print("STEPS", len(result["history"]), type(app).__name__)
        """,
        cwd=str(space),
    )
    assert "STEPS 3 Blocks" in result.stdout


def test_space_refuses_a_local_folder_or_a_used_folder(checkpoints, tmp_path, capsys):
    root, _ = checkpoints
    assert main(["space", str(root / "ilm"), str(tmp_path / "a")]) == 2
    assert "Hub id" in capsys.readouterr().err and not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("")
    assert main(["space", "org/model", str(tmp_path / "b")]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_push_uploads_a_space_as_a_space(tmp_path, monkeypatch, capsys):
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "create_repo", lambda api, repo_id, **kw: calls.append(("repo", kw)))
    monkeypatch.setattr(
        HfApi,
        "create_commit",
        lambda api, repo_id, operations, **kw: (
            calls.append(("commit", {**kw, "files": sorted(op.path_in_repo for op in operations)}))
            or type("Info", (), {"commit_url": "u", "oid": "0"})()
        ),
    )
    demo.write_space("my-org/star-ilm", tmp_path / "space")
    assert main(["push", str(tmp_path / "space"), "--repo-id", "my-org/star-ilm-demo"]) == 0
    (_, repo), (_, commit) = calls
    assert repo["repo_type"] == "space" and repo["space_sdk"] == "gradio"
    assert commit["repo_type"] == "space"
    assert commit["files"] == ["README.md", "app.py", "handler.py", "requirements.txt", "xlm_demo.py"]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["repo_id"] == "my-org/star-ilm-demo"


@pytest.mark.parametrize("family", ["ilm", "mlm"])
def test_card_widget_fits_the_hosted_widget_and_shows_real_outputs(tmp_path, family):
    """The hosted widget of the card's `pipeline_tag` shows `text` with a static `output`: `{"text": ...}` for
    text-generation, a list of `{"label", "score"}` and a `mask_token` for fill-mask. The outputs are this
    checkpoint's own generations (`demo.example_prompts` then offers the same prompts)."""
    rows = [{"prompt": STAR_PROMPT, "target": "3 15 15 9 9 4"}]
    model, tokenizer = export_tiny(family, tmp_path / "scratch")
    examples, note = widget_examples(model, tokenizer, get_family(family), rows)
    assert not note
    export_tiny(family, tmp_path / family, widget_examples=examples)
    data = ModelCard.load(tmp_path / family / "README.md").data
    assert data.pipeline_tag == get_family(family).pipeline_tag
    (entry,) = data.widget
    assert set(entry) <= {"text", "example_title", "output"} and isinstance(entry["text"], str)
    if data.pipeline_tag == "text-generation":
        app = demo.DemoModel(str(tmp_path / family))
        assert demo.example_prompts(tmp_path / family) == [STAR_PROMPT]
        result = app.run(STAR_PROMPT, [None] * len(app.controls), "seed=0")
        torch.manual_seed(0)
        again = app.run(STAR_PROMPT, [None] * len(app.controls), "seed=0")
        assert result["generated_text"] == again["generated_text"]
        assert set(entry["output"]) == {"text"} and entry["output"]["text"].startswith(STAR_PROMPT)
    else:
        assert data.mask_token == tokenizer.mask_token and tokenizer.mask_token in entry["text"]
        assert all(set(label) == {"label", "score"} for label in entry["output"])
        scores = [label["score"] for label in entry["output"]]
        assert scores == sorted(scores, reverse=True) and all(0 <= score <= 1 for score in scores)
