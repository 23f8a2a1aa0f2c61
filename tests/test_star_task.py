import os

import pytest
from datasets import Dataset, DatasetDict

from xlm_hf.tasks import get_task, load_task, prepare_task, tokenize_seq2seq
from xlm_hf.tasks.star import STAR_VARIANTS, generate_star_splits

SMALL = {"train": 40, "validation": 5, "test": 10}


def check_star_example(example, name):
    spec = STAR_VARIANTS[name]
    edges = [tuple(e) for e in example["edge_list"]]
    path = example["path"]
    assert path[0] == example["source"] and path[-1] == example["goal"]
    # the path follows the graph's directed edges
    assert all((path[i], path[i + 1]) in edges for i in range(len(path) - 1))
    prompt = list(map(int, example["prompt"].split()))
    assert prompt == [n for e in example["edge_list"] for n in e] + [example["source"], example["goal"]]
    target = list(map(int, example["target"].split()))
    assert target == [n for i in range(len(path) - 1) for n in (path[i], path[i + 1])]
    nodes = {n for e in edges for n in e}
    assert all(0 <= n < spec.num_nodes for n in nodes)
    assert len(prompt) + 1 <= spec.input_block_size and len(target) + 1 <= spec.block_size
    return nodes, edges


def test_star_easy_format():
    for example in generate_star_splits("star_easy", SMALL, progress=False)["train"]:
        nodes, edges = check_star_example(example, "star_easy")
        assert len(nodes) == 13 and len(edges) == 12 and len(example["path"]) == 5
        # three arms of 4 edges leave the source
        assert sum(1 for u, _ in edges if u == example["source"]) == 3


@pytest.mark.parametrize("name", ["star_medium", "star_hard"])
def test_asymmetric_star_format(name):
    spec = STAR_VARIANTS[name]
    for example in generate_star_splits(name, SMALL, progress=False)["train"]:
        nodes, edges = check_star_example(example, name)
        assert len(edges) == len(nodes) - 1  # a tree: arms share only the centre
        out_degree = {}
        for u, _ in edges:
            out_degree[u] = out_degree.get(u, 0) + 1
        centre = max(out_degree, key=out_degree.get)
        assert out_degree[centre] == spec.degree  # every arm continues after the centre
        assert centre in example["path"]
        assert len(example["path"]) - example["path"].index(centre) - 1 >= spec.min_plan_length


def test_generation_is_deterministic_and_seeded():
    first = generate_star_splits("star_easy", SMALL, progress=False)
    again = generate_star_splits("star_easy", SMALL, progress=False)
    other = generate_star_splits("star_easy", SMALL, seed=7, progress=False)
    assert first == again
    assert first != other


def test_prepared_cache_is_reused_and_identical(tmp_path):
    path = prepare_task("star_easy", tmp_path, split_sizes=SMALL)
    stamp = (path / "dataset_dict.json").stat().st_mtime_ns
    assert prepare_task("star_easy", tmp_path, split_sizes=SMALL) == path
    assert (path / "dataset_dict.json").stat().st_mtime_ns == stamp
    data = load_task("star_easy", tmp_path, split_sizes=SMALL)
    assert {k: len(v) for k, v in data.items()} == SMALL
    regenerated = prepare_task("star_easy", tmp_path / "again", split_sizes=SMALL)
    assert (
        load_task("star_easy", tmp_path / "again", split_sizes=SMALL)["test"].to_list()
        == data["test"].to_list()
    )
    assert regenerated != path
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_tokenized_columns(tmp_path):
    data = load_task("star_easy", tmp_path, split_sizes=SMALL)
    tokenizer = get_task("star_easy").build_tokenizer()
    tokenized = tokenize_seq2seq(data["validation"], tokenizer)
    row = tokenized[0]
    assert tokenizer.decode(row["prompt_ids"]) == row["prompt"]
    assert len(row["target_ids"]) == 8 and tokenizer.unk_token_id not in row["prompt_ids"]


def test_unknown_task_and_empty_dataset_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="Known tasks"):
        get_task("star_impossible")
    data = load_task("star_easy", tmp_path, split_sizes=SMALL)
    with pytest.raises(ValueError, match="empty"):
        tokenize_seq2seq(data["test"].select([]), get_task("star_easy").build_tokenizer())


def test_a_data_folder_that_is_a_file_or_not_writable_is_one_clear_error(tmp_path, monkeypatch):
    in_the_way = tmp_path / "data"
    in_the_way.write_text("not a folder")
    with pytest.raises(ValueError, match=r"is a file\. Point XLM_HF_DATA_DIR"):
        load_task("star_easy", in_the_way / "sub", split_sizes=SMALL)
    # root ignores permission bits, so a read-only folder is simulated where the check asks for it
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ValueError, match=r"locked is not writable\. Point XLM_HF_DATA_DIR"):
        load_task("star_easy", tmp_path / "locked", split_sizes=SMALL)
    assert not (tmp_path / "locked" / "star_easy").exists()


def test_a_damaged_or_emptied_cache_names_the_folder_and_the_fix(tmp_path):
    path = prepare_task("star_easy", tmp_path, split_sizes=SMALL)
    (path / "dataset_dict.json").write_text("{ not json")
    with pytest.raises(ValueError, match=rf"{path}.*prepare-data star_easy --overwrite"):
        load_task("star_easy", tmp_path, split_sizes=SMALL)

    rows = Dataset.from_list([{"prompt": "1 2", "target": "2"}])
    DatasetDict({"train": rows.select([]), "test": rows}).save_to_disk(str(tmp_path / "other" / "star_easy"))
    with pytest.raises(ValueError, match=r"(empty split\(s\) \['train'\]|cannot be read).*--overwrite"):
        load_task("star_easy", tmp_path / "other")


def test_split_sizes_below_one_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least one example"):
        prepare_task("star_easy", tmp_path, split_sizes={"train": 0, "validation": 5, "test": 5})
