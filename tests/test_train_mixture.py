"""`data.train_mixture`: other prompt/target tasks' training examples mixed into an experiment's training set, with
one clear error for every mixture that cannot work (unknown task, bad share, tokens outside the vocabulary, rows
longer than the blocks); `data.train_mixture_steps`: the mixture in the first steps only (a curriculum)."""

import pytest
from datasets import Dataset, DatasetDict, concatenate_datasets

import xlm_hf.tasks as tasks
from xlm_hf import jobs
from xlm_hf.experiment import ExperimentError, data_arguments, load_experiment
from xlm_hf.families import get_family
from xlm_hf.tasks import get_task, load_task, mix_in_tasks, mixture_then_task, tokenize_seq2seq


def star_medium_train(rows: int):
    task = get_task("star_medium")
    tokenizer = task.build_tokenizer()
    train = tokenize_seq2seq(load_task("star_medium")["train"].select(range(rows)), tokenizer)
    return task, tokenizer, train


def test_the_mixed_in_task_gets_its_share_of_the_training_set(data_dir):
    task, tokenizer, train = star_medium_train(300)
    mixed = mix_in_tasks(train, task, tokenizer, {"star_easy": 0.25}, 36, 16, seed=3)

    assert len(mixed) == 400  # 300 of star_medium are 3/4 of it
    assert mixed.column_names == train.column_names
    assert mixed[:300]["prompt"] == list(train["prompt"])
    extra = mixed.select(range(300, 400))[:]  # columns as lists
    easy_prompts = set(load_task("star_easy")["train"]["prompt"])
    assert set(extra["prompt"]) <= easy_prompts
    assert len(set(extra["prompt"])) == 100  # drawn without replacement
    # tokenized with star_medium's tokenizer, as the collator will read them
    assert extra["prompt_ids"] == tokenizer(extra["prompt"], add_special_tokens=False)["input_ids"]
    # the seed picks the rows
    again = mix_in_tasks(train, task, tokenizer, {"star_easy": 0.25}, 36, 16, seed=3)
    other_seed = mix_in_tasks(train, task, tokenizer, {"star_easy": 0.25}, 36, 16, seed=4)
    assert list(again["prompt"]) == list(mixed["prompt"]) != list(other_seed["prompt"])


@pytest.mark.parametrize(
    "mixture, message",
    [
        ({"star_easy": 0}, "share between 0 and 1"),
        ({"star_easy": 1}, "share between 0 and 1"),
        ({"star_easy": True}, "share between 0 and 1"),
        ({"star_easy": "0.5"}, "share between 0 and 1"),
        ({"star_easy": 0.6, "sudoku": 0.5}, "add up to 1.1"),
        ({"star_medium": 0.5}, "the experiment's own task"),
        ({"text_pydoc": 0.5}, "text task"),
        ({"star_huge": 0.5}, "Unknown task 'star_huge'"),
        ([("star_easy", 0.5)], "must map task names to shares"),
        ({}, "must map task names to shares"),
    ],
)
def test_a_mixture_that_cannot_work_is_refused_before_any_data_is_read(mixture, message, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("a bad mixture must be refused before any task is loaded")

    monkeypatch.setattr(tasks, "load_task", no_loading)
    task = get_task("star_medium")
    train = Dataset.from_dict({"prompt": ["1 2"], "target": ["1 2"]})
    with pytest.raises(ValueError, match=message):
        mix_in_tasks(train, task, task.build_tokenizer(), mixture, 36, 16)


def fake_task_splits(rows):
    return DatasetDict({"train": Dataset.from_list(rows)})


def test_tokens_outside_the_vocabulary_are_refused(monkeypatch):
    # star_medium's vocabulary has the numbers 0-19; 57 is not one of them
    monkeypatch.setattr(
        tasks, "load_task", lambda *a, **k: fake_task_splits([{"prompt": "3 57", "target": "3 57"}])
    )
    task = get_task("star_medium")
    train = tokenize_seq2seq(
        Dataset.from_dict({"prompt": ["1 2"], "target": ["1 2"]}), task.build_tokenizer()
    )
    with pytest.raises(
        ValueError, match=r"star_easy's train row 0 has tokens outside star_medium's vocabulary"
    ):
        mix_in_tasks(train, task, task.build_tokenizer(), {"star_easy": 0.5}, 36, 16)


def test_rows_longer_than_the_blocks_are_refused(data_dir):
    # star_medium's answers (up to 20 tokens) do not fit star_easy's 14-token target block
    task = get_task("star_easy")
    tokenizer = task.build_tokenizer()
    train = tokenize_seq2seq(load_task("star_easy")["train"].select(range(10)), tokenizer)
    with pytest.raises(ValueError, match=r"does not fit star_easy's blocks \(28 and 14\)"):
        mix_in_tasks(train, task, tokenizer, {"star_medium": 0.5}, 28, 14)


def test_the_experiment_key_reaches_the_data_arguments():
    experiment = load_experiment("star_hard_ilm", ["data.train_mixture={star_medium: 0.5}"])
    assert data_arguments(experiment).train_mixture == {"star_medium": 0.5}
    assert data_arguments(load_experiment("star_hard_ilm")).train_mixture is None


def test_a_small_task_is_repeated_evenly_and_a_tiny_share_adds_nothing(monkeypatch):
    rows = [{"prompt": "1 2", "target": "1 2"}, {"prompt": "3 4", "target": "3 4"}]
    monkeypatch.setattr(tasks, "load_task", lambda *a, **k: fake_task_splits(rows))
    task = get_task("star_medium")
    tokenizer = task.build_tokenizer()
    train = tokenize_seq2seq(Dataset.from_dict({"prompt": ["5 6"] * 4, "target": ["5 6"] * 4}), tokenizer)

    mixed = mix_in_tasks(train, task, tokenizer, {"star_easy": 0.6}, 36, 16)
    extra = list(mixed["prompt"])[4:]
    assert len(extra) == 6 and extra.count("1 2") == extra.count("3 4") == 3  # each row once before any twice
    assert len(mix_in_tasks(train, task, tokenizer, {"star_easy": 0.01}, 36, 16)) == 4


def test_a_curriculum_puts_the_mixture_first_and_the_task_alone_after_it():
    own = Dataset.from_dict({"prompt": [f"own {i}" for i in range(10)]})
    mixed = concatenate_datasets([own, Dataset.from_dict({"prompt": [f"other {i}" for i in range(10)]})])

    ordered = mixture_then_task(mixed, own, mixed_examples=30, own_examples=25, seed=5)

    prompts = list(ordered["prompt"])
    assert len(prompts) == 55
    first, then = prompts[:30], prompts[30:]
    # the mixed part: all 20 rows once, then 10 of them a second time
    assert set(first[:20]) == set(mixed["prompt"]) and len(set(first[20:])) == 10
    assert any(p.startswith("other") for p in first[:20]) and any(p.startswith("own") for p in first[:20])
    # the task alone: its 10 rows twice, then 5 of them
    assert all(p.startswith("own") for p in then)
    assert set(then[:10]) == set(then[10:20]) == set(own["prompt"])
    assert first != sorted(first)  # shuffled
    assert list(mixture_then_task(mixed, own, 30, 25, seed=5)["prompt"]) == prompts
    assert list(mixture_then_task(mixed, own, 30, 25, seed=6)["prompt"]) != prompts
    with pytest.raises(ValueError, match="needs examples in both parts"):
        mixture_then_task(mixed, own, 30, 0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.train_mixture_steps=100"], "set data.train_mixture too"),
        (
            ["data.train_mixture={star_medium: 0.5}", "data.train_mixture_steps=0"],
            "must be a positive number of steps, got 0",
        ),
        (
            [
                "data.train_mixture={star_medium: 0.5}",
                "data.train_mixture_steps=9000",
                "training.max_steps=9000",
            ],
            r"needs training.max_steps above it \(got 9000\)",
        ),
        (
            [
                "data.train_mixture={star_medium: 0.5}",
                "data.train_mixture_steps=3000",
                "training.train_sampling_strategy=random",
            ],
            "would shuffle it",
        ),
    ],
)
def test_a_curriculum_that_cannot_work_is_refused_when_the_experiment_loads(overrides, message):
    with pytest.raises(ExperimentError, match=message):
        load_experiment("star_hard_ilm", overrides)


def test_training_reads_the_mixture_in_the_first_steps_only(data_dir, tmp_path, monkeypatch):
    """star_medium ILM with star_easy's graphs mixed into its first 2 of 5 steps: the batches the collator gets."""
    experiment = load_experiment(
        "star_medium_ilm",
        [
            "model.hidden_size=32",
            "model.num_hidden_layers=1",
            "model.num_attention_heads=2",
            "model.intermediate_size=64",
            "data.max_train_samples=40",
            "data.train_mixture={star_easy: 0.5}",
            "data.train_mixture_steps=2",
            "training.per_device_train_batch_size=6",
            "training.max_steps=5",
            "training.eval_strategy=no",
            "training.disable_tqdm=true",
            f"training.output_dir={tmp_path / 'run'}",
        ],
    )
    experiment["eval_tasks"] = {}
    assert jobs.training_arguments(experiment).train_sampling_strategy == "sequential"
    collator_class = get_family("ilm").collators["seq2seq"]
    batches = []
    original_call = collator_class.__call__

    def recording_call(self, features):
        batches.append([feature["prompt"] for feature in features])
        return original_call(self, features)

    monkeypatch.setattr(collator_class, "__call__", recording_call)
    jobs.train(experiment)

    easy_prompts = set(load_task("star_easy")["train"]["prompt"])
    medium_prompts = set(load_task("star_medium")["train"].select(range(40))["prompt"])
    assert [len(batch) for batch in batches] == [6] * 5
    mixture_steps = [prompt for batch in batches[:2] for prompt in batch]
    assert set(mixture_steps) <= easy_prompts | medium_prompts
    assert (
        set(mixture_steps) & easy_prompts
    )  # the seed draws 6 of star_easy's graphs into the first 12 examples
    assert {prompt for batch in batches[2:] for prompt in batch} <= medium_prompts
