"""A Gradio app that shows an xlm_hf checkpoint generating, step by step: `xlm-hf demo MODEL`, and the Space that
`xlm-hf space MODEL OUT_DIR` writes.

The page has a prompt box (with the examples of the checkpoint's card), the generation options of the checkpoint's
family (read from its generation config, so a new family gets its own controls without an edit here), and the
**generation trajectory**: one frame per step, read from the generation history every family returns, with the
tokens each step inserted or unmasked highlighted, a slider over the steps and the whole film strip below it. A
prompt with `[MASK]` gaps is infilled (one token per `[MASK]` for masked families, a free-length gap per run of
`[MASK]`s for insertion families). For star-graph checkpoints the page says whether the output is a valid path from
the source to the goal. Bad input (an empty prompt, unknown words, a prompt too long) is a message on the page.

This module imports only gradio, torch, transformers, huggingface_hub, PyYAML and the Hub-side serving code
(`modeling/handler.py`), so the Space runs it as it is: `write_space` copies it (as `xlm_demo.py`) and `handler.py`
into the Space folder, next to a three-line `app.py`. The Space therefore needs neither xlm_hf nor its training
dependencies; `requirements.txt` lists gradio, torch and transformers.
"""

import html
import json
import os
import shutil
from pathlib import Path
from typing import Any

import gradio as gr
import yaml

try:  # inside xlm_hf
    from .modeling import handler as serving
except ImportError:  # in a Space folder: handler.py sits next to this file (copied as xlm_demo.py)
    import handler as serving

# The options that get a control of their own (when the family's generation config has them), with how to show
# them: (kind, label, minimum, maximum). Any other option of the family can be set in "Other options".
CONTROLS: dict[str, tuple[str, str, float, float]] = {
    "max_new_tokens": ("int_slider", "Max new tokens", 0, 0),  # maximum: the model's positions
    "num_steps": ("int", "Steps (empty: the family's default)", 1, 0),
    "do_sample": ("bool", "Sample (off: greedy)", 0, 0),
    "temperature": ("float_slider", "Temperature (when sampling)", 0.05, 2.0),
    "top_p": ("float_slider", "Top-p (when sampling)", 0.05, 1.0),
    "threshold": ("float", "Confidence threshold (empty: off)", 0, 0),
    "block_size": ("int", "Block size (semi-autoregressive blocks; empty: one block)", 1, 0),
    "stopping_threshold": ("float_slider", "Stopping threshold", 0.0, 1.0),
    "num_beams": ("int", "Beams", 1, 0),
    "seed": ("int", "Seed (empty: random)", 0, 0),
}
COLORS = {"new": "#f59e0b", "mask": "#cbd5e1"}
CSS = """
.xlm-trajectory { font-family: ui-monospace, monospace; font-size: 0.85em; max-height: 28em; overflow-y: auto; }
.xlm-step { white-space: nowrap; padding: 1px 0; }
.xlm-step-n { display: inline-block; width: 3.5em; color: #6b7280; }
.xlm-tok { padding: 0 2px; }
.xlm-tok.new { background: #f59e0b; border-radius: 3px; }
.xlm-tok.mask { color: #94a3b8; }
#xlm-error { color: #b91c1c; }
"""
SPACE_APP = '''"""The xlm_hf demo of {model_id}: the generation trajectory, step by step (written by `xlm-hf space`)."""

from xlm_demo import build_demo

MODEL_ID = "{model_id}"

demo, launch_options = build_demo(MODEL_ID)

if __name__ == "__main__":
    demo.launch(**launch_options)
'''


# ----- what the checkpoint says about itself -------------------------------------------------------------------


def resolve_folder(model: str) -> Path:
    """A local folder as it is; a Hub id downloaded (the Hub cache first) to read its card and experiment too."""
    path = Path(model)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=model))
    except Exception as error:  # offline without a cached copy, unknown repo, malformed id ...
        raise ValueError(
            f"{model!r} is neither a model folder nor a Hub model that could be fetched: {error}"
        ) from error


def _front_matter(readme: Path) -> dict[str, Any]:
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    if not text.startswith("---"):
        return {}
    try:
        data = yaml.safe_load(text.split("---", 2)[1])
    except (yaml.YAMLError, IndexError):
        return {}
    return data if isinstance(data, dict) else {}


def example_prompts(folder: Path) -> list[str]:
    """The prompts of the card's widget examples (prompts of the checkpoint's task, outputs of the checkpoint)."""
    widget = _front_matter(folder / "README.md").get("widget") or []
    return [
        entry["text"] for entry in widget if isinstance(entry, dict) and isinstance(entry.get("text"), str)
    ]


def task_name(folder: Path) -> str:
    """The task the checkpoint was trained on (`experiment.yaml: data.task`), '' when unknown."""
    path = folder / "experiment.yaml"
    try:
        experiment = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except yaml.YAMLError:
        return ""
    data = experiment.get("data") if isinstance(experiment, dict) else None
    return str(data.get("task") or "") if isinstance(data, dict) else ""


def star_path_check(prompt: str, output: str) -> dict[str, Any]:
    """Whether `output` is a path from the source to the goal of the star graph in `prompt`.

    A star-graph prompt is the edges `u v` followed by the source and the goal; the answer is the path as its
    edges, `s a a b ... y goal`. Valid: an even number of nodes, every pair an edge of the graph, each edge starting
    where the previous one ended, from the source to the goal."""
    try:
        nodes = [int(word) for word in prompt.split()]
        path = [int(word) for word in output.split()]
    except ValueError:
        return {
            "valid_path": False,
            "reason": "the prompt or the output holds something other than node numbers",
        }
    if len(nodes) < 4 or len(nodes) % 2:
        return {"valid_path": False, "reason": "the prompt is not a star graph (edges, then source and goal)"}
    *edge_nodes, source, goal = nodes
    edges = set(zip(edge_nodes[0::2], edge_nodes[1::2]))
    pairs = list(zip(path[0::2], path[1::2]))
    if not pairs or len(path) % 2:
        return {"valid_path": False, "reason": "the output is not a list of edges (an even number of nodes)"}
    for index, pair in enumerate(pairs):
        if pair not in edges:
            return {"valid_path": False, "reason": f"{pair[0]} {pair[1]} is not an edge of the graph"}
        if index and pairs[index - 1][1] != pair[0]:
            return {
                "valid_path": False,
                "reason": f"edge {index + 1} does not start where edge {index} ended",
            }
    if pairs[0][0] != source or pairs[-1][1] != goal:
        return {
            "valid_path": False,
            "reason": f"the path does not lead from the source {source} to the goal {goal}",
        }
    return {"valid_path": True, "reason": f"{len(pairs)} edges from {source} to {goal}"}


# ----- rendering -----------------------------------------------------------------------------------------------


def highlighted(frame: dict[str, Any]) -> list[tuple[str, str | None]]:
    """One frame for `gr.HighlightedText`: (token, "new" | "mask" | None)."""
    return [(f"{token} ", tag or None) for token, tag in zip(frame["tokens"], frame["tags"])]


def trajectory_html(frames: list[dict[str, Any]]) -> str:
    """Every frame as one line (the step number, then its tokens; new ones highlighted)."""
    lines = []
    for step, frame in enumerate(frames, 1):
        tokens = " ".join(
            f'<span class="xlm-tok {tag}">{html.escape(token)}</span>'
            for token, tag in zip(frame["tokens"], frame["tags"])
        )
        lines.append(
            f'<div class="xlm-step" data-step="{step}"><span class="xlm-step-n">{step}</span>{tokens}</div>'
        )
    return f'<div class="xlm-trajectory" data-steps="{len(frames)}">{"".join(lines)}</div>'


def parse_other_options(text: str) -> dict[str, Any]:
    """`key=value` pairs, separated by commas or new lines; values read as JSON where they can be (8, 0.5, true)."""
    options = {}
    for item in text.replace("\n", ",").split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(
                f'Other options are key=value pairs (e.g. sampler="unmask"); got {item.strip()!r}.'
            )
        key, value = (part.strip() for part in item.split("=", 1))
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


# ----- the app -------------------------------------------------------------------------------------------------


class DemoModel:
    """A loaded checkpoint and what the page needs to know about it."""

    def __init__(self, model: str):
        self.name = model
        self.folder = resolve_folder(model)
        self.model, self.tokenizer = serving.load_checkpoint(str(self.folder))
        self.options = serving.generation_options(self.model)
        self.examples = example_prompts(self.folder)
        self.task = task_name(self.folder)
        self.controls = [name for name in CONTROLS if name in self.options]

    def options_from(self, values: list[Any], other: str, prompt: str) -> dict[str, Any]:
        """The `generate` options of the controls' `values` (in `self.controls` order) and the other options."""
        options: dict[str, Any] = {}
        for name, value in zip(self.controls, values):
            kind = CONTROLS[name][0]
            if isinstance(value, str):
                value = value.strip()
            if value is None or value == "":
                continue  # empty: the family's default
            try:
                options[name] = int(value) if kind in ("int", "int_slider") else float(value)
            except ValueError:
                raise ValueError(f"{CONTROLS[name][1]}: {value!r} is not a number.") from None
            if kind == "bool":
                options[name] = bool(value)
        if not options.get("do_sample", True):
            for name in ("temperature", "top_p"):  # they only apply when sampling (as in transformers)
                options.pop(name, None)
        mask = self.tokenizer.mask_token
        if mask and mask in prompt and not serving.inserts_freely(self.model):
            options.pop(
                "max_new_tokens", None
            )  # masked families fill the gaps and add nothing after the text
        options.update(parse_other_options(other or ""))
        return options

    def run(self, prompt: str, values: list[Any], other: str) -> dict[str, Any]:
        """One generation: the result of `handler.generate` with the trajectory, and the task's metrics."""
        result = serving.generate(
            self.model, self.tokenizer, prompt, self.options_from(values, other, prompt), return_history=True
        )
        mask = self.tokenizer.mask_token
        if self.task.startswith("star") and not (mask and mask in prompt):
            result["metrics"] = star_path_check(prompt, result["new_text"])
        return result


def _metrics_markdown(result: dict[str, Any]) -> str:
    lines = [f"**Steps:** {result['num_steps']}  ·  **new tokens:** `{result['new_text'] or '(none)'}`"]
    metrics = result.get("metrics")
    if metrics:
        verdict = "yes" if metrics["valid_path"] else "no"
        lines.append(f"**Valid path:** {verdict} ({metrics['reason']})")
    return "\n\n".join(lines)


def _control(name: str, value: Any, max_positions: int):
    kind, label, low, high = CONTROLS[name]
    elem_id = f"opt-{name}"
    if kind == "int_slider":
        maximum = max(max_positions, int(value or 0))
        return gr.Slider(
            0, maximum, value=int(value or min(16, maximum)), step=1, label=label, elem_id=elem_id
        )
    if kind == "float_slider":
        return gr.Slider(
            low, high, value=float(value if value is not None else high), label=label, elem_id=elem_id
        )
    if kind == "bool":
        return gr.Checkbox(value=bool(value), label=label, elem_id=elem_id)
    # a text box, not gr.Number: a number box shows an unset option as 0, and 0 would then be sent
    return gr.Textbox(value="" if value is None else str(value), label=label, elem_id=elem_id)


def build_demo(model: str | DemoModel) -> tuple[gr.Blocks, dict[str, Any]]:
    """The app for a checkpoint (a folder or a Hub id), and the options its `launch` needs (theme, css)."""
    demo_model = model if isinstance(model, DemoModel) else DemoModel(model)
    config = demo_model.model.config
    max_positions = int(getattr(config, "max_position_embeddings", 64) or 64)
    infill_note = ""
    if serving.can_infill(demo_model.model):
        mask = demo_model.tokenizer.mask_token
        infill_note = (
            f" Mark gaps with `{mask}` to infill: each run of `{mask}`s is one gap of free length."
            if serving.inserts_freely(demo_model.model)
            else f" Mark gaps with `{mask}` to infill: one token per `{mask}`."
        )
    with gr.Blocks(title=f"xlm_hf · {Path(demo_model.name).name}") as demo:
        gr.Markdown(
            f"## {html.escape(str(demo_model.name))}\n"
            f"`{config.model_type}` · watch the model generate, step by step.{infill_note}"
        )
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prompt")
                if demo_model.examples:
                    gr.Examples(demo_model.examples, inputs=prompt, label="Examples from the model card")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
                error = gr.Markdown(visible=False, elem_id="xlm-error")
            with gr.Column(scale=2):
                with gr.Accordion("Generation options", open=False):
                    controls = [
                        _control(n, demo_model.options[n], max_positions) for n in demo_model.controls
                    ]
                    other = gr.Textbox(
                        label="Other options (key=value, comma-separated)",
                        placeholder=", ".join(sorted(set(demo_model.options) - set(demo_model.controls))),
                        elem_id="opt-other",
                    )
        output = gr.Textbox(label="Output", interactive=False, elem_id="output")
        metrics = gr.Markdown(elem_id="metrics")
        step = gr.Slider(0, 1, value=1, step=1, label="Step", elem_id="step")
        frame = gr.HighlightedText(
            label="The sequence after this step (highlighted: what the step inserted or unmasked)",
            color_map=COLORS,
            show_legend=True,
            elem_id="frame",
        )
        film = gr.HTML(elem_id="trajectory")
        frames = gr.State([])

        def generate(prompt_text: str, *values):
            *control_values, other_text = values
            try:
                result = demo_model.run(prompt_text, list(control_values), other_text)
            except Exception as failure:  # noqa: BLE001 - every failure is a message on the page, no trace
                message = " ".join(str(failure).split()) or type(failure).__name__
                gr.Warning(message)
                return (
                    gr.Markdown(f"**Cannot generate:** {html.escape(message)}", visible=True),
                    "",
                    "",
                    gr.Slider(0, 1, value=1),
                    [],
                    "",
                    [],
                )
            history = result["history"]
            last = max(len(history), 1)
            return (
                gr.Markdown("", visible=False),
                result["generated_text"],
                _metrics_markdown(result),
                gr.Slider(1 if last > 1 else 0, last, value=last, step=1),  # a slider needs min < max
                highlighted(history[-1]) if history else [],
                trajectory_html(history),
                history,
            )

        outputs = [error, output, metrics, step, frame, film, frames]
        button.click(generate, inputs=[prompt, *controls, other], outputs=outputs)
        prompt.submit(generate, inputs=[prompt, *controls, other], outputs=outputs)
        step.change(
            lambda index, history: highlighted(history[max(int(index), 1) - 1]) if history else [],
            inputs=[step, frames],
            outputs=frame,
        )
    return demo, {"css": CSS}


def launch(model: str, port: int | None = None, share: bool = False, **options) -> None:
    """`xlm-hf demo`: builds the app and serves it until interrupted."""
    demo, launch_options = build_demo(model)
    demo.launch(server_port=port, share=share, **launch_options, **options)


# ----- the Space ------------------------------------------------------------------------------------------------


def space_readme(model_id: str) -> str:
    """The Space's README.md: its metadata (https://huggingface.co/docs/hub/spaces-config-reference) and a line."""
    metadata = {
        "title": model_id.split("/")[-1][:30],
        "emoji": "🌟",
        "colorFrom": "yellow",
        "colorTo": "gray",
        "sdk": "gradio",
        "sdk_version": gr.__version__,
        "app_file": "app.py",
        "pinned": False,
        "models": [model_id],
        "tags": ["xlm-hf"],
        "short_description": "Watch a non-autoregressive LM generate step by step",
    }
    return (
        f"---\n{yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)}---\n\n"
        f"# {model_id}\n\nThe generation trajectory of [{model_id}](https://huggingface.co/{model_id}), step by "
        "step: what each step inserted or unmasked. Written by `xlm-hf space`; the app needs only gradio, torch "
        "and transformers.\n"
    )


def write_space(model_id: str, out_dir: str | os.PathLike) -> Path:
    """Writes a Space folder for the Hub model `model_id`: `app.py`, this module (`xlm_demo.py`), `handler.py`,
    `requirements.txt` and `README.md` (Space metadata). Written next to `out_dir` and renamed into place, so the
    folder is complete or absent. Refuses a folder that exists and is not empty."""
    import torch
    import transformers

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder: give a new folder for the Space.")
    if not model_id or Path(model_id).is_dir() or model_id.count("/") != 1:
        raise ValueError(
            f"The Space loads its model from the Hub: give the model's Hub id (ORG/NAME), not {model_id!r}. Push the "
            "folder first with `xlm-hf push FOLDER --repo-id ORG/NAME`."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        shutil.copy(Path(__file__), staging / "xlm_demo.py")
        shutil.copy(Path(serving.__file__), staging / "handler.py")
        (staging / "app.py").write_text(SPACE_APP.format(model_id=model_id))
        torch_version = torch.__version__.split("+")[0]
        (staging / "requirements.txt").write_text(
            f"gradio=={gr.__version__}\ntorch>={torch_version}\ntransformers=={transformers.__version__}\npyyaml\n"
        )
        (staging / "README.md").write_text(space_readme(model_id))
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


__all__ = [
    "DemoModel",
    "build_demo",
    "example_prompts",
    "launch",
    "space_readme",
    "star_path_check",
    "trajectory_html",
    "write_space",
]
