"""lm-eval (`--model hf`) on an exported ARLM, with the task template docs/use-it-with.md gives: generation and
likelihoods agree with `xlm-hf eval` on the same star-graph examples. Offline: the data is a local jsonl file."""

import json
import math

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install -e .[dev])")

NUM_EXAMPLES = 12
MAX_GEN_TOKS = 14  # star_easy's target block (13 path tokens and [EOS])

# The template of docs/use-it-with.md. The context ends in the layout token "[BOS]": lm-eval scores a
# continuation by concatenating context and continuation tokens, so the separator the model was trained with
# (`prompt [BOS] target [EOS]`) must be in the text; for generation, `generate` sees it and adds no other.
TEMPLATE = """\
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
doc_to_text: "{{{{prompt}}}} [BOS]"
target_delimiter: " "
"""
GENERATE = """\
output_type: generate_until
doc_to_target: "{{target}}"
generation_kwargs:
  until: ["[EOS]"]
  do_sample: false
  max_gen_toks: 14
metric_list:
  - metric: exact_match
"""
LOGLIKELIHOOD = """\
output_type: loglikelihood
doc_to_target: "{{target}} [EOS]"
metric_list:
  - metric: perplexity
"""
MULTIPLE_CHOICE = """\
output_type: multiple_choice
doc_to_choice: "{{choices}}"
doc_to_target: 0
metric_list:
  - metric: acc
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, data_dir) -> dict:
    from xlm_hf.cli import main
    from xlm_hf.export import export_model
    from xlm_hf.families import get_family
    from xlm_hf.tasks import get_task, load_task

    root = tmp_path_factory.mktemp("lm_eval")
    family = get_family("arlm")
    tokenizer = get_task("star_easy").build_tokenizer()
    torch.manual_seed(0)
    model = family.build_model(
        tokenizer,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=42,
    )
    # `xlm-hf train` saved a task-specific `max_new_tokens`; it must not override lm-eval's `max_gen_toks`
    model.generation_config.max_new_tokens = 3
    experiment = {
        "family": "arlm",
        "data": {"task": "star_easy", "input_block_size": 28, "block_size": 14},
        "generation": {"do_sample": False},
    }
    folder = export_model(model, tokenizer, root / "model", family, experiment=experiment)

    assert (
        main(["eval", str(folder), "--split", "test", "--limit", str(NUM_EXAMPLES), "--batch-size", "64"])
        == 0
    )
    xlm_results = json.loads((folder / "results.json").read_text())["metrics"]
    (predictions_file,) = (folder / "predictions" / "prediction").glob("*.jsonl")
    predictions = [json.loads(line) for line in predictions_file.read_text().splitlines()]

    test_split = load_task("star_easy")["test"].select(range(NUM_EXAMPLES))
    data = root / "star_easy_test.jsonl"
    with data.open("w") as handle:
        for example in test_split:
            distractor = " ".join(reversed(example["target"].split()))
            record = {"prompt": example["prompt"], "target": example["target"]}
            handle.write(json.dumps({**record, "choices": [example["target"], distractor]}) + "\n")
    tasks = root / "tasks"
    tasks.mkdir()
    for name, body in [("generate", GENERATE), ("loglikelihood", LOGLIKELIHOOD), ("choice", MULTIPLE_CHOICE)]:
        (tasks / f"star_easy_{name}.yaml").write_text(
            TEMPLATE.format(name=f"star_easy_{name}", data=data) + body
        )

    from lm_eval.tasks import TaskManager

    results = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={folder},trust_remote_code=True,dtype=float32",
        tasks=["star_easy_generate", "star_easy_loglikelihood", "star_easy_choice"],
        task_manager=TaskManager(include_path=str(tasks)),
        batch_size=4,
        device="cpu",
        log_samples=True,
    )
    return {
        "model": model,
        "tokenizer": tokenizer,
        "examples": list(test_split),
        "xlm_results": xlm_results,
        "predictions": predictions,
        "lm_eval": results,
    }


def samples(setup: dict, task: str) -> list[dict]:
    return sorted(setup["lm_eval"]["samples"][task], key=lambda sample: sample["doc_id"])


def test_generation_agrees_with_xlm_hf_eval(setup):
    generated = [sample["filtered_resps"][0] for sample in samples(setup, "star_easy_generate")]
    assert generated == [row["generated"] for row in setup["predictions"]]
    # the whole target block was generated, not the 3 tokens saved in generation_config.json
    assert max(len(text.split()) for text in generated) > 3
    exact_match = setup["lm_eval"]["results"]["star_easy_generate"]["exact_match,none"]
    assert exact_match == pytest.approx(setup["xlm_results"]["eval_prediction_exact_match"])


def test_likelihoods_agree_with_xlm_hf_eval_loss(setup):
    log_likelihoods = [sample["resps"][0][0][0] for sample in samples(setup, "star_easy_loglikelihood")]
    tokenizer = setup["tokenizer"]
    num_targets = sum(
        len(tokenizer(ex["target"], add_special_tokens=False)["input_ids"]) + 1 for ex in setup["examples"]
    )
    # `xlm-hf eval`'s loss: the mean negative log-likelihood of `target [EOS]` after `prompt [BOS]`
    assert -sum(log_likelihoods) / num_targets == pytest.approx(
        setup["xlm_results"]["eval_lm_loss"], rel=1e-4
    )


def test_multiple_choice_scores_the_layout_the_model_was_trained_on(setup):
    model, tokenizer = setup["model"], setup["tokenizer"]
    expected = []
    for example in setup["examples"]:
        prompt = tokenizer(example["prompt"], add_special_tokens=False)["input_ids"] + [
            tokenizer.bos_token_id
        ]
        scores = []
        for choice in [example["target"], " ".join(reversed(example["target"].split()))]:
            target = tokenizer(choice, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + target])
            with torch.no_grad():
                log_probs = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].log_softmax(-1)
            scores.append(log_probs.gather(1, torch.tensor(target)[:, None]).sum().item())
        expected.append(scores)
    lm_eval_scores = [
        [resp[0][0] for resp in sample["resps"]] for sample in samples(setup, "star_easy_choice")
    ]
    for ours, theirs in zip(expected, lm_eval_scores):
        assert theirs == pytest.approx(ours, abs=1e-4)
    accuracy = sum(scores[0] > scores[1] for scores in expected) / len(expected)
    assert setup["lm_eval"]["results"]["star_easy_choice"]["acc,none"] == pytest.approx(accuracy)
    assert all(math.isfinite(s) for scores in expected for s in scores)
