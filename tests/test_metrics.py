import evaluate
import pytest

from xlm_hf.metrics import AVAILABLE_METRICS, load_metric, metric_path


def test_metrics_ship_with_the_package():
    assert {"exact_match", "token_accuracy"} <= set(AVAILABLE_METRICS)


def test_exact_match_needs_every_position_including_padding():
    metric = load_metric("exact_match")
    result = metric.compute(
        predictions=[[5, 6, 3, 0], [5, 6, 3, 7], [5, 6, 3, 0], [5, 6]],
        references=[[5, 6, 3, 0], [5, 6, 3, 0], [5, 7, 3, 0], [5, 6, 3, 0]],
    )
    assert result == {"exact_match": 0.25}


def test_token_accuracy_is_a_mean_of_per_example_accuracies():
    metric = load_metric("token_accuracy")
    # example 1: 2/3 counted positions right; example 2: 1/1 right (padding ignored) -> mean 5/6
    result = metric.compute(
        predictions=[[5, 9, 3, 0], [5, 8, 8, 8]], references=[[5, 6, 3, 0], [5, 0, 0, 0]], ignore_index=0
    )
    assert result["token_accuracy"] == pytest.approx(5 / 6)
    # without ignore_index every position counts
    result = metric.compute(predictions=[[5, 9, 3, 0]], references=[[5, 6, 3, 0]])
    assert result["token_accuracy"] == pytest.approx(3 / 4)


def test_metrics_load_offline_with_evaluate_load_and_batches():
    metric = evaluate.load(metric_path("exact_match"))
    metric.add_batch(predictions=[[1, 2]], references=[[1, 2]])
    metric.add_batch(predictions=[[1, 3]], references=[[1, 2]])
    assert metric.compute() == {"exact_match": 0.5}


def test_unknown_metric_is_a_clear_error():
    with pytest.raises(ValueError, match="Available metrics"):
        load_metric("bleu")
