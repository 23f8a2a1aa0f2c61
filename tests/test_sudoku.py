"""Sudoku: the solver, the generator of unique puzzles, the sudoku-extreme loader on local files, the metrics, and
one tiny training run that scores them."""

import csv
import json
import random

import pytest
from datasets import Dataset, DatasetDict

from xlm_hf import jobs
from xlm_hf.metrics import load_metric
from xlm_hf.tasks import get_task, load_task, tokenize_seq2seq
from xlm_hf.tasks.sudoku import (
    count_solutions,
    generate_sudoku_splits,
    is_valid_solution,
    make_puzzle,
    parse_grid,
    solve,
)

# A classic puzzle with one solution.
PUZZLE = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
SOLUTION = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"


def test_solver_finds_the_unique_solution_and_counts_up_to_two():
    puzzle = parse_grid(PUZZLE)
    solutions, _ = solve(puzzle)
    assert solutions == [parse_grid(SOLUTION)]
    assert is_valid_solution(solutions[0])
    assert count_solutions([0] * 81) == 2  # the empty grid: stops counting at two
    clash = list(puzzle)
    clash[2] = 5  # a second 5 in the first row
    assert count_solutions(clash) == 0
    assert not is_valid_solution(clash)


def test_rating_counts_guesses():
    _, guesses_given_all_but_one = solve(parse_grid(SOLUTION[:-1] + "0"))
    assert guesses_given_all_but_one == 0  # naked singles alone
    _, guesses_empty = solve([0] * 81, limit=1)
    assert guesses_empty > 0


def test_generated_puzzles_are_unique_consistent_and_follow_the_givens():
    rng = random.Random(0)
    for low, high in [(26, 30), (40, 45)]:
        made = make_puzzle(rng, low, high)
        puzzle, solution = made["puzzle"], made["solution"]
        assert count_solutions(puzzle) == 1
        assert is_valid_solution(solution)
        assert all(p in (0, s) for p, s in zip(puzzle, solution))
        assert made["givens"] == sum(1 for p in puzzle if p)
        assert low <= made["givens"] <= high  # 26+ givens are always reachable from a full grid in practice
    with pytest.raises(ValueError, match="17 <= min_givens"):
        make_puzzle(rng, 10, 20)


def test_generation_is_deterministic_per_seed():
    sizes = {"train": 3, "validation": 1, "test": 1}
    first = generate_sudoku_splits("sudoku", sizes, seed=1, progress=False)
    assert first == generate_sudoku_splits("sudoku", sizes, seed=1, progress=False)
    assert first != generate_sudoku_splits("sudoku", sizes, seed=2, progress=False)
    row = first["train"][0]
    assert row["prompt"].split() == [str(d) for d in row["puzzle"]] and len(row["target"].split()) == 81


def _relabelled(rng: random.Random) -> tuple[str, str]:
    """The classic puzzle with its digits permuted: another valid puzzle, cheaply."""
    digits = list("123456789")
    rng.shuffle(digits)
    table = {str(i + 1): d for i, d in enumerate(digits)}
    return "".join(table.get(c, c) for c in PUZZLE), "".join(table[c] for c in SOLUTION)


def write_extreme_files(folder, train_rows: int = 110, test_rows: int = 5) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for split, count in (("train", train_rows), ("test", test_rows)):
        with open(folder / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["source", "question", "answer", "rating"])
            for _ in range(count):
                writer.writerow(["test", *_relabelled(rng), 7])


def test_sudoku_extreme_loads_local_files(tmp_path):
    write_extreme_files(tmp_path / "raw" / "sudoku_extreme")
    splits = load_task("sudoku_extreme", tmp_path)
    assert {name: len(split) for name, split in splits.items()} == {"train": 10, "validation": 100, "test": 5}
    row = splits["test"][0]
    assert row["rating"] == 7 and row["givens"] == sum(c != "." for c in PUZZLE)
    assert row["prompt"].split().count("0") == PUZZLE.count(".")
    tokenizer = get_task("sudoku_extreme").build_tokenizer()
    tokenized = tokenize_seq2seq(splits["test"], tokenizer)
    assert len(tokenized[0]["prompt_ids"]) == 81 and len(tokenized[0]["target_ids"]) == 81
    assert tokenizer.decode(tokenized[0]["target_ids"]) == row["target"]


def test_sudoku_extreme_reads_json_lines_too(tmp_path):
    folder = tmp_path / "raw" / "sudoku_extreme"
    write_extreme_files(folder)
    (folder / "test.csv").unlink()
    (folder / "test.jsonl").write_text(json.dumps({"question": PUZZLE, "answer": SOLUTION}) + "\n")
    assert len(load_task("sudoku_extreme", tmp_path)["test"]) == 1


def test_sudoku_extreme_errors_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="put train.csv and test.csv"):
        load_task("sudoku_extreme", tmp_path)
    folder = tmp_path / "raw" / "sudoku_extreme"
    write_extreme_files(folder)
    with open(folder / "test.csv", "a", newline="") as handle:
        csv.writer(handle).writerow(["test", PUZZLE, SOLUTION[:-1] + "1", 0])
    with pytest.raises(ValueError, match=r"test.csv, row 6: the answer is not a valid solution"):
        load_task("sudoku_extreme", tmp_path)
    assert not (tmp_path / "sudoku_extreme").exists()  # nothing half-prepared


def test_metrics_score_grids_blanks_and_rules():
    solution = " ".join(SOLUTION)
    puzzle = " ".join(PUZZLE.replace(".", "0"))
    wrong_blank = list(SOLUTION)
    first_blank = PUZZLE.index(".")
    wrong_blank[first_blank] = "9" if SOLUTION[first_blank] != "9" else "8"
    wrong = " ".join(wrong_blank)
    kwargs = {"references": [solution, solution], "prompts": [puzzle, puzzle]}
    exact = load_metric("sudoku_exact_match").compute(predictions=[solution, wrong], **kwargs)
    assert exact == {"sudoku_exact_match": 0.5}
    blanks = PUZZLE.count(".")
    accuracy = load_metric("sudoku_blank_accuracy").compute(predictions=[solution, wrong], **kwargs)
    assert accuracy["sudoku_blank_accuracy"] == pytest.approx((2 * blanks - 1) / (2 * blanks))
    short = load_metric("sudoku_blank_accuracy").compute(
        predictions=["5 3"], references=[solution], prompts=[puzzle]
    )
    assert short["sudoku_blank_accuracy"] == 0.0
    validity = load_metric("sudoku_validity").compute(predictions=[solution, wrong], **kwargs)
    assert validity == {"sudoku_validity": 0.5}
    with pytest.raises(ValueError, match="needs the puzzles"):
        load_metric("sudoku_blank_accuracy").compute(predictions=[solution], references=[solution])


@pytest.mark.parametrize("family", ["mlm", "arlm"])
def test_tiny_training_run_scores_the_sudoku_metrics(family, tmp_path):
    splits = generate_sudoku_splits("sudoku", {"train": 16, "validation": 4, "test": 4}, progress=False)
    DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()}).save_to_disk(
        str(tmp_path / "sudoku")
    )
    overrides = [
        f"data.cache_dir={tmp_path}",
        f"training.output_dir={tmp_path / 'run'}",
        "model.hidden_size=32",
        "model.num_hidden_layers=1",
        "model.num_attention_heads=2",
        "model.intermediate_size=64",
        "training.per_device_train_batch_size=8",
        "training.max_steps=2",
        "training.eval_steps=2",
        "training.disable_tqdm=true",
    ]
    summary = jobs.train(jobs.prepare_experiment(f"sudoku_{family}", overrides))
    for name in ("sudoku_exact_match", "sudoku_blank_accuracy", "sudoku_validity", "token_accuracy"):
        assert 0.0 <= summary[f"eval_prediction_{name}"] <= 1.0
    predictions = (tmp_path / "run" / "predictions" / "prediction" / "step=2.jsonl").read_text().splitlines()
    assert len(predictions) == 4 and len(json.loads(predictions[0])["prompt"].split()) == 81
