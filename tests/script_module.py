"""Import a file of `scripts/` as a module, so tests can call its functions (scripts are not a package)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS_DIR = Path(__file__).resolve().parents[1] / "scripts"


def load_script(file_name: str) -> ModuleType:
    # as `python scripts/<file>` puts the script's folder on sys.path: a script may import its sibling scripts
    if str(SCRIPTS_DIR) not in sys.path:
        sys.path.append(str(SCRIPTS_DIR))
    spec = importlib.util.spec_from_file_location(
        f"xlm_script_{Path(file_name).stem}", SCRIPTS_DIR / file_name
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
