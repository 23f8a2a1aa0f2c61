#!/usr/bin/env python
"""One side of `scripts/compare_speed.py`: builds one family of one system and times what the driver asks.

    python scripts/compare_speed_worker.py --system xlm_hf --family ilm --data star_easy.jsonl
    .cache/xlm_core_venv/bin/python scripts/compare_speed_worker.py --system xlm_core --family ilm --data ...

It reads commands on stdin, one a line, and answers each with one JSON line on stdout:
- `train N`: N optimizer steps, each on the next 64 examples (collation, forward, loss, backward, gradient
  clipping at 1.0, AdamW); answers `{"seconds_per_step": ...}`.
- `generate`: greedy generation for the 64 prediction prompts; answers `{"seconds": ..., "new_tokens": ...,
  "outputs": [...]}` (the generated target ids, to check that both systems produce the same kind of output).
- `quit`.

This file runs in two environments: the project's (`--system xlm_hf`) and the one with xlm-core 0.3.1 +
xlm-models 0.3.1 (`--system xlm_core`), which has no xlm_hf. It imports each system only inside its builder.
Both sides use the same configuration: d_model 128, 2 layers, 2 heads, feed-forward 512, batch 64, star_easy
(prompt block 28, target block 14), no dropout, one torch thread.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable

import torch

D_MODEL, LAYERS, HEADS, BATCH = 128, 2, 2, 64
INPUT_BLOCK, BLOCK = 28, 14


def make_star_easy(path: str, count: int, seed: int) -> None:
    """star_easy graphs from the original's generator, with the original's token ids and this project's text."""
    import random
    from itertools import chain

    import numpy as np
    from xlm.datamodule import SimpleSpaceTokenizer
    from xlm.tasks.star import preprocess_fn, simple_star_graph

    random.seed(seed)
    np.random.seed(seed)
    tokenizer = SimpleSpaceTokenizer.for_numbers(20)
    with open(path, "w") as f:
        for _ in range(count):
            graph = simple_star_graph(degree=3, pathlength=5, vocab_size=20)
            example = preprocess_fn(dict(graph), tokenizer)
            prompt = [*chain(*graph["edge_list"]), graph["source"], graph["goal"]]
            target = list(chain(*zip(graph["path"], graph["path"][1:])))
            row = {
                "prompt": " ".join(map(str, prompt)),
                "target": " ".join(map(str, target)),
                "core_prompt_ids": example["prompt_token_ids"],
                "core_target_ids": example["input_token_ids"],
            }
            f.write(json.dumps(row) + "\n")


def read_examples(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


# ----- the original: xlm-core 0.3.1 + xlm-models 0.3.1 -------------------------------------------------------------


class _Device:
    """What the original's `LossFunction.configure` reads from its Lightning module."""

    device = torch.device("cpu")


class _MDLMSeq2SeqTrainBatches:
    """The original's MDLM seq2seq training batch, `[prompt] [BOS] target [EOS]` right-padded to 42, each target
    token masked with probability `1 - exp(-total_noise(t))`.

    0.3.1's `MDLMSeq2SeqTrainCollator` cannot run: its `__init__` does not store `bos_location`, and
    `prepare_prefix_suffix_ids` negates a boolean tensor (`-(expm1(...)).logical_and(mask)`, an operator-precedence
    slip), which torch refuses. The batch layout and keys here are the ones its `MDLMLoss` reads.
    """

    def __init__(self, tokenizer, noise_schedule):
        self.tokenizer = tokenizer
        self.noise_schedule = noise_schedule

    def __call__(self, rows: list[dict]) -> dict:
        tok = self.tokenizer
        length = INPUT_BLOCK + BLOCK
        t = self.noise_schedule.sample_t(len(rows))
        noise_rate, total_noise = self.noise_schedule(t)
        input_ids = torch.full((len(rows), length), tok.pad_token_id, dtype=torch.long)
        target_part = torch.zeros((len(rows), length), dtype=torch.bool)
        for i, row in enumerate(rows):
            prefix = [*row["prompt_ids"], tok.bos_token_id]
            ids = [*prefix, *row["input_ids"], tok.eos_token_id][:length]
            input_ids[i, : len(ids)] = torch.tensor(ids)
            target_part[i, len(prefix) :] = True  # target, EOS and padding (loss on padding)
        target_ids = input_ids.clone()
        masked = (torch.rand(input_ids.shape) < -torch.expm1(-total_noise)[:, None]) & target_part
        input_ids[masked] = tok.mask_token_id
        return {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids, dtype=torch.bool),
            "target_ids": target_ids,
            "noise_rate": noise_rate,
            "total_noise": total_noise,
            "t": t,
        }


def build_xlm_core(family: str, examples: list[dict]) -> tuple[Callable, Callable]:
    from xlm.datamodule import SimpleSpaceTokenizer
    from xlm.noise import DummyNoiseSchedule

    tokenizer = SimpleSpaceTokenizer.for_numbers(20)
    rows = [{"prompt_ids": e["core_prompt_ids"], "input_ids": e["core_target_ids"]} for e in examples]
    common = dict(
        num_embeddings=len(tokenizer),
        d_model=D_MODEL,
        num_layers=LAYERS,
        nhead=HEADS,
        padding_idx=tokenizer.pad_token_id,
        dim_feedforward=4 * D_MODEL,
        dropout=0.0,
        activation="relu",
        rotary_emb_dim=64,
        max_length=INPUT_BLOCK + BLOCK + 4,
    )
    if family == "arlm":
        from arlm.datamodule_arlm import ARLMSeq2SeqCollator
        from arlm.loss_arlm import ARLMLoss
        from arlm.model_arlm import RotaryTransformerARLMModel

        noise = DummyNoiseSchedule()
        model = RotaryTransformerARLMModel(**common)
        loss_fn = ARLMLoss(model=model, tokenizer=tokenizer)
        collator = ARLMSeq2SeqCollator(
            tokenizer, noise, block_size=BLOCK, input_block_size=INPUT_BLOCK, add_bos="output", add_eos=True
        )
        predict = None
    elif family == "ilm":
        from ilm.datamodule_ilm import ILMSeq2SeqCollator, ILMSeq2SeqPredCollator
        from ilm.loss_ilm import ILMLossWithMaskedCE
        from ilm.model_ilm import RotaryTransformerILMModelWithStoppingClassification
        from ilm.predictor_ilm import ILMPredictorWithStoppingClassification

        noise = DummyNoiseSchedule()
        model = RotaryTransformerILMModelWithStoppingClassification(
            **common, mask_idx=tokenizer.mask_token_id, final_layer_without_normalization=True
        )
        loss_fn = ILMLossWithMaskedCE(model=model, tokenizer=tokenizer, length_loss="binary_ce")
        collator = ILMSeq2SeqCollator(tokenizer, noise, block_size=BLOCK, input_block_size=INPUT_BLOCK)
        pred_collator = ILMSeq2SeqPredCollator(
            tokenizer, noise, block_size=BLOCK, input_block_size=INPUT_BLOCK
        )
        predictor = ILMPredictorWithStoppingClassification(
            max_steps=BLOCK,
            max_length=INPUT_BLOCK + BLOCK,
            tokenizer=tokenizer,
            noise_schedule=noise,
            model=model,
            sampling_method="sample_top_k",
            top=1,
            second_sampling_method="sample_top_k",
            second_top=1,
        )
        predict = (pred_collator, predictor)
    elif family == "mdlm":
        from mdlm.datamodule_mdlm import MDLMSeq2SeqPredCollator
        from mdlm.loss_mdlm import MDLMLoss
        from mdlm.model_mdlm import MDLMModel
        from mdlm.noise_mdlm import ContinuousTimeLogLinearSchedule
        from mdlm.predictor_mdlm import MDLMPredictor

        noise = ContinuousTimeLogLinearSchedule(sigma_min=0.0, sigma_max=10.0, antithetic_sampling=False)
        model = MDLMModel(**common, mask_idx=tokenizer.mask_token_id, d_cond=128)
        loss_fn = MDLMLoss(loss_on_padding=True, model=model, tokenizer=tokenizer)
        collator = _MDLMSeq2SeqTrainBatches(tokenizer, noise)
        pred_collator = MDLMSeq2SeqPredCollator(
            tokenizer, noise, block_size=BLOCK, input_block_size=INPUT_BLOCK
        )
        predictor = MDLMPredictor(
            max_steps=BLOCK,
            max_new_tokens=BLOCK,
            tokenizer=tokenizer,
            model=model,
            noise_schedule=noise,
            top_k=1,
        )
        predict = (pred_collator, predictor)
    else:
        raise ValueError(f"unknown family {family!r}")
    loss_fn.configure(_Device())
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)

    def train_step(batch_rows: list[dict]) -> None:
        model.train()
        loss = loss_fn(collator(batch_rows))["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def generate(batch_rows: list[dict]) -> tuple[int, list]:
        pred_collator, predictor = predict
        model.eval()
        batch = pred_collator(batch_rows)
        if (
            batch.get("t", 0) is None
        ):  # the MDLM prediction collator leaves t unset; the predictor starts at t = 1
            del batch["t"]
        with torch.no_grad():
            out = predictor.predict(batch)
        ids = out.get("ids", out.get("output_ids"))
        return len(batch_rows) * BLOCK, ids.tolist() if torch.is_tensor(ids) else []

    return (lambda i: train_step(rows[i : i + BATCH])), (
        (lambda: generate(rows[:BATCH])) if predict is not None else None
    )


# ----- this project -----------------------------------------------------------------------------------------------

# xlm_hf at the original's architecture: rotary positions only, ReLU MLP, the original's init scale; the ARLM
# batches without the columns no row uses (the ILM's collator already pads to the longest row); the ILM
# without a final LayerNorm (the original's `final_layer_without_normalization: true`); the MDLM with the
# original's adaLN time conditioning (DDiT, conditioning width 128).
XLM_HF_OVERRIDES = {
    "arlm": ["collator.trim_padding=true"],  # padding-free columns: same loss, 36 positions instead of 42
    "ilm": ["model.final_layer_norm=false"],
    "mdlm": ["model.time_conditioning=true", "model.time_embedding_dim=128"],
}


def build_xlm_hf(family: str, examples: list[dict], extra: list[str]) -> tuple[Callable, Callable]:
    from datasets import Dataset

    from xlm_hf.experiment import data_arguments
    from xlm_hf.families import get_family
    from xlm_hf.jobs import block_sizes, build_eval_tasks, prepare_experiment, training_arguments
    from xlm_hf.tasks import get_task, tokenize_seq2seq

    overrides = [
        f"model.hidden_size={D_MODEL}",
        f"model.num_hidden_layers={LAYERS}",
        f"model.num_attention_heads={HEADS}",
        f"model.intermediate_size={4 * D_MODEL}",
        "model.absolute_position_embeddings=false",
        "model.initializer_range=0.02",
        "model.hidden_act=relu",
        "model.hidden_dropout=0.0",
        "model.attention_dropout=0.0",
        f"training.per_device_train_batch_size={BATCH}",
        "training.eval_strategy=no",
        "training.report_to=none",
        *XLM_HF_OVERRIDES[family],
        *extra,
    ]
    experiment = prepare_experiment(f"star_easy_{family}", overrides)
    spec = get_family(experiment["family"])
    data_args = data_arguments(experiment)
    input_block_size, block_size = block_sizes(data_args)
    tokenizer = get_task(data_args.task).build_tokenizer()
    options = dict(experiment.get("model", {}))
    options.setdefault("max_position_embeddings", input_block_size + block_size)
    model = spec.build_model(tokenizer, **options)
    data = tokenize_seq2seq(
        Dataset.from_list([{"prompt": e["prompt"], "target": e["target"]} for e in examples]), tokenizer
    )
    rows = [data[i] for i in range(len(data))]
    collator = spec.collators["seq2seq"](
        tokenizer=tokenizer,
        input_block_size=input_block_size,
        block_size=block_size,
        **experiment.get("collator", {}),
    )
    trainer = spec.trainer_class(
        model=model,
        args=training_arguments(experiment),
        train_dataset=data,
        data_collator=collator,
        processing_class=tokenizer,
    )
    optimizer = trainer.create_optimizer()  # what training uses (training.optim)
    step_model = model
    if trainer.args.torch_compile:
        step_model = torch.compile(model, backend=trainer.args.torch_compile_backend or "inductor")

    def train_step(batch_rows: list[dict]) -> None:
        model.train()
        loss = trainer.compute_loss(step_model, collator(batch_rows))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    generate = None
    if family in ("ilm", "mdlm"):
        eval_experiment = {
            **experiment,
            "eval_tasks": {
                "prediction": {"kind": "generate", "split": "validation", "metrics": ["exact_match"]}
            },
        }
        task = build_eval_tasks(spec, eval_experiment, tokenizer, {"validation": data})["prediction"]
        generation = dict(experiment.get("generation", {}))
        generation["do_sample"] = False
        trainer.generation_kwargs = generation

        def generate() -> tuple[int, list]:
            batch = task.collator([task.dataset[i] for i in range(BATCH)])
            model.eval()
            with torch.no_grad():
                targets = trainer.predict_targets(model, batch)
            return BATCH * block_size, targets.tolist()

    return (lambda i: train_step(rows[i : i + BATCH])), generate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", choices=["xlm_hf", "xlm_core"], required=True)
    parser.add_argument("--family", choices=["arlm", "mdlm", "ilm"], required=True)
    parser.add_argument("--data", required=True, help="JSON lines written by scripts/compare_speed.py")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--make-data", type=int, default=0, help="write this many graphs to --data and exit")
    parser.add_argument("overrides", nargs="*", help="xlm_hf experiment overrides (xlm_hf side only)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    if args.make_data:
        make_star_easy(args.data, args.make_data, args.seed)
        return 0
    examples = read_examples(args.data)
    if args.system == "xlm_core":
        train, generate = build_xlm_core(args.family, examples)
    else:
        train, generate = build_xlm_hf(args.family, examples, args.overrides)
    batches = len(examples) // BATCH
    cursor = 0
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        if command[0] == "train":
            steps = int(command[1])
            start = time.perf_counter()
            for _ in range(steps):
                train((cursor % batches) * BATCH)
                cursor += 1
            answer = {"seconds_per_step": (time.perf_counter() - start) / steps}
        elif command[0] == "generate":
            if generate is None:
                answer = {"error": "no generation for this family"}
            else:
                start = time.perf_counter()
                new_tokens, outputs = generate()
                answer = {
                    "seconds": time.perf_counter() - start,
                    "new_tokens": new_tokens,
                    "outputs": outputs,
                }
        else:
            answer = {"error": f"unknown command {line.strip()!r}"}
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
