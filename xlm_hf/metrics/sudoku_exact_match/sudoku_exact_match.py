"""Full-grid exact match for sudoku (xlm-core's sudoku `ExactMatch` over the 81 cells).

Grids are texts: 81 digits separated by spaces (as `xlm-hf` decodes them), or 81 characters in a row with `.` or
`0` for a blank. An example scores 1 only if all 81 predicted cells equal the solution's; a prediction that is not
81 digits never matches. The result is the mean over examples.
"""

import datasets
import evaluate

_DESCRIPTION = "Fraction of sudoku predictions whose 81 cells all equal the solution's."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): predicted grids, one text per example.
    references (`list[str]`): solution grids, one text per example.
    prompts (`list[str]`, *optional*): the puzzles; accepted (every sudoku metric takes them) and unused.
Returns:
    sudoku_exact_match (`float`): mean over examples of 1[prediction == solution].
Example:
    >>> metric = evaluate.load("xlm_hf/metrics/sudoku_exact_match")
    >>> metric.compute(predictions=["1" * 81, "2" * 81], references=["1" * 81, "1" * 81])
    {'sudoku_exact_match': 0.5}
"""


def parse_cells(text: str) -> list[int]:
    """The grid's cells as digits (0 for a blank, -1 for anything that is not a digit); a text with no spaces is
    read one character per cell."""
    cells = text.split() if any(c.isspace() for c in text.strip()) else list(text.strip())
    return [int(c) if c.isdigit() and len(c) == 1 else 0 if c == "." else -1 for c in cells]


class SudokuExactMatch(evaluate.Metric):
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
            raise ValueError("sudoku_exact_match needs at least one example.")
        matches = []
        for prediction, reference in zip(predictions, references):
            solution = parse_cells(reference)
            if len(solution) != 81:
                raise ValueError(f"A sudoku reference is 81 cells, got {len(solution)}: {reference!r}.")
            matches.append(float(parse_cells(prediction) == solution))
        return {"sudoku_exact_match": sum(matches) / len(matches)}
