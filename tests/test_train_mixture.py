"""`data.train_mixture`: other prompt/target tasks' training examples mixed into an experiment's training set, with
one clear error for every mixture that cannot work (unknown task, bad share, tokens outside the vocabulary, rows
longer than the blocks)."""

import pytest
from datasets import Dataset, DatasetDict

import xlm_hf.tasks as tasks
from xlm_hf.experiment import data_arguments, load_experiment
from xlm_hf.tasks import get_task, load_task, mix_in_tasks, tokenize_seq2seq


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
