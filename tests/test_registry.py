"""One registry: the `Family` record drives the export and the card, families are discovered (no list to keep up to
date), and the training side's modules import each other one way (export writes, the card renders what it is
given, push uploads; none of them loads a model or generates)."""

import ast
import dataclasses
import json
import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, constants
from test_pipelines import export_tiny

import xlm_hf.families as families
from xlm_hf.families import (
    COLLATOR_KINDS,
    TEXT_GENERATION_PIPELINE,
    available_families,
    family_names,
    get_family,
    register_family,
)

ROOT = Path(__file__).resolve().parents[1]
# Where each installed package of the project lives in the repository (see pyproject.toml's package-dir).
PACKAGE_DIRS = {"xlm_hf": ROOT / "xlm_hf", "xlm_hf.modeling": ROOT / "modeling"}
BUILT_IN = {"arlm", "mlm", "mdlm", "ilm", "flexmdm"}


# ----- no import cycle -----------------------------------------------------------------------------------------


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of xlm_hf (the Hub-side folder as `xlm_hf.modeling`)."""
    modules = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            parts = [*package.split("."), *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the xlm_hf modules it imports, anywhere in the file (a function-level import counts: it is the
    usual way to hide a cycle). `from . import x` is an edge to the submodule x when there is one."""
    modules = module_files()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                for alias in node.names:
                    submodule = f"{target}.{alias.name}"
                    imported.add(submodule if submodule in modules else target)
        graph[name] = {module for module in imported if module in modules and module != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that ends where it starts, or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once finished

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for successor in sorted(graph[node]):
            if state.get(successor) == "open":
                return [*path[path.index(successor) :], successor]
            if successor not in state:
                cycle = visit(successor, [*path, successor])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    """The checker itself: a cycle hidden behind a chain is found, a diamond is not a cycle."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None


def test_no_import_cycle_among_xlm_hf_modules():
    graph = import_graph()
    assert {"xlm_hf.export", "xlm_hf.model_card", "xlm_hf.hub", "xlm_hf.jobs"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_export_card_and_push_depend_one_way():
    """export -> card; hub -> export, card; jobs on top. The card never reaches the code that loads or generates."""
    graph = import_graph()

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for module in graph[todo.pop()] - seen:
                seen.add(module)
                todo.append(module)
        return seen

    assert reachable("xlm_hf.model_card").isdisjoint({"xlm_hf.export", "xlm_hf.hub", "xlm_hf.jobs"})
    assert reachable("xlm_hf.export").isdisjoint({"xlm_hf.hub", "xlm_hf.jobs"})
    assert "xlm_hf.jobs" not in reachable("xlm_hf.hub")


# ----- discovery -------------------------------------------------------------------------------------------------


def test_built_in_families_are_discovered():
    assert BUILT_IN <= set(family_names()) and BUILT_IN <= set(available_families())
    # subpackages that register no family are not families
    assert not {"tasks", "metrics", "modeling", "model_cards", "experiments"} & set(family_names())
    with pytest.raises(
        ValueError, match="Unknown family 'tasks'. Known families: arlm, flexmdm, ilm, mdlm, mlm"
    ):
        get_family("tasks")
    for name in BUILT_IN:
        family = get_family(name)
        assert family.collator_kinds[:3] == list(COLLATOR_KINDS)
        assert family.title and family.paper.startswith("https://arxiv.org/abs/")


def test_bench_cache_toggles_name_real_generation_options():
    """scripts/bench.py switches `Family.cache_option`: it must be an option of the family's generation config."""
    from transformers import GenerationConfig

    toggled = {name for name in BUILT_IN if get_family(name).cache_option}
    assert toggled == {"arlm", "mdlm"}
    for name in toggled:
        family = get_family(name)
        option, on, off = family.cache_option
        config = (family.generation_config_class or GenerationConfig)()
        assert hasattr(config, option) and on != off


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry: families registered in a test are gone after it."""
    monkeypatch.setattr(families, "_REGISTRY", dict(families._REGISTRY))
    return families._REGISTRY


def test_a_family_of_another_package_registers_through_an_entry_point(registry, tmp_path, monkeypatch):
    (tmp_path / "toy_family_package.py").write_text(
        "import dataclasses\n"
        "from xlm_hf.families import get_family, register_family\n"
        "FAMILY = register_family(dataclasses.replace(get_family('ilm'), name='toyep', title='A toy'))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toy_family_package", raising=False)
    point = EntryPoint(name="toyep", value="toy_family_package", group=families.ENTRY_POINT_GROUP)

    def entry_points(group=None, **kwargs):
        return [point] if group == families.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(families.importlib.metadata, "entry_points", entry_points)
    assert "toyep" in family_names() and "toyep" not in registry  # listed before it is imported
    assert get_family("toyep").title == "A toy"
    assert "toyep" in available_families()


# ----- the record drives the export and the card ---------------------------------------------------------------


def test_the_family_record_drives_export_and_card(registry, tmp_path):
    toy = register_family(
        dataclasses.replace(
            get_family("ilm"),
            name="toy",
            title="A toy insertion model (TOY)",
            paper="https://example.test/toy-paper",
            pipelines={"text-generation": TEXT_GENERATION_PIPELINE},  # no infill pipeline
            card_template="default",
        )
    )
    assert get_family("toy") is toy and "toy" in available_families()
    folder = export_tiny("toy", tmp_path / "toy", experiment={"family": "toy"})
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"] == {"text-generation": TEXT_GENERATION_PIPELINE}
    assert config["auto_map"] == toy.auto_map and (folder / "pipeline_xlm.py").is_file()
    card = ModelCard.load(folder / "README.md")
    assert card.text.lstrip().startswith("# toy")
    assert "A toy insertion model (TOY) trained on" in card.text
    assert "Paper: https://example.test/toy-paper" in card.text
    assert set(card.data.tags) == {"xlm-hf", "toy", "custom_code"}
    assert "pipeline(" not in card.text  # default.md, not ilm.md (which shows the pipelines)
    # a family without pipelines ships none
    bare = register_family(dataclasses.replace(toy, name="bare", pipelines={}))
    folder = export_tiny("bare", tmp_path / "bare", experiment={"family": "bare"})
    assert "custom_pipelines" not in json.loads((folder / "config.json").read_text())
    assert not (folder / "pipeline_xlm.py").exists() and bare.title in (folder / "README.md").read_text()


# ----- export and push never load a model or generate ----------------------------------------------------------

EXAMPLES = [
    {"text": "1 2 3", "example_title": "Example 1", "output": {"text": "1 2 3 4 5"}},
    {"text": "6 7", "example_title": "Example 2", "output": {"text": "6 7 8"}},
]


@pytest.fixture
def no_model_use(monkeypatch):
    """Records every model load and every forward pass of the ILM family's model class."""
    model_class = get_family("ilm").model_class
    calls = []
    original_load, original_forward = model_class.from_pretrained.__func__, model_class.forward

    def from_pretrained(cls, *args, **kwargs):
        calls.append("from_pretrained")
        return original_load(cls, *args, **kwargs)

    def forward(self, *args, **kwargs):
        calls.append("forward")
        return original_forward(self, *args, **kwargs)

    monkeypatch.setattr(model_class, "from_pretrained", classmethod(from_pretrained))
    monkeypatch.setattr(model_class, "forward", forward)
    return calls


def test_export_and_push_never_load_or_run_the_model(tmp_path, no_model_use, monkeypatch):
    folder = export_tiny("ilm", tmp_path / "tiny-ilm", experiment={"family": "ilm"})
    # prompts the card could show: an earlier card generated from them when it was written
    predictions = folder / "predictions" / "prediction"
    predictions.mkdir(parents=True)
    (predictions / "step=0.jsonl").write_text(json.dumps({"prompt": "1 2 3", "target": "4 5"}) + "\n")
    export_tiny(
        "ilm", folder, experiment={"family": "ilm"}
    )  # a second export of the folder (carries them over)
    assert (folder / "predictions").is_dir() and no_model_use == []

    # the card renders what it is given, and a re-render keeps it
    from xlm_hf.model_card import write_model_card

    write_model_card(folder, examples=EXAMPLES)
    assert ModelCard.load(folder / "README.md").data.widget == EXAMPLES

    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    uploaded = {}

    def create_commit(api, repo_id, operations, **kwargs):
        for op in operations:
            assert isinstance(op, CommitOperationAdd)
            with op.as_file() as handle:
                uploaded[op.path_in_repo] = handle.read()
        return SimpleNamespace(commit_url=None, oid=None)

    monkeypatch.setattr(HfApi, "create_repo", lambda api, repo_id, **kwargs: None)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    from xlm_hf.hub import push_to_hub

    push_to_hub(folder, "my-org/tiny-ilm")
    assert no_model_use == []
    pushed = tmp_path / "pushed.md"
    pushed.write_bytes(uploaded["README.md"])
    card = ModelCard.load(pushed)
    assert card.data.widget == EXAMPLES and 'from_pretrained("my-org/tiny-ilm"' in card.text


def test_training_side_generates_the_widget_from_the_model_in_memory(tmp_path):
    """`jobs.widget_examples` runs the model it is given and leaves it as it was (mode, tokenizer padding side)."""
    from xlm_hf.jobs import NO_DATA_NOTE, generate, widget_examples

    folder = export_tiny("ilm", tmp_path / "tiny-ilm")
    from xlm_hf.export import load_model_and_tokenizer

    model, tokenizer, family, _ = load_model_and_tokenizer(folder)
    model.train()
    tokenizer.padding_side = "right"
    rows = [{"prompt": "1 2 3", "target": "4 5"}]
    examples, note = widget_examples(model, tokenizer, family, rows)
    assert note == "" and model.training and tokenizer.padding_side == "right"
    torch.manual_seed(0)
    (continuation,) = generate(str(folder), ["1 2 3"])
    assert examples == [
        {"text": "1 2 3", "example_title": "Example 1", "output": {"text": f"1 2 3 {continuation}".strip()}}
    ]
    assert widget_examples(model, tokenizer, family, []) == ([], NO_DATA_NOTE)
