"""`xlm-hf new-family NAME [--like FAMILY]`: a new family, written by copying and renaming a working one.

The copy is systematic: every file of the model family `LIKE` (its Hub-side configuration, modeling and generation
files in `modeling/`, its package with the collators and the Trainer in `xlm_hf/`, its star_easy experiment, its
card template) is written under the new name, with the family's name (`mlm` -> `name`: module names, `model_type`,
`auto_map`, the registry name, the loss `<name>_loss`) and its class prefix (`MLM` -> `Name`: `NameForMaskedLM`,
`NameConfig`, `NameTrainer`...) replaced, and a test file subclassing every shared contract is added. Everything
is checked before anything is written, and the files are written to a staging folder first and then moved in, so a
refused or failed run leaves the checkout as it was.
"""

import keyword
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .families import family_names

DEFAULT_LIKE = "mlm"


@dataclass(frozen=True)
class _Template:
    """What a family to copy needs besides its files: the class prefix its names use and the body of each contract
    test class (the options the contracts need for that kind of model)."""

    prefix: str
    collator_contract: str
    generation_contract: str
    model_contract: str = ""
    trainer_contract: str = ""
    imports: str = ""


# The families `new-family` can copy. MLM is the simplest non-autoregressive one; ARLM the autoregressive baseline;
# MDLM adds time conditioning (a noise level per row) to MLM; ILM inserts tokens instead of unmasking them.
MASKED_HISTORY_CONTRACT = (
    '    history_options = {"output_history": True}\n'
    "    supports_infilling = True\n"
    '    infill_options = {"max_new_tokens": 0}\n'
    "\n"
    "    def replay_history(self, output, row):\n"
    "        return self.real_tokens(output.history[-1], row)  # the canvas after the last step\n"
)
MASKED_COLLATOR_CONTRACT = (
    "    # prompt from column 0, then the target slot: the row is right-padded as a whole\n"
    '    padding_sides = {**CollatorContract.padding_sides, "seq2seq": "right"}\n'
)
TEMPLATES = {
    "mlm": _Template(
        prefix="MLM",
        collator_contract=MASKED_COLLATOR_CONTRACT,
        generation_contract=(
            '    generation_options = {"num_steps": 4, "do_sample": False, "suppress_tokens": SPECIAL_IDS}\n'
            + MASKED_HISTORY_CONTRACT
        ),
    ),
    "arlm": _Template(
        prefix="ARLM",
        collator_contract="",
        generation_contract=(
            "    # no [EOS]: fixed lengths\n"
            '    generation_options = {"do_sample": False, "suppress_tokens": SPECIAL_IDS}\n'
        ),
    ),
    "mdlm": _Template(
        prefix="MDLM",
        imports="import torch\n",
        # a non-zero output layer, so outputs (and their equality checks) are not trivially zero
        model_contract=(
            '    config_overrides = {"zero_init_output": False, "time_embedding_dim": 16}\n'
            "\n"
            "    def extra_inputs(self, input_ids):\n"
            '        return {"noise_level": torch.linspace(0.5, 5.0, input_ids.shape[0])}\n'
        ),
        collator_contract=MASKED_COLLATOR_CONTRACT,
        trainer_contract='    config_overrides = {"zero_init_output": False, "time_embedding_dim": 16}\n',
        generation_contract=(
            '    config_overrides = {"time_embedding_dim": 16}\n'
            "    generation_options = {\n"
            '        "num_steps": 4,\n'
            '        "do_sample": False,\n'
            '        "suppress_tokens": SPECIAL_IDS,\n'
            '        "sampler": "unmask",\n'
            "    }\n" + MASKED_HISTORY_CONTRACT
        ),
    ),
    "ilm": _Template(
        prefix="ILM",
        model_contract=(
            "\n"
            "    def auxiliary_loss(self, model, inputs):\n"
            "        return model(**inputs).stopping_logits.float().logsumexp(-1).mean()\n"
        ),
        # one item per row: the deletions are in target_positions / target_tokens
        collator_contract="    token_labels = False\n",
        generation_contract=(
            '    generation_options = {"stopping_threshold": 1.0}  # never stops early: fixed lengths\n'
            '    history_options = {"output_history": True}\n'
            "    supports_infilling = True\n"
            '    infill_options = {"max_new_tokens": 3}\n'
            "    layout_tokens = 2  # [CLS] prompt [BOS]\n"
            "    # the plain initialisation: perturbed weights saturate the stopping head\n"
            "    weight_noise = 0.0\n"
            "\n"
            "    def replay_history(self, output, row):\n"
            "        sequence = self.real_tokens(output.initial_sequences, row)\n"
            "        positions, tokens = output.history_positions[row].tolist(), output.history_tokens[row].tolist()\n"
            "        for position, token in zip(positions, tokens):\n"
            "            if position >= 0:\n"
            "                sequence.insert(position, token)\n"
            "        return sequence\n"
        ),
    ),
}

TEST_FILE = '''"""The {name} family against every shared contract: model, collators, Trainer and generation.

Written by `xlm-hf new-family {name} --like {like}` with the options the contracts need for {like}'s kind of
model; add the tests of what makes {name} itself below.
"""

{imports}from collator_contract import CollatorContract
from generation_contract import {generation_imports}
from model_contract import ModelContract
from trainer_contract import TrainerContract


class Test{camel}Contract(ModelContract):
    family = "{name}"
{model_contract}

class Test{camel}CollatorContract(CollatorContract):
    family = "{name}"
{collator_contract}

class Test{camel}TrainerContract(TrainerContract):
    family = "{name}"
{trainer_contract}

class Test{camel}GenerationContract(GenerationContract):
    family = "{name}"
{generation_contract}'''

NEXT_STEPS = """Next steps:
  1. Fill in the TODOs in xlm_hf/{name}/__init__.py (title, paper) and model_cards/{name}.md.
  2. Change the model ({modeling}), its loss `{name}_loss`, the collators and the Trainer; keep
     modeling/ importing only torch, transformers and its siblings (`from .x import y`).
  3. Check that it learns:  xlm-hf train star_easy_{name} --debug overfit
  4. Run its contracts:     python -m pytest -q tests/test_{name}.py
  5. Train it:              xlm-hf train star_easy_{name}
See docs/adding-a-family.md."""


def camel_case(name: str) -> str:
    """`my_lm` -> `MyLm`: the class prefix of a family named `name`."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def default_root() -> Path:
    """The source checkout xlm_hf runs from (an editable install): the folder holding `xlm_hf/` and `modeling/`."""
    return Path(__file__).resolve().parent.parent


def _rename(text: str, like: str, prefix: str, name: str, class_prefix: str) -> str:
    """`like` -> `name` and `prefix` -> `class_prefix` wherever they start a word or an identifier part (`modeling_mlm`,
    `xlm-hf-mlm`, `MLMForMaskedLM`), not inside another word."""
    text = re.sub(rf"(?<![A-Za-z0-9]){prefix}", class_prefix, text)
    return re.sub(rf"(?<![A-Za-z0-9]){like}(?![a-z])", name, text)


def _mark_placeholders(init_text: str, name: str, like: str) -> str:
    """The registration's title and paper describe the copied family: replace them with marked placeholders."""
    replacements = {
        r"^(\s*)title=.*,$": rf'\1title="TODO({name}): one line on what {name} is",  # opens the model card',
        r"^(\s*)paper=.*,$": rf'\1paper="",  # TODO({name}): the URL of the paper the family implements',
    }
    for pattern, replacement in replacements.items():
        init_text, count = re.subn(pattern, replacement, init_text, count=1, flags=re.MULTILINE)
        if count != 1:
            raise ValueError(f"xlm_hf/{like}/__init__.py has no single-line `{pattern.split('=')[0][6:]}=`.")
    docstring = (
        f'"""{name}: a new family, copied from {like} by `xlm-hf new-family`. TODO({name}): what it is."""'
    )
    return re.sub(r'\A""".*?"""', lambda _: docstring, init_text, count=1, flags=re.DOTALL)


def _check_name(name: str, like: str, root: Path) -> None:
    """Every reason to refuse, checked before anything is written (each a ValueError that says what to do)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise ValueError(
            f"The family name {name!r} is not a lowercase Python identifier: use letters, digits and "
            "underscores, starting with a letter (e.g. my_lm)."
        )
    known = family_names()
    if like not in known:
        raise ValueError(f"Unknown family {like!r} for --like. Known families: {', '.join(known)}.")
    if like not in TEMPLATES:
        raise ValueError(f"--like {like} is not supported yet; copy one of: {', '.join(sorted(TEMPLATES))}.")
    if name in known:
        raise ValueError(f"The family {name!r} exists already; choose another name.")
    from transformers import CONFIG_MAPPING

    for model_type in {name, name.replace("_", "-"), f"xlm-hf-{name}"}:
        if model_type in CONFIG_MAPPING:
            raise ValueError(
                f"{name!r} is a model type of transformers ({model_type!r}): AutoConfig would confuse the two; "
                "choose another name."
            )
    if not (root / "modeling").is_dir() or not (root / "xlm_hf" / "families.py").is_file():
        raise ValueError(
            f"{root} is not a source checkout of xlm_hf (no modeling/ and xlm_hf/ folders): run new-family from "
            "an editable install (`pip install -e .`) or pass --root."
        )
    # a module of that name would shadow (or be shadowed by) the new package: xlm_hf.trainer, xlm_hf.tasks...
    if (root / "xlm_hf" / f"{name}.py").exists() or (root / "xlm_hf" / name).exists():
        raise ValueError(f"xlm_hf/{name} (or xlm_hf/{name}.py) exists already; choose another name.")


def _plan(name: str, like: str, root: Path, class_prefix: str) -> dict[str, str]:
    """Relative path -> content of every file of the new family."""
    template = TEMPLATES[like]
    files = {}
    sources = [
        *(f"modeling/{kind}_{like}.py" for kind in ("configuration", "modeling", "generation")),
        *(path.relative_to(root).as_posix() for path in sorted((root / "xlm_hf" / like).glob("*.py"))),
        f"xlm_hf/experiments/star_easy_{like}.yaml",
        f"model_cards/{like}.md",
    ]
    for source in sources:
        source_path = root / source
        if not source_path.is_file():
            if source.startswith("modeling/generation_"):  # a family without its own decoder (ARLM)
                continue
            raise ValueError(f"{source} is missing: the {like} family cannot be copied from this checkout.")
        text = _rename(source_path.read_text(encoding="utf-8"), like, template.prefix, name, class_prefix)
        target = _rename(source, like, template.prefix, name, class_prefix)
        if source == f"xlm_hf/{like}/__init__.py":
            text = _mark_placeholders(text, name, like)
        if source.endswith(".md"):
            # a Jinja comment (renders to nothing, and `-#}` keeps the front matter on the first line)
            text = (
                f"{{# TODO({name}): describe the family; this text was copied from {like}'s card. -#}}\n"
                + text
            )
        files[target] = text
    files[f"tests/test_{name}.py"] = TEST_FILE.format(
        name=name,
        like=like,
        camel=class_prefix,
        imports=template.imports,
        generation_imports=", ".join(
            [
                *(["SPECIAL_IDS"] if "SPECIAL_IDS" in template.generation_contract else []),
                "GenerationContract",
            ]
        ),
        model_contract=template.model_contract,
        collator_contract=template.collator_contract,
        trainer_contract=template.trainer_contract,
        generation_contract=template.generation_contract,
    )
    existing = [path for path in files if (root / path).exists()]
    if existing:
        raise ValueError(f"{', '.join(existing)} exist already: remove them or choose another name.")
    return files


def new_family(
    name: str, like: str = DEFAULT_LIKE, root: str | Path | None = None, class_prefix: str | None = None
) -> list[str]:
    """Writes the family `name`, copied from `like`, into the checkout `root` (default: the one xlm_hf runs
    from); returns the paths written, relative to `root`. Writes nothing if any check fails."""
    root = Path(root) if root is not None else default_root()
    _check_name(name, like, root)
    class_prefix = class_prefix or camel_case(name)
    if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", class_prefix):
        raise ValueError(
            f"The class prefix {class_prefix!r} is not a CamelCase identifier: use letters and digits, starting "
            "with a capital letter (e.g. FlexMDM)."
        )
    files = _plan(name, like, root, class_prefix)
    # All files go to a staging folder inside the checkout (same file system: the moves are renames), then in.
    staging = Path(tempfile.mkdtemp(prefix=".new-family-", dir=root))
    moved: list[Path] = []
    new_dirs = sorted(
        {(root / path).parent for path in files if not (root / path).parent.exists()}, reverse=True
    )
    try:
        for path, text in files.items():
            (staging / path).parent.mkdir(parents=True, exist_ok=True)
            (staging / path).write_text(text, encoding="utf-8")
        for path in files:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (staging / path).replace(root / path)
            moved.append(root / path)
    except BaseException:
        for path in moved:
            path.unlink(missing_ok=True)
        for folder in new_dirs:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return list(files)


def next_steps(name: str, written: list[str]) -> str:
    """What to do after `new-family`: the text the CLI prints under the list of files."""
    modeling = next(path for path in written if path.startswith("modeling/modeling_"))
    return NEXT_STEPS.format(name=name, modeling=modeling)


__all__ = ["DEFAULT_LIKE", "TEMPLATES", "camel_case", "new_family", "next_steps"]
