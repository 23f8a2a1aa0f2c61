"""Hub-side modeling files (installed as `xlm_hf.modeling`).

Every file here imports only torch, transformers and sibling files through single-level relative imports, so
that `save_pretrained` copies exactly the files a family needs and the checkpoint loads without xlm_hf.
This `__init__` is not copied to checkpoints; it only makes the folder importable as a package.
"""
