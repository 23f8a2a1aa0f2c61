"""The scale-out presets (xlm_hf/accelerate_configs/): DDP and FSDP with 2 CPU processes on gloo give the loss of
the 1-process run with the same global batch; the accelerate config files parse and name the backbone's layer
class as FSDP's wrap unit; the DeepSpeed files parse (they run only on a GPU machine with deepspeed).

The family is ARLM: its collator draws no noise, so both runs see exactly the same 16 examples per step (the
2-process run as two shards of 8) and the losses may differ only by float summation order.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType
from xlm_hf.modeling.backbone import XLMBlock, XLMPreTrainedModel

import xlm_hf

CONFIGS = Path(xlm_hf.__file__).parent / "accelerate_configs"
TINY = [
    "model.hidden_size=32",
    "model.num_hidden_layers=2",
    "model.num_attention_heads=2",
    "model.intermediate_size=64",
    "data.max_train_samples=64",
    "data.max_eval_samples=8",
    "training.eval_strategy=no",
    "training.max_steps=3",
    "training.logging_steps=1",
    "training.warmup_steps=0",
    "training.learning_rate=0.01",
    "training.disable_tqdm=true",
    "training.report_to=none",
]
GLOBAL_BATCH = 16


def fsdp_overrides() -> list[str]:
    """The FSDP preset as experiment keys (`training.fsdp`, `training.fsdp_config`): what fsdp.yaml sets."""
    fsdp = yaml.safe_load((CONFIGS / "fsdp.yaml").read_text())["fsdp_config"]
    layer = fsdp["fsdp_transformer_layer_cls_to_wrap"]
    return [
        "training.fsdp=full_shard auto_wrap",
        f"training.fsdp_config={{transformer_layer_cls_to_wrap: [{layer}], use_orig_params: true}}",
    ]


def train(out: Path, nproc: int, extra: list[str] = ()) -> list[float]:
    """`xlm-hf train star_easy_arlm` (torchrun with `nproc` > 1); returns the logged training losses."""
    batch = GLOBAL_BATCH // nproc
    args = ["train", "star_easy_arlm", *TINY, f"training.per_device_train_batch_size={batch}", *extra]
    args.append(f"training.output_dir={out}")
    if nproc == 1:
        command = [sys.executable, "-m", "xlm_hf.cli", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        command += ["-m", "xlm_hf.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((out / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


@pytest.fixture(scope="module")
def single_process_losses(tmp_path_factory, data_dir) -> list[float]:
    return train(tmp_path_factory.mktemp("one") / "arlm", nproc=1)


def test_ddp_two_processes_match_one_process(single_process_losses, tmp_path, data_dir):
    losses = train(tmp_path / "ddp", nproc=2)
    assert len(losses) == len(single_process_losses) == 3
    assert losses == pytest.approx(single_process_losses, rel=1e-4)
    assert losses[-1] < losses[0]  # it trains, so the match is not two runs that did nothing


def test_fsdp_two_processes_match_one_process(single_process_losses, tmp_path, data_dir):
    out = tmp_path / "fsdp"
    losses = train(out, nproc=2, extra=fsdp_overrides())
    assert losses == pytest.approx(single_process_losses, rel=1e-4)
    # the export gathers the shards into one full checkpoint that loads like any other
    from transformers import AutoModel

    exported = next(p.parent for p in out.rglob("config.json") if (p.parent / "model.safetensors").exists())
    model = AutoModel.from_pretrained(exported, trust_remote_code=True)
    assert model.config.num_hidden_layers == 2


@pytest.mark.parametrize(
    "name, kind",
    [
        ("ddp.yaml", DistributedType.MULTI_GPU),
        ("fsdp.yaml", DistributedType.FSDP),
        ("deepspeed_zero2.yaml", DistributedType.DEEPSPEED),
        ("deepspeed_zero3.yaml", DistributedType.DEEPSPEED),
    ],
)
def test_accelerate_reads_each_preset(name, kind):
    config = load_config_from_file(str(CONFIGS / name))
    assert config.distributed_type == kind
    assert config.num_processes >= 2 and config.mixed_precision == "no"


def test_fsdp_preset_wraps_the_backbone_layer():
    config = load_config_from_file(str(CONFIGS / "fsdp.yaml")).fsdp_config
    assert config["fsdp_sharding_strategy"] == "FULL_SHARD"
    assert config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    # the wrap unit is the class every family's layers are made of, and the one transformers never splits
    assert config["fsdp_transformer_layer_cls_to_wrap"] == XLMBlock.__name__
    assert XLMBlock.__name__ in XLMPreTrainedModel._no_split_modules


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_presets(stage):
    config = load_config_from_file(str(CONFIGS / f"deepspeed_zero{stage}.yaml")).deepspeed_config
    assert config["zero_stage"] == stage
    # "auto" lets accelerate take accumulation and clipping from the experiment's TrainingArguments
    assert config["gradient_accumulation_steps"] == "auto" and config["gradient_clipping"] == "auto"
    if importlib.util.find_spec("deepspeed") is None:
        pytest.skip(
            "deepspeed is not installed (it needs CUDA to build); the file was checked as accelerate reads it"
        )
    from accelerate.utils import DeepSpeedPlugin

    plugin = DeepSpeedPlugin(zero_stage=stage)
    assert plugin.deepspeed_config["zero_optimization"]["stage"] == stage
