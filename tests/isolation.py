"""Run Python code in a fresh interpreter where `import xlm_hf` fails, as on a machine with only torch and
transformers: the promise every exported checkpoint keeps."""

import os
import subprocess
import sys
import textwrap

BLOCK_XLM_HF = textwrap.dedent(
    """
    import importlib.abc, sys
    class _BlockXlmHf(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "xlm_hf" or name.startswith("xlm_hf."):
                raise ImportError("xlm_hf is not installed here")
            return None
    sys.meta_path.insert(0, _BlockXlmHf())
    try:
        import xlm_hf  # noqa: F401
        raise SystemExit("xlm_hf is importable: the isolation is broken")
    except ImportError:
        pass
    """
)


def run_without_xlm_hf(code: str, cwd: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_XLM_HF + textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"isolated run failed:\nSTDOUT:\n{result.stdout}\nSTDERR:\n{result.stderr[-4000:]}"
        )
    return result
