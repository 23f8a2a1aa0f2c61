#!/usr/bin/env python
"""Benchmark one experiment: training speed and memory, achieved FLOP rate, generation speed.

    python scripts/bench.py star_easy_arlm
    python scripts/bench.py arlm/star_easy_arlm training.per_device_train_batch_size=32
    python scripts/bench.py star_easy_mdlm --steps 20 --generation-batches 2
    python scripts/bench.py star_hard_ilm --threads 1 --generation-batches 0   # training only
    python scripts/bench.py star_easy_ilm --device cuda training.bf16=true   # on a GPU, bf16 autocast

Prints a table and, last, one JSON line. Training: seconds per optimizer step, tokens per second (all positions
of the batch, prompt and target), peak resident memory, achieved GFLOP/s (6·N·T for the dense layers plus the
attention matmuls) and its fraction of a float32 matmul peak that this script measures on the same machine.
Generation: new tokens per second through the family's `predict_targets` on the validation split, with the
family's cache (`Family.cache_option`) switched on and off, and the model calls per sample where the family counts
them. With `--device cuda` the model and batches live on the GPU, timings wait for it (synchronize), memory is the
GPU's peak allocation and the matmul peak is measured there in the training's dtype (bf16 with `training.bf16=true`).
"""

import argparse
import json
import resource
import sys
import time

import torch
from accelerate.utils import send_to_device
from transformers import set_seed

from xlm_hf.experiment import data_arguments
from xlm_hf.families import get_family
from xlm_hf.jobs import block_sizes, build_eval_tasks, prepare_experiment, training_arguments
from xlm_hf.tasks import get_task, load_task, tokenize_seq2seq


def synchronize(device: torch.device) -> None:
    """Waits for the GPU's queued work, so that a timer reads the work itself and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(
    device: torch.device, dtype: torch.dtype = torch.float32, size: int = 1024, repeats: int = 20
) -> float:
    """Matmul rate of this device in `dtype` (on CPU with torch's current threads); the best of a few tries."""
    if device.type == "cuda":
        size, repeats = 8192, 10  # big enough to fill the GPU
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(3):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        synchronize(device)
        elapsed = time.perf_counter() - start
        best = max(best, 2 * size**3 * repeats / elapsed / 1e9)
    return best


def flops_per_step(model, batch_size: int, length: int) -> float:
    """6 FLOPs per parameter per token for the dense layers (forward + backward) plus the attention score and
    value matmuls (2 · 2 · L · d per token per layer forward, times 3 with backward)."""
    config = model.config
    dense = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    tokens = batch_size * length
    attention = 3 * 4 * config.num_hidden_layers * length * config.hidden_size * tokens
    return 6 * dense * tokens + attention


def peak_memory_mib(device: torch.device) -> float:
    """The GPU's peak allocation on cuda; else the process's peak resident memory (both: since the start)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "experiment", help="experiment name or path; a FAMILY/ prefix is accepted and ignored"
    )
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps (after 5 warm-up steps)")
    parser.add_argument(
        "--generation-batches", type=int, default=2, help="validation batches to time generation on; 0: none"
    )
    parser.add_argument("--generation-batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print where 5 training steps spend their time (torch.profiler)",
    )
    args = parser.parse_intermixed_args()  # options before or after the overrides
    if args.generation_batches < 0 or args.generation_batch_size < 1:
        parser.error(
            "--generation-batches must be 0 or more and --generation-batch-size 1 or more, got "
            f"{args.generation_batches} and {args.generation_batch_size}"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no GPU on this machine")

    name = (
        args.experiment.split("/", 1)[-1]
        if "/" in args.experiment and not args.experiment.endswith(".yaml")
        else args.experiment
    )
    experiment = prepare_experiment(
        name, [*args.overrides, "training.eval_strategy=no", "training.report_to=none"]
    )
    family = get_family(experiment["family"])
    data_args = data_arguments(experiment)
    input_block_size, block_size = block_sizes(data_args)
    train_args = training_arguments(experiment)
    set_seed(train_args.seed)

    tokenizer = get_task(data_args.task).build_tokenizer()
    model_options = dict(experiment.get("model", {}))
    model_options.setdefault("max_position_embeddings", input_block_size + block_size)
    model = family.build_model(tokenizer, **model_options).to(device)
    splits = load_task(data_args.task, data_args.cache_dir)
    train_split = tokenize_seq2seq(splits["train"].select(range(4096)), tokenizer)
    collator = family.collators["seq2seq"](
        tokenizer=tokenizer,
        input_block_size=input_block_size,
        block_size=block_size,
        **experiment.get("collator", {}),
    )
    trainer = family.trainer_class(
        model=model,
        args=train_args,
        train_dataset=train_split,
        data_collator=collator,
        processing_class=tokenizer,
    )

    # ----- training: the Trainer's own loss and optimizer, one optimizer step per batch ---------------------
    batch_size = train_args.per_device_train_batch_size
    optimizer = trainer.create_optimizer()  # the one training uses (`training.optim`; fused AdamW by default)
    batches = [
        send_to_device(collator([train_split[i] for i in range(s, s + batch_size)]), device)
        for s in range(0, 4096 - batch_size, batch_size)
    ]
    model.train()

    def step(batch):
        with trainer.autocast_smart_context_manager():  # bf16 / fp16 autocast as training uses it, if set
            loss = trainer.compute_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for i in range(5):
        step(batches[i % len(batches)])
    synchronize(device)
    start = time.perf_counter()
    for i in range(args.steps):
        step(batches[(5 + i) % len(batches)])
    synchronize(device)
    seconds_per_step = (time.perf_counter() - start) / args.steps
    training_peak_memory = peak_memory_mib(device)  # before the matmul probe below allocates its matrices
    if args.profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
            for i in range(5):
                step(batches[i % len(batches)])
        print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    length = batches[0]["input_ids"].shape[1]
    tokens_per_second = batch_size * length / seconds_per_step
    achieved = flops_per_step(model, batch_size, length) / seconds_per_step / 1e9
    peak = matmul_peak_gflops(device, torch.bfloat16 if train_args.bf16 else torch.float32)

    # ----- generation ---------------------------------------------------------------------------------------
    model.eval()
    generation = {}
    if args.generation_batches > 0:  # 0: training only
        eval_experiment = {
            **experiment,
            "eval_tasks": {
                "prediction": {"kind": "generate", "split": "validation", "metrics": ["exact_match"]}
            },
        }
        validation = {"validation": tokenize_seq2seq(splits["validation"], tokenizer)}
        task = build_eval_tasks(family, eval_experiment, tokenizer, validation)["prediction"]
        rows = [
            task.dataset[i % len(task.dataset)]
            for i in range(args.generation_batch_size * args.generation_batches)
        ]
        pred_batches = [
            send_to_device(task.collator(rows[i : i + args.generation_batch_size]), device)
            for i in range(0, len(rows), args.generation_batch_size)
        ]
        settings = {"default": {}}
        if family.cache_option:
            option, on, off = family.cache_option
            settings = {"cache on": {option: on}, "cache off": {option: off}}
        for label, options in settings.items():
            trainer.generation_kwargs = {**experiment.get("generation", {}), **options}
            calls = 0
            with torch.no_grad():
                trainer.predict_targets(model, pred_batches[0])  # warm-up
                synchronize(device)
                start = time.perf_counter()
                for batch in pred_batches:
                    trainer.predict_targets(model, batch)
                    calls += getattr(trainer, "last_model_calls", 0) or 0
                synchronize(device)
                elapsed = time.perf_counter() - start
            new_tokens = len(rows) * block_size
            generation[label] = {
                "new_tokens_per_s": round(new_tokens / elapsed, 1),
                "seconds_per_batch": round(elapsed / len(pred_batches), 4),
                "model_calls_per_sample": round(calls / len(rows), 2) if calls else None,
            }

    result = {
        "experiment": experiment["name"],
        "family": family.name,
        "batch_size": batch_size,
        "sequence_length": length,
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(device),
        "dtype": "bf16 autocast" if train_args.bf16 else "float32",
        "threads": torch.get_num_threads(),
        "train_seconds_per_step": round(seconds_per_step, 4),
        "train_tokens_per_s": round(tokens_per_second, 1),
        "peak_memory_mib": round(training_peak_memory, 1),
        "achieved_gflops": round(achieved, 2),
        "matmul_peak_gflops": round(peak, 2),
        "fraction_of_peak": round(achieved / peak, 4),
        "generation": generation,
        "command": " ".join(["python", "scripts/bench.py", *sys.argv[1:]]),
    }
    print(f"{'metric':<28} value")
    for key in (
        "experiment",
        "parameters",
        "batch_size",
        "sequence_length",
        "device",
        "dtype",
        "threads",
        "train_seconds_per_step",
        "train_tokens_per_s",
        "peak_memory_mib",
        "achieved_gflops",
        "matmul_peak_gflops",
        "fraction_of_peak",
    ):
        print(f"{key:<28} {result[key]}")
    for label, numbers in generation.items():
        print(
            f"{'generation (' + label + ')':<28} {numbers['new_tokens_per_s']} new tokens/s, "
            f"{numbers['seconds_per_batch']} s/batch, calls/sample {numbers['model_calls_per_sample']}"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
