"""Validity of predicted sudoku grids: each row, column and 3x3 box holds the digits 1-9 once.

Grids are texts: 81 digits separated by spaces (as `xlm-hf` decodes them), or 81 characters in a row. Validity
checks the rules only (a valid grid that changes a given is still wrong: see `sudoku_exact_match`). The result is
the fraction of valid predictions; the references are accepted for the common interface and unused.
"""

import datasets
import evaluate

_DESCRIPTION = "Fraction of predicted sudoku grids whose rows, columns and boxes each hold 1-9 once."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): predicted grids, one text per example.
    references (`list[str]`): solution grids (unused).
    prompts (`list[str]`, *optional*): the puzzles (unused).
Returns:
    sudoku_validity (`float`): fraction of predictions that are valid full grids.
Example:
    >>> metric = evaluate.load("xlm_hf/metrics/sudoku_validity")
    >>> grid = "".join(str((r * 3 + r // 3 + c) % 9 + 1) for r in range(9) for c in range(9))
    >>> metric.compute(predictions=[grid, "1" * 81], references=[grid, grid])
    {'sudoku_validity': 0.5}
"""


def parse_cells(text: str) -> list[int]:
    """The grid's cells as digits (0 for a blank, -1 for anything that is not a digit); a text with no spaces is
    read one character per cell."""
    cells = text.split() if any(c.isspace() for c in text.strip()) else list(text.strip())
    return [int(c) if c.isdigit() and len(c) == 1 else 0 if c == "." else -1 for c in cells]


def is_valid_grid(cells: list[int]) -> bool:
    if len(cells) != 81 or any(not 1 <= d <= 9 for d in cells):
        return False
    units = [[r * 9 + c for c in range(9)] for r in range(9)]
    units += [[r * 9 + c for r in range(9)] for c in range(9)]
    units += [[(b // 3 * 3 + i // 3) * 9 + b % 3 * 3 + i % 3 for i in range(9)] for b in range(9)]
    return all(len({cells[i] for i in unit}) == 9 for unit in units)


class SudokuValidity(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, prompts=None):
        if len(predictions) == 0:
            raise ValueError("sudoku_validity needs at least one example.")
        valid = [float(is_valid_grid(parse_cells(prediction))) for prediction in predictions]
        return {"sudoku_validity": sum(valid) / len(valid)}
