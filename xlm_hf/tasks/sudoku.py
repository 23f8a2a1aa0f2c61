"""Sudoku (spec §2.2): given a 9x9 puzzle (81 digits, 0 for a blank cell), output its solution (81 digits).

Two tasks:
- `sudoku`: puzzles made here (no download) by `generate_sudoku_splits`: a random full grid, then cells emptied in
  random order while the puzzle keeps exactly one solution, down to a number of givens drawn from
  `[min_givens, max_givens]` (fewer givens is harder). Each row records its givens and a solver-based `rating`
  (see `solve`). Deterministic for a seed.
- `sudoku_extreme`: the sudoku-extreme format (`question`, `answer` strings of 81 characters, `.` or `0` for a
  blank; optional `rating`, `source`), read from local CSV or JSON-lines files (`load_sudoku_extreme`).

Prompt and target are both the 81 digits separated by spaces, row by row. The prompt keeps blanks as the digit 0
(not `[MASK]`): the prompt is plain text for every family, decoded predictions keep their 81 cells, and the
metrics (`xlm_hf/metrics/sudoku_*`) read the blanks back from it.
"""

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

CELLS = 81
ALL_DIGITS = 0x3FE  # bits 1..9
# For each cell: its row, column and 3x3 box.
ROW = [i // 9 for i in range(CELLS)]
COL = [i % 9 for i in range(CELLS)]
BOX = [(i // 27) * 3 + (i % 9) // 3 for i in range(CELLS)]
POPCOUNT = [bin(mask).count("1") for mask in range(1024)]


@dataclass(frozen=True)
class SudokuSpec:
    """One sudoku task: where its rows come from and the block sizes its experiments use."""

    name: str
    source: str  # "generated" or "extreme" (local files in the sudoku-extreme format)
    min_givens: int = 0
    max_givens: int = 0
    input_block_size: int = 84  # 81 cells and room for the families' layout tokens
    block_size: int = 84


SUDOKU_VARIANTS: dict[str, SudokuSpec] = {
    "sudoku": SudokuSpec("sudoku", "generated", min_givens=26, max_givens=36),
    "sudoku_extreme": SudokuSpec("sudoku_extreme", "extreme"),
}
# A generated puzzle costs one uniqueness check per emptied cell (about 10 ms a puzzle in Python): 11k take ~2 min.
SUDOKU_SPLIT_SIZES: dict[str, int] = {"train": 10_000, "validation": 100, "test": 1_000}
SEED = 42
# Where `sudoku_extreme` looks for its files, inside the data folder: train.csv / test.csv (or .jsonl).
EXTREME_SOURCE_DIR = Path("raw") / "sudoku_extreme"
EXTREME_VALIDATION_SIZE = 100  # held out from the end of train.csv when there is no validation file


# ----- solver ------------------------------------------------------------------------------------------------------


def _masks(grid: list[int]) -> tuple[list[int], list[int], list[int]] | None:
    """The digits used in each row, column and box as bit masks; None when a unit repeats a digit."""
    rows, cols, boxes = [0] * 9, [0] * 9, [0] * 9
    for cell, digit in enumerate(grid):
        if digit:
            bit = 1 << digit
            if (rows[ROW[cell]] | cols[COL[cell]] | boxes[BOX[cell]]) & bit:
                return None
            rows[ROW[cell]] |= bit
            cols[COL[cell]] |= bit
            boxes[BOX[cell]] |= bit
    return rows, cols, boxes


def solve(grid: list[int], limit: int = 2, rng: random.Random | None = None) -> tuple[list[list[int]], int]:
    """Depth-first search over the blank cells, fewest candidates first (a cell with one candidate is filled
    without a choice). Returns up to `limit` solutions and the number of guesses made (cells with two or more
    candidates that the search branched on): 0 means naked singles alone solve the puzzle, and more guesses mean
    a harder puzzle. `rng` shuffles the candidate order (used to draw random full grids)."""
    if len(grid) != CELLS or any(not 0 <= d <= 9 for d in grid):
        raise ValueError(f"A sudoku grid is {CELLS} digits 0-9 (0 = blank), got {grid!r}.")
    masks = _masks(grid)
    if masks is None:
        return [], 0
    rows, cols, boxes = masks
    grid = list(grid)
    blanks = [cell for cell in range(CELLS) if grid[cell] == 0]
    solutions: list[list[int]] = []
    guesses = 0

    def search(remaining: list[int]) -> None:
        nonlocal guesses
        if not remaining:
            solutions.append(list(grid))
            return
        best, best_free, best_count = -1, 0, 10
        for index, cell in enumerate(remaining):
            free = ALL_DIGITS & ~(rows[ROW[cell]] | cols[COL[cell]] | boxes[BOX[cell]])
            count = POPCOUNT[free]
            if count < best_count:
                best, best_free, best_count = index, free, count
                if count <= 1:
                    break
        if best_count == 0:
            return
        cell = remaining[best]
        rest = remaining[:best] + remaining[best + 1 :]
        digits = [d for d in range(1, 10) if best_free >> d & 1]
        if rng is not None:
            rng.shuffle(digits)
        if best_count > 1:
            guesses += 1
        r, c, b = ROW[cell], COL[cell], BOX[cell]
        for digit in digits:
            bit = 1 << digit
            grid[cell] = digit
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
            search(rest)
            rows[r] ^= bit
            cols[c] ^= bit
            boxes[b] ^= bit
            grid[cell] = 0
            if len(solutions) >= limit:
                return

    search(blanks)
    return solutions, guesses


def count_solutions(grid: list[int], limit: int = 2) -> int:
    """How many solutions the puzzle has, counted up to `limit` (2 tells unique from not)."""
    return len(solve(grid, limit)[0])


def is_valid_solution(grid: list[int]) -> bool:
    """Whether `grid` is a full grid whose rows, columns and boxes each hold the digits 1-9 once."""
    return len(grid) == CELLS and all(1 <= d <= 9 for d in grid) and _masks(grid) is not None


# ----- generator ---------------------------------------------------------------------------------------------------


def random_solution(rng: random.Random) -> list[int]:
    """A uniformly shuffled search's first full grid."""
    solutions, _ = solve([0] * CELLS, limit=1, rng=rng)
    return solutions[0]


def make_puzzle(rng: random.Random, min_givens: int, max_givens: int) -> dict:
    """A puzzle with exactly one solution: cells of a random full grid are emptied in random order, each only if
    the puzzle stays unique, until `givens` (drawn from [min_givens, max_givens]) remain or no cell can go (then
    the puzzle is minimal and keeps more givens)."""
    if not 17 <= min_givens <= max_givens <= CELLS:  # no 9x9 puzzle with fewer than 17 givens is unique
        raise ValueError(
            f"Givens must satisfy 17 <= min_givens <= max_givens <= 81, got {min_givens}, {max_givens}."
        )
    solution = random_solution(rng)
    target_givens = rng.randint(min_givens, max_givens)
    puzzle = list(solution)
    givens = CELLS
    order = list(range(CELLS))
    rng.shuffle(order)
    for cell in order:
        if givens <= target_givens:
            break
        digit, puzzle[cell] = puzzle[cell], 0
        if count_solutions(puzzle) == 1:
            givens -= 1
        else:
            puzzle[cell] = digit
    _, rating = solve(puzzle)
    return {"puzzle": puzzle, "solution": solution, "givens": givens, "rating": rating}


def to_text(grid: list[int]) -> str:
    return " ".join(map(str, grid))


def sudoku_row(puzzle: list[int], solution: list[int], **extra) -> dict:
    """One dataset row: the grids as digit lists and as the prompt / target texts."""
    return {
        "puzzle": list(puzzle),
        "solution": list(solution),
        "prompt": to_text(puzzle),
        "target": to_text(solution),
        **extra,
    }


def generate_sudoku_splits(
    name: str = "sudoku",
    split_sizes: dict[str, int] | None = None,
    seed: int = SEED,
    progress: bool = True,
) -> dict[str, list[dict]]:
    """All splits of a generated sudoku task as lists of rows; the same seed gives the same puzzles."""
    spec = SUDOKU_VARIANTS.get(name)
    if spec is None or spec.source != "generated":
        generated = sorted(n for n, s in SUDOKU_VARIANTS.items() if s.source == "generated")
        raise ValueError(f"{name!r} is not a generated sudoku task; choose one of {generated}.")
    sizes = split_sizes or SUDOKU_SPLIT_SIZES
    rng = random.Random(seed)
    splits = {}
    with tqdm(total=sum(sizes.values()), desc=f"Generating {name}", disable=not progress) as bar:
        for split, size in sizes.items():
            rows = []
            for _ in range(size):
                made = make_puzzle(rng, spec.min_givens, spec.max_givens)
                rows.append(
                    sudoku_row(made["puzzle"], made["solution"], givens=made["givens"], rating=made["rating"])
                )
                bar.update(1)
            splits[split] = rows
    return splits


# ----- sudoku-extreme files ----------------------------------------------------------------------------------------


def parse_grid(text: str, blank_chars: str = ".0") -> list[int]:
    """81 characters (`.` or `0` blank, whitespace ignored) as digits with 0 for a blank."""
    cells = [c for c in str(text) if not c.isspace()]
    if len(cells) != CELLS or any(c not in blank_chars and not ("1" <= c <= "9") for c in cells):
        raise ValueError(
            f"a grid is 81 characters 1-9 or {' / '.join(blank_chars)} for a blank, got {text!r}"
        )
    return [0 if c in blank_chars else int(c) for c in cells]


def _read_records(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_sudoku_extreme_file(path: str | Path, limit: int | None = None) -> list[dict]:
    """Rows of one sudoku-extreme file (CSV with a header, or JSON lines) with `question` and `answer`; each answer
    must be a valid grid that agrees with its question's givens."""
    path = Path(path)
    records = _read_records(path)
    rows = []
    for number, record in enumerate(records[:limit] if limit else records, 1):
        where = f"{path}, row {number}"
        if "question" not in record or "answer" not in record:
            raise ValueError(
                f"{where}: a sudoku-extreme row needs `question` and `answer`; it has {sorted(record)}."
            )
        try:
            puzzle, solution = parse_grid(record["question"]), parse_grid(record["answer"])
        except ValueError as error:
            raise ValueError(f"{where}: {error}.") from None
        if not is_valid_solution(solution) or any(p and p != s for p, s in zip(puzzle, solution)):
            raise ValueError(f"{where}: the answer is not a valid solution of the question.")
        extra = {
            "givens": sum(1 for d in puzzle if d),
            "rating": int(float(record.get("rating") or 0)),
            "source": str(record.get("source") or ""),
        }
        rows.append(sudoku_row(puzzle, solution, **extra))
    if not rows:
        raise ValueError(f"{path} holds no sudoku rows.")
    return rows


def _find_split_file(folder: Path, split: str) -> Path | None:
    for suffix in (".csv", ".jsonl", ".json"):
        if (folder / f"{split}{suffix}").is_file():
            return folder / f"{split}{suffix}"
    return None


def load_sudoku_extreme(
    data_dir: str | Path, split_sizes: dict[str, int] | None = None
) -> dict[str, list[dict]]:
    """The splits of `sudoku_extreme` from `<data_dir>/raw/sudoku_extreme/{train,test}[.csv|.jsonl]` (and
    `validation`, else the last 100 training rows). `split_sizes` keeps the first rows of each split."""
    folder = Path(data_dir) / EXTREME_SOURCE_DIR
    train_file, test_file = _find_split_file(folder, "train"), _find_split_file(folder, "test")
    if train_file is None or test_file is None:
        raise ValueError(
            f"sudoku_extreme is read from local files: put train.csv and test.csv (columns question, answer; "
            f"optional rating, source) in {folder}, e.g. from the sapientinc/sudoku-extreme dataset."
        )
    train = read_sudoku_extreme_file(train_file)
    validation_file = _find_split_file(folder, "validation")
    if validation_file is not None:
        validation = read_sudoku_extreme_file(validation_file)
    else:
        if len(train) <= EXTREME_VALIDATION_SIZE:
            raise ValueError(
                f"{train_file} has {len(train)} rows: with no validation file, {EXTREME_VALIDATION_SIZE} of them are "
                "held out for validation and training needs more."
            )
        train, validation = train[:-EXTREME_VALIDATION_SIZE], train[-EXTREME_VALIDATION_SIZE:]
    splits = {"train": train, "validation": validation, "test": read_sudoku_extreme_file(test_file)}
    if split_sizes:
        splits = {split: splits[split][: split_sizes.get(split, len(splits[split]))] for split in splits}
    return splits


def sudoku_splits(
    name: str, data_dir: str | Path, split_sizes: dict[str, int] | None = None
) -> dict[str, list[dict]]:
    """The rows of a sudoku task: generated, or read from the local files of `data_dir`."""
    if SUDOKU_VARIANTS[name].source == "extreme":
        return load_sudoku_extreme(data_dir, split_sizes)
    return generate_sudoku_splits(name, split_sizes)


__all__ = [
    "SUDOKU_VARIANTS",
    "SUDOKU_SPLIT_SIZES",
    "SudokuSpec",
    "solve",
    "count_solutions",
    "is_valid_solution",
    "make_puzzle",
    "generate_sudoku_splits",
    "load_sudoku_extreme",
    "read_sudoku_extreme_file",
    "parse_grid",
    "sudoku_splits",
]
