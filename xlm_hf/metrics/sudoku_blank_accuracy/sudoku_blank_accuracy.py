"""Accuracy on the blank cells of sudoku puzzles (xlm-core's token accuracy over the originally blank cells).

Grids are texts: 81 digits separated by spaces (as `xlm-hf` decodes them), or 81 characters in a row with `.` or
`0` for a blank. The blanks are the cells that are 0 (or `.`) in the puzzle (`prompts`). The result is the number
of blank cells predicted right over the number of blank cells, over the whole dataset (every blank cell weighs the
same, whichever puzzle it is in). A prediction shorter than 81 cells counts its missing cells as wrong.
"""

import datasets
import evaluate

_DESCRIPTION = "Fraction of the puzzles' blank cells whose predicted digit is the solution's."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): predicted grids, one text per example.
    references (`list[str]`): solution grids, one text per example.
    prompts (`list[str]`): the puzzles (0 or `.` for a blank), one text per example.
Returns:
    sudoku_blank_accuracy (`float`): right blank cells / blank cells, over all examples.
Example:
    >>> metric = evaluate.load("xlm_hf/metrics/sudoku_blank_accuracy")
    >>> puzzle = "0" * 2 + "1" * 79
    >>> metric.compute(predictions=["21" + "1" * 79], references=["22" + "1" * 79], prompts=[puzzle])
    {'sudoku_blank_accuracy': 0.5}
"""


def parse_cells(text: str) -> list[int]:
    """The grid's cells as digits (0 for a blank, -1 for anything that is not a digit); a text with no spaces is
    read one character per cell."""
    cells = text.split() if any(c.isspace() for c in text.strip()) else list(text.strip())
    return [int(c) if c.isdigit() and len(c) == 1 else 0 if c == "." else -1 for c in cells]


class SudokuBlankAccuracy(evaluate.Metric):
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
        if prompts is None or len(prompts) != len(references):
            raise ValueError(
                "sudoku_blank_accuracy needs the puzzles: one prompt per reference (prompts=...)."
            )
        right = blanks = 0
        for prediction, reference, prompt in zip(predictions, references, prompts):
            puzzle, solution, predicted = parse_cells(prompt), parse_cells(reference), parse_cells(prediction)
            if len(puzzle) != 81 or len(solution) != 81:
                raise ValueError(
                    f"A sudoku puzzle and its solution are 81 cells each, got {prompt!r}, {reference!r}."
                )
            for cell in range(81):
                if puzzle[cell] == 0:
                    blanks += 1
                    right += cell < len(predicted) and predicted[cell] == solution[cell]
        if blanks == 0:
            raise ValueError("sudoku_blank_accuracy: the puzzles have no blank cell.")
        return {"sudoku_blank_accuracy": right / blanks}
