"""transformers' own common model tests, taken at test time from the sdist that matches the installed version.

`load_common_tests()` returns the modules `test_modeling_common`, `test_configuration_common` and
`test_pipeline_mixin` of transformers' source distribution on PyPI. They are downloaded once (`pip download
transformers==<installed> --no-binary :all:`) and extracted into the git-ignored
`.cache/transformers-tests/<version>/`; nothing of them is copied into this repository.

The sdist holds only the top-level `tests/test_*.py` files, not the folders they import from. The few names they
import from there are stood in for by small files written here (see `STUBS`), each saying what it replaces:
the generation and export tester mixins (this project writes those behaviours as its own tests), the dict of common
config kwargs, the tiny-model summary of the pipeline tests (empty: those tests load tiny models from the Hub) and
the `src/transformers` folder the pipeline mixin imports (it resolves to the installed package).

Set `XLM_HF_TRANSFORMERS_TESTS` to a folder that already holds the three files (e.g. an extracted sdist's
`tests/`) to skip the download, e.g. on a machine without access to PyPI.
"""

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

import transformers

ENV_VAR = "XLM_HF_TRANSFORMERS_TESTS"
CACHE_ROOT = Path(__file__).resolve().parent.parent / ".cache" / "transformers-tests"
COMMON_FILES = ("test_modeling_common.py", "test_configuration_common.py", "test_pipeline_mixin.py")
# The name the extracted `tests/` folder is imported under: unique, so it never clashes with another `tests` package.
PACKAGE = "transformers_sdist_tests"

STUBS = {
    "__init__.py": "",
    "exporters/__init__.py": "",
    "exporters/test_export.py": '''
class ExportTesterMixin:
    """Stand-in: transformers' export tests are not in its sdist; xlm_hf tests `torch.export` of every family
    in tests/test_transformers_common.py."""
''',
    "generation/__init__.py": "",
    "generation/test_utils.py": '''
class GenerationTesterMixin:
    """Stand-in: transformers' generation tests are not in its sdist; xlm_hf writes the generation behaviours it
    offers as its own tests (tests/test_arlm_model.py and the generation test modules)."""
''',
    "utils/__init__.py": "",
    "utils/test_configuration_utils.py": """
import torch

# Stand-in for transformers' dict of the same name: common config arguments with values that differ from the
# defaults, which every config must store as given (`ConfigTester.check_config_arguments_init`).
config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": torch.float16,
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
""",
    # The pipeline mixin reads this at import time; its tests load tiny models from the Hub, which tests cannot reach.
    "utils/tiny_model_summary.json": "{}\n",
    # The pipeline mixin imports `<tests>/../src/transformers` as `transformers`; an empty module there makes that
    # import return the installed package.
    "../src/transformers/__init__.py": "",
}


def _download_sdist(version: str, destination: Path) -> Path:
    with tempfile.TemporaryDirectory() as download_dir:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"transformers=={version}",
            "--no-binary",
            ":all:",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-d",
            download_dir,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        archives = list(Path(download_dir).glob("transformers-*.tar.gz"))
        if result.returncode != 0 or not archives:
            raise RuntimeError(
                f"Could not download the transformers {version} source distribution from PyPI "
                f"(`{' '.join(command)}` said: {result.stderr.strip()[-500:]}). Give the tests network access to "
                f"PyPI once (the files are cached in {CACHE_ROOT}), or set {ENV_VAR} to a folder holding "
                f"{', '.join(COMMON_FILES)} of transformers {version}."
            )
        destination.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archives[0]) as archive:
            for name in COMMON_FILES:
                member = archive.getmember(f"transformers-{version}/tests/{name}")
                (destination / name).write_bytes(archive.extractfile(member).read())
    return destination


def transformers_tests_dir() -> Path:
    """The folder holding transformers' common test files for the installed version, with the stand-ins added."""
    version = transformers.__version__
    target = CACHE_ROOT / version / "tests"
    if not all((target / name).is_file() for name in COMMON_FILES):
        given = os.environ.get(ENV_VAR)
        partial = target.with_name("tests.partial")
        shutil.rmtree(partial, ignore_errors=True)
        if given:
            missing = [name for name in COMMON_FILES if not (Path(given) / name).is_file()]
            if missing:
                raise RuntimeError(f"{ENV_VAR}={given} lacks {', '.join(missing)}.")
            partial.mkdir(parents=True)
            for name in COMMON_FILES:
                shutil.copyfile(Path(given) / name, partial / name)
        else:
            _download_sdist(version, partial)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)  # only a complete folder ever sits at `target`
    for relative, text in STUBS.items():
        path = (target / relative).resolve()
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text.lstrip("\n"))
    return target


def load_common_tests() -> tuple[ModuleType, ModuleType, ModuleType]:
    """Imports (test_modeling_common, test_configuration_common, test_pipeline_mixin) from the sdist."""
    folder = transformers_tests_dir()
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
    return tuple(importlib.import_module(f"{PACKAGE}.{name.removesuffix('.py')}") for name in COMMON_FILES)
