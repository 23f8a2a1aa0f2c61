#!/usr/bin/env python
"""Feeds the CLI and the Python API bad inputs and checks that each ends in one clear error or the right result.

    python scripts/probe_bad_inputs.py            # every case
    python scripts/probe_bad_inputs.py -k arlm    # the cases whose name contains "arlm"

Tiny untrained models of every family are exported to a temporary folder (no network, no training). Each case
prints one line with its verdict:

- `ok: clear error`: a CLI call exited with status 2 and one `error:` line (no traceback), or an API call raised
  one ValueError, that names the culprit;
- `ok: right result`: a legitimate input did what it should;
- `BAD: traceback` (an exception escaped), `BAD: accepted` (a bad input ran), `BAD: unclear error` (the message
  does not name the culprit), `BAD: wrong result`, `BAD: hang` (over the case's time limit).

The last line is `N passed, M failed`; the exit status is 1 when any case is BAD. `tests/test_bad_inputs.py` runs
the same cases under pytest.
"""

import argparse
import contextlib
import errno
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FAMILIES = ("arlm", "mlm", "mdlm", "ilm")
TINY_MODEL = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}
TASK = "star_easy"
REPO_ROOT = Path(__file__).resolve().parent.parent
CASE_TIMEOUT_S = 60  # a case still running after this is a hang


@dataclass
class Workspace:
    """Where the cases run: `root/<family>` holds an exported tiny model of each family; `root/data` the task."""

    root: Path

    def model(self, family: str) -> str:
        return str(self.root / family)

    def copy_of(self, family: str, name: str) -> Path:
        """A fresh copy of a family's model folder, for cases that damage it."""
        import shutil

        target = self.root / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(self.root / family, target)
        return target


def build_workspace(root: str | os.PathLike) -> Workspace:
    """Exports a tiny untrained model of every family into `root` and generates the task's data there."""
    from xlm_hf.export import export_model
    from xlm_hf.families import get_family
    from xlm_hf.tasks import get_task, prepare_task

    root = Path(root)
    os.environ["XLM_HF_DATA_DIR"] = str(root / "data")
    prepare_task(TASK, None)
    tokenizer = get_task(TASK).build_tokenizer()
    for name in FAMILIES:
        family = get_family(name)
        model = family.build_model(tokenizer, **TINY_MODEL)
        model.generation_config.update(max_new_tokens=8)
        export_model(
            model, tokenizer, root / name, family, experiment={"family": name, "data": {"task": TASK}}
        )
    (root / "empty.jsonl").write_text("")
    return Workspace(root)


# ----- how a case runs and what it expects ----------------------------------------------------------------------


@dataclass
class Outcome:
    """What a case did: a CLI exit status and output, or an API return value or exception."""

    status: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: BaseException | None = None
    value: Any = None


@dataclass
class Case:
    """`run(workspace)` returns an Outcome. With `message`, the case must end in one clear error containing it;
    with `check`, in a result for which `check(outcome)` is true."""

    name: str
    run: Callable[[Workspace], Outcome]
    message: str | None = None
    check: Callable[[Outcome], bool] | None = None


class _Hang(Exception):
    pass


def cli(*argv: str, env: dict[str, str] | None = None, patches: tuple = ()) -> Callable[[Workspace], Outcome]:
    """Runs `xlm_hf.cli.main(argv)` in this process; `{arlm}` etc. in argv name the workspace's folders."""

    def run(workspace: Workspace) -> Outcome:
        from xlm_hf.cli import main

        args = [
            item.format(root=workspace.root, **{f: workspace.model(f) for f in FAMILIES}) for item in argv
        ]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.ExitStack() as stack:
            stack.enter_context(mock.patch.dict(os.environ, env or {}))
            for patch in patches:
                stack.enter_context(patch(workspace))
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(err))
            try:
                status = main(args)
            except SystemExit as exit_:
                status = exit_.code
            except _Hang:
                raise
            except BaseException as error:  # noqa: BLE001 - any escape is the verdict
                return Outcome(error=error, stdout=out.getvalue(), stderr=err.getvalue())
        return Outcome(status=status, stdout=out.getvalue(), stderr=err.getvalue())

    return run


def shell(*argv: str, env: dict[str, str] | None = None) -> Callable[[Workspace], Outcome]:
    """Runs a command in a subprocess (the console script, scripts/*.py), from the repository root."""

    def run(workspace: Workspace) -> Outcome:
        args = [
            item.format(root=workspace.root, **{f: workspace.model(f) for f in FAMILIES}) for item in argv
        ]
        result = subprocess.run(
            args,
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
            timeout=CASE_TIMEOUT_S,
        )
        return Outcome(status=result.returncode, stdout=result.stdout, stderr=result.stderr)

    return run


def api(function: Callable[[Workspace], Any]) -> Callable[[Workspace], Outcome]:
    def run(workspace: Workspace) -> Outcome:
        try:
            return Outcome(value=function(workspace))
        except _Hang:
            raise
        except BaseException as error:  # noqa: BLE001
            return Outcome(error=error)

    return run


def judge(case: Case, outcome: Outcome) -> str:
    """The verdict of one case's outcome."""
    if case.message is not None:
        if outcome.error is not None:
            if not isinstance(outcome.error, ValueError) or outcome.status is not None:
                return "BAD: traceback"
            text = str(outcome.error)
            return "ok: clear error" if case.message in text else "BAD: unclear error"
        if outcome.status is None:
            return "BAD: accepted"  # an API call that returned
        if outcome.status == 0:
            return "BAD: accepted"
        if "Traceback (most recent call last)" in outcome.stderr:
            return "BAD: traceback"
        errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
        if outcome.status != 2 or len(errors) != 1:
            return "BAD: unclear error"
        return "ok: clear error" if case.message in errors[0] else "BAD: unclear error"
    if outcome.error is not None:
        return "BAD: traceback"
    if outcome.status not in (None, 0):
        return "BAD: wrong result"
    return "ok: right result" if case.check is None or case.check(outcome) else "BAD: wrong result"


def run_case(case: Case, workspace: Workspace, timeout_s: int = CASE_TIMEOUT_S) -> tuple[str, str]:
    """(verdict, detail) of one case; a case that runs past `timeout_s` is stopped and is a hang."""

    def on_alarm(signum, frame):
        raise _Hang()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout_s)
    try:
        outcome = case.run(workspace)
    except (_Hang, subprocess.TimeoutExpired):
        return "BAD: hang", f"still running after {timeout_s} s"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    verdict = judge(case, outcome)
    if outcome.error is not None:
        detail = f"{type(outcome.error).__name__}: {outcome.error}"
    elif outcome.value is not None:
        detail = repr(outcome.value)
    elif outcome.status is not None:
        lines = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
        detail = lines[-1] if lines else outcome.stdout.strip().splitlines()[-1:] or ""
    else:
        detail = ""
    return verdict, " ".join(str(detail).split())[:200]


# ----- the cases ---------------------------------------------------------------------------------------------


def _prompt_ids(workspace: Workspace, text: str):
    from xlm_hf.tasks import get_task

    tokenizer = get_task(TASK).build_tokenizer()
    return tokenizer([text], return_tensors="pt", add_special_tokens=False)


def _load(workspace: Workspace, family: str):
    from xlm_hf.export import load_model_and_tokenizer

    return load_model_and_tokenizer(workspace.model(family))[0]


def _arlm_generate(**kwargs) -> Callable[[Workspace], Any]:
    def run(workspace: Workspace):
        model = _load(workspace, "arlm")
        batch = _prompt_ids(workspace, "1 2 3")
        if kwargs.pop("one_dimensional", False):
            return model.generate(batch["input_ids"][0], **kwargs)
        if kwargs.pop("short_mask", False):
            return model.generate(
                batch["input_ids"], attention_mask=batch["attention_mask"][:, :-1], **kwargs
            )
        return model.generate(**batch, **kwargs)

    return run


def _generate(family: str, prompt: str = "1 2 3", **kwargs) -> Callable[[Workspace], Any]:
    def run(workspace: Workspace):
        return _load(workspace, family).generate(**_prompt_ids(workspace, prompt), **kwargs)

    return run


def _export_as(model_family: str, export_family: str) -> Callable[[Workspace], Any]:
    def run(workspace: Workspace):
        from xlm_hf.export import export_model
        from xlm_hf.tasks import get_task

        tokenizer = get_task(TASK).build_tokenizer()
        model = _load(workspace, model_family)
        return export_model(model, tokenizer, workspace.root / "wrong-family", export_family)

    return run


def _export_to_file(workspace: Workspace):
    from xlm_hf.export import export_model
    from xlm_hf.tasks import get_task

    target = workspace.root / "a-file"
    target.write_text("not a folder")
    return export_model(_load(workspace, "arlm"), get_task(TASK).build_tokenizer(), target, "arlm")


def _write_experiment(text: str) -> Callable:
    """A patch that gives the ARLM folder a copy with `experiment.yaml` holding `text`; `{broken}` names it."""

    @contextlib.contextmanager
    def patch(workspace: Workspace):
        folder = workspace.copy_of("arlm", "broken-experiment")
        (folder / "experiment.yaml").write_text(text)
        yield

    return patch


def _disk_full_while_writing(workspace: Workspace):
    """Every file written through `atomic_open` fails half-way with ENOSPC (results.json, predictions)."""
    import xlm_hf.atomic_io as atomic_io

    def fsync(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return mock.patch.object(atomic_io.os, "fsync", fsync)


def _eval_disk_full(workspace: Workspace) -> Outcome:
    """`xlm-hf eval` on a full disk: one error line, and neither a 0-byte predictions file nor a temporary file."""
    folder = workspace.copy_of("arlm", "disk-full")
    outcome = cli("eval", str(folder), "--limit", "4", patches=(_disk_full_while_writing,))(workspace)
    leftovers = [p.name for p in folder.rglob("*") if p.is_file() and (p.suffix in (".tmp", ".jsonl"))]
    leftovers += ["results.json"] if (folder / "results.json").exists() else []
    if leftovers:
        outcome.status, outcome.stderr = 0, f"left behind: {leftovers}"  # judged "accepted": files were left
    return outcome


def _ilm_infill_prints_what_the_model_wrote(workspace: Workspace) -> Outcome:
    """ILM infilling `[MASK] 1` with only the token "10" allowed: the model writes `10 ... 1` and the CLI must print
    exactly that (it used to cut a leading "1" off as if it were the prompt)."""
    from xlm_hf.tasks import get_task

    tokenizer = get_task(TASK).build_tokenizer()
    ten = tokenizer.convert_tokens_to_ids("10")
    others = [i for i in range(len(tokenizer)) if i != ten]
    options = json.dumps(others)
    outcome = cli("generate", "{ilm}", "--prompt", "[MASK] 1", "--set", f"suppress_token_ids={options}")(
        workspace
    )
    outcome.value = outcome.stdout.strip()
    return outcome


def _export_killed_between_renames(workspace: Workspace) -> Outcome:
    """An export SIGKILLed between its two renames (2-layer model over a 1-layer folder), then loaded: the folder
    must load whole (config and weights of one export), and no hidden staging folder may remain."""
    target = workspace.copy_of("arlm", "killed-export")
    script = f"""
import os, xlm_hf.export as export
from xlm_hf.families import get_family
from xlm_hf.tasks import get_task
tokenizer = get_task({TASK!r}).build_tokenizer()
model = get_family("arlm").build_model(tokenizer, **{dict(TINY_MODEL, num_hidden_layers=2)!r})
renames = []
real_rename = os.rename
def rename(source, destination):
    real_rename(source, destination)
    renames.append(destination)
    if len(renames) == 1:
        os.kill(os.getpid(), 9)  # killed between the two renames
export.os.rename = rename
export.export_model(model, tokenizer, {str(target)!r}, "arlm")
"""
    killed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=CASE_TIMEOUT_S
    )
    from safetensors import safe_open

    from xlm_hf.export import load_model_and_tokenizer

    config_layers = load_model_and_tokenizer(str(target))[0].config.num_hidden_layers
    with safe_open(target / "model.safetensors", "pt") as weights:
        weight_layers = len({key.split(".")[2] for key in weights.keys() if key.startswith("model.layers.")})
    leftovers = [p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]
    ok = killed.returncode == -signal.SIGKILL and weight_layers == config_layers and not leftovers
    value = {
        "exit": killed.returncode,
        "weights": weight_layers,
        "config": config_layers,
        "leftovers": leftovers,
    }
    return Outcome(value=value, status=0 if ok else 1)


def _push_env() -> dict[str, str]:
    return {"HF_TOKEN": "hf_probe_token", "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}


@contextlib.contextmanager
def _online(workspace: Workspace):
    from huggingface_hub import constants

    with mock.patch.object(constants, "HF_HUB_OFFLINE", False):
        yield


def _lines(count: int) -> Callable[[Outcome], bool]:
    return lambda outcome: len(outcome.stdout.strip().splitlines()) == count


def _damaged(family: str, damage: str) -> Callable[[Workspace], Outcome]:
    """`xlm-hf generate` on a copy of a family's folder damaged in one way (the loader must refuse it)."""

    def run(workspace: Workspace) -> Outcome:
        import json as json_module

        from safetensors.torch import load_file, save_file

        folder = workspace.copy_of(family, f"damaged-{family}-{damage}")
        weights = folder / "model.safetensors"
        if damage in ("missing tensor", "nan weights"):
            tensors = load_file(str(weights))
            name = sorted(tensors)[-1]
            if damage == "missing tensor":
                del tensors[name]
            else:
                tensors[name] = tensors[name].clone().fill_(float("nan"))
            save_file(tensors, str(weights), metadata={"format": "pt"})
        elif damage == "truncated generation config":
            path = folder / "generation_config.json"
            path.write_text(path.read_text()[:20])
        elif damage == "config without num_hidden_layers":
            path = folder / "config.json"
            config = json_module.loads(path.read_text())
            config.pop("num_hidden_layers")
            path.write_text(json_module.dumps(config))
        return cli("generate", str(folder), "--prompt", "1 2 3")(workspace)

    return run


def _train(*overrides: str) -> Callable[[Workspace], Outcome]:
    """`xlm-hf train star_easy_arlm` on the workspace's data with a tiny model and `overrides`; every case here
    must stop before training."""
    tiny = [f"model.{key}={value}" for key, value in TINY_MODEL.items()]
    return lambda workspace: cli(
        "train",
        "star_easy_arlm",
        *tiny,
        "training.max_steps=2",
        f"training.output_dir={workspace.root}/trained",
        *overrides,
    )(workspace)


CASES: list[Case] = [
    # --- eval
    Case("eval --limit -3", cli("eval", "{arlm}", "--limit", "-3"), message="--limit"),
    Case("eval --limit 0", cli("eval", "{arlm}", "--limit", "0"), message="--limit"),
    Case("eval --limit abc", cli("eval", "{arlm}", "--limit", "abc"), message="--limit"),
    Case("eval --batch-size 0", cli("eval", "{arlm}", "--batch-size", "0"), message="--batch-size"),
    Case(
        "eval --revision on a local folder",
        cli("eval", "{arlm}", "--revision", "main"),
        message="local folder",
    ),
    Case("eval --split nosuch", cli("eval", "{arlm}", "--split", "nosuch", "--limit", "2"), message="nosuch"),
    Case("eval --task nosuch", cli("eval", "{arlm}", "--task", "nosuch"), message="nosuch"),
    Case("eval on a full disk", _eval_disk_full, message="No space left"),
    Case(
        "eval with a garbled experiment.yaml",
        cli(
            "eval", "{root}/broken-experiment", "--limit", "2", patches=(_write_experiment("a: [1, 2\nb: }"),)
        ),
        message="experiment.yaml",
    ),
    Case(
        "eval with an experiment.yaml that is a list",
        cli("eval", "{root}/broken-experiment", "--limit", "2", patches=(_write_experiment("- 1\n- 2\n"),)),
        message="experiment.yaml",
    ),
    # --- generate: options
    Case(
        "arlm --num-beams 0",
        cli("generate", "{arlm}", "--prompt", "1 2", "--num-beams", "0"),
        message="num_beams",
    ),
    Case(
        "arlm --top-p 2 --do-sample",
        cli("generate", "{arlm}", "--prompt", "1 2", "--top-p", "2", "--do-sample"),
        message="top_p",
    ),
    Case("arlm --top-k -1", cli("generate", "{arlm}", "--prompt", "1 2", "--top-k", "-1"), message="top_k"),
    Case(
        "arlm --temperature 0 --do-sample",
        cli("generate", "{arlm}", "--prompt", "1 2", "--temperature", "0", "--do-sample"),
        message="temperature",
    ),
    Case(
        "arlm --max-new-tokens -1",
        cli("generate", "{arlm}", "--prompt", "1 2", "--max-new-tokens", "-1"),
        message="max_new_tokens",
    ),
    Case(
        "mdlm --set num_steps=100000000",
        cli("generate", "{mdlm}", "--prompt", "1 2", "--set", "num_steps=100000000"),
        message="num_steps",
    ),
    Case(
        "mdlm --set num_steps=abc",
        cli("generate", "{mdlm}", "--prompt", "1 2", "--set", "num_steps=abc"),
        message="num_steps",
    ),
    Case(
        "ilm --temperature -1",
        cli("generate", "{ilm}", "--prompt", "1 2", "--temperature", "-1"),
        message="temperature",
    ),
    Case(
        "ilm --set stopping_threshold=abc",
        cli("generate", "{ilm}", "--prompt", "1 2", "--set", "stopping_threshold=abc"),
        message="stopping_threshold",
    ),
    Case(
        "mlm --num-beams 2",
        cli("generate", "{mlm}", "--prompt", "1 2", "--num-beams", "2"),
        message="num_beams",
    ),
    Case("generate --set without =", cli("generate", "{mlm}", "--set", "num_steps"), message="KEY=VALUE"),
    Case(
        "generate --revision on a local folder",
        cli("generate", "{arlm}", "--revision", "v1"),
        message="local folder",
    ),
    Case("generate from a file", cli("generate", "{arlm}/config.json"), message="is a file"),
    # --- generate: prompts
    Case("arlm prompt with [PAD]", cli("generate", "{arlm}", "--prompt", "1 [PAD] 2"), message="[PAD]"),
    Case("arlm prompt with [EOS]", cli("generate", "{arlm}", "--prompt", "1 [EOS] 2"), message="[EOS]"),
    Case("arlm prompt with [MASK]", cli("generate", "{arlm}", "--prompt", "1 [MASK]"), message="[MASK]"),
    Case("mlm prompt with [BOS]", cli("generate", "{mlm}", "--prompt", "1 [BOS] 2"), message="[BOS]"),
    Case("ilm prompt with [CLS]", cli("generate", "{ilm}", "--prompt", "[CLS] 1 2"), message="[CLS]"),
    Case("mdlm prompt with [EOS]", cli("generate", "{mdlm}", "--prompt", "1 2 [EOS]"), message="[EOS]"),
    Case(
        "mlm prompt with [MASK] infills",
        cli("generate", "{mlm}", "--prompt", "1 [MASK] 2", "--max-new-tokens", "0"),
        # the whole text, the gap filled (an untrained model may fill it with a special token, not printed)
        check=lambda o: (
            o.stdout.split()[:1] == ["1"] and o.stdout.split()[-1:] == ["2"] and "[MASK]" not in o.stdout
        ),
    ),
    Case(
        "ilm [MASK] 1 prints what the model wrote",
        _ilm_infill_prints_what_the_model_wrote,
        check=lambda o: o.value.split()[-1] == "1" and set(o.value.split()[:-1]) == {"10"},
    ),
    Case(
        "arlm batch with an empty prompt",
        cli("generate", "{arlm}", "--prompt", "1 2", "--prompt", "", "--max-new-tokens", "3"),
        check=_lines(2),
    ),
    Case(
        "ilm batch with an empty prompt",
        cli("generate", "{ilm}", "--prompt", "1 2", "--prompt", ""),
        check=_lines(2),
    ),
    Case(
        "arlm --num-return-sequences via --set",
        cli("generate", "{arlm}", "--prompt", "1 2", "--do-sample", "--set", "num_return_sequences=2"),
        check=_lines(2),
    ),
    # --- push and card
    Case("push --repo-id -org/x", cli("push", "{arlm}", "--repo-id", "-org/x"), message="-org/x"),
    Case(
        "push --revision bad..branch",
        cli("push", "{arlm}", "--repo-id", "org/x", "--revision", "bad..branch"),
        message="bad..branch",
    ),
    Case(
        "push to an unreachable endpoint",
        cli("push", "{arlm}", "--repo-id", "org/x", env=_push_env(), patches=(_online,)),
        message="failed",
    ),
    Case(
        "push a folder without weights",
        cli("push", "{root}/data", "--repo-id", "org/x"),
        message="config.json",
    ),
    Case("card of a missing folder", cli("card", "{root}/missing"), message="not a model folder"),
    Case("no command", cli(), message="command"),
    Case(
        "console script: --repo-id -org/x",
        shell("xlm-hf", "push", "{arlm}", "--repo-id", "-org/x"),
        message="-org/x",
    ),
    # --- data folders
    Case(
        "prepare-data into a file",
        cli("prepare-data", TASK, "--cache-dir", "{arlm}/config.json/sub"),
        message="is a file",
    ),
    Case(
        "XLM_HF_DATA_DIR is a file",
        cli("eval", "{arlm}", "--limit", "2", env={"XLM_HF_DATA_DIR": "/dev/null"}),
        message="/dev/null",
    ),
    # --- Python API
    Case("arlm generate 1-D input_ids", api(_arlm_generate(one_dimensional=True)), message="2-D"),
    Case(
        "arlm generate short attention mask", api(_arlm_generate(short_mask=True)), message="attention_mask"
    ),
    Case(
        'arlm generate max_new_tokens="5"', api(_arlm_generate(max_new_tokens="5")), message="max_new_tokens"
    ),
    Case("arlm generate num_beams=0", api(_arlm_generate(num_beams=0)), message="num_beams"),
    Case("arlm generate top_p=2", api(_arlm_generate(do_sample=True, top_p=2.0)), message="top_p"),
    Case("mdlm generate num_steps=10**8", api(_generate("mdlm", num_steps=10**8)), message="num_steps"),
    Case("mlm generate top_p=2", api(_generate("mlm", do_sample=True, top_p=2.0)), message="top_p"),
    Case('ilm generate temperature="x"', api(_generate("ilm", temperature="x")), message="temperature"),
    Case("export an ARLM as ilm", api(_export_as("arlm", "ilm")), message="ARLMForCausalLM"),
    Case("export to a file", api(_export_to_file), message="is a file"),
    Case("export killed between renames loads whole", _export_killed_between_renames),
    # --- xlm-hf train: experiment values, checked before any work
    Case(
        "train model.num_hidden_layers=abc",
        _train("model.num_hidden_layers=abc"),
        message="num_hidden_layers",
    ),
    Case("train model.num_hidden_layers=0", _train("model.num_hidden_layers=0"), message="num_hidden_layers"),
    Case("train training.max_steps=abc", _train("training.max_steps=abc"), message="max_steps"),
    Case("train training.learning_rate=x", _train("training.learning_rate=x"), message="learning_rate"),
    Case(
        "train resume from a missing checkpoint",
        _train("training.resume_from_checkpoint=checkpoint-99"),
        message="checkpoint-99",
    ),
    Case(
        "train resume=true without checkpoints",
        _train("training.resume_from_checkpoint=true"),
        message="checkpoint",
    ),
    # --- damaged model folders: refused at load, never generated from
    Case("ilm folder with a missing tensor", _damaged("ilm", "missing tensor"), message="missing"),
    Case("arlm folder with NaN weights", _damaged("arlm", "nan weights"), message="NaN"),
    Case(
        "ilm truncated generation_config.json",
        _damaged("ilm", "truncated generation config"),
        message="generation_config.json",
    ),
    Case(
        "mdlm config.json without num_hidden_layers",
        _damaged("mdlm", "config without num_hidden_layers"),
        message="layers",
    ),
    # --- scripts/finetune.py
    Case(
        "finetune on an empty training file",
        shell(
            sys.executable,
            "scripts/finetune.py",
            "--model_name_or_path",
            "{arlm}",
            "--train_file",
            "{root}/empty.jsonl",
            "--output_dir",
            "{root}/finetuned",
            "--max_steps",
            "1",
        ),
        message="empty.jsonl",
    ),
]


def select(cases: list[Case], keyword: str | None) -> list[Case]:
    return [case for case in cases if keyword is None or keyword in case.name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-k", dest="keyword", default=None, help="run only the cases whose name contains this"
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    failed = 0
    cases = select(CASES, args.keyword)
    with tempfile.TemporaryDirectory(prefix="xlm-hf-probe-") as root:
        workspace = build_workspace(root)
        for case in cases:
            verdict, detail = run_case(case, workspace)
            failed += verdict.startswith("BAD")
            print(f"{verdict:<18} {case.name}  --  {detail}", flush=True)
    print(f"{len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
