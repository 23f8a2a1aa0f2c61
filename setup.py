"""Package discovery, the one part of the build that pyproject.toml cannot declare.

Every package under `xlm_hf/` is found (a new family's package needs no entry anywhere); the two folders at the
top of the repository that install inside it (`modeling/` as `xlm_hf.modeling`, `model_cards/` as
`xlm_hf.model_cards`, mapped by pyproject.toml's `package-dir`) are added by name: `[tool.setuptools.packages.find]`
names a package by its folder and cannot find these two under their installed names. Everything else is in
pyproject.toml.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["xlm_hf", "xlm_hf.*"]), "xlm_hf.modeling", "xlm_hf.model_cards"])
