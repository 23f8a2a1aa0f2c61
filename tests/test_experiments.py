import pytest

from xlm_hf.experiment import ExperimentError, available_experiments, load_experiment


def test_builtin_experiments_load_by_name_and_path():
    assert "star_easy_arlm" in available_experiments()
    by_name = load_experiment("star_easy_arlm")
    from xlm_hf.experiment import EXPERIMENTS_DIR

    by_path = load_experiment(str(EXPERIMENTS_DIR / "star_easy_arlm.yaml"))
    assert by_name == by_path
    assert by_name["family"] == "arlm" and by_name["data"]["task"] == "star_easy"


def test_every_builtin_experiment_validates():
    names = available_experiments()
    for name in names:
        try:
            load_experiment(name)
        except ExperimentError as error:
            if "not available yet" in str(error):  # a family still being built
                continue
            raise


def test_dotted_overrides_parse_values():
    experiment = load_experiment(
        "star_easy_arlm",
        [
            "training.max_steps=200",
            "model.num_hidden_layers=3",
            "training.learning_rate=3e-4",
            "data.max_eval_samples=null",
        ],
    )
    assert experiment["training"]["max_steps"] == 200
    assert experiment["model"]["num_hidden_layers"] == 3
    assert experiment["training"]["learning_rate"] == pytest.approx(3e-4)
    assert experiment["data"]["max_eval_samples"] is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("training.max_stepz=3", "'max_stepz'.*Valid keys:.*max_steps"),
        ("model.num_layers=2", "'num_layers'.*Valid keys:.*num_hidden_layers"),
        ("data.tsk=star_easy", "'tsk'.*Valid keys:.*task"),
        ("collator.loss_on_padding=true", "'loss_on_padding'.*loss_on_prompt"),
        ("trainer.max_steps=3", "Unknown section 'trainer'"),
        ("training.max_steps", "section.key=value"),
    ],
)
def test_unknown_keys_are_named_with_the_valid_ones(override, message):
    with pytest.raises(ExperimentError, match=message):
        load_experiment("star_easy_arlm", [override])


def test_unknown_experiment_lists_the_builtin_ones():
    with pytest.raises(ExperimentError, match="star_easy_arlm"):
        load_experiment("star_easy_gpt5")


def test_unknown_family_is_a_clear_error(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("family: transformer_xl\n")
    with pytest.raises(ValueError, match="Known families"):
        load_experiment(str(path))


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.num_hidden_layers=abc", r"model\.num_hidden_layers must be int, got 'abc' \(str\)"),
        ("model.num_hidden_layers=true", r"model\.num_hidden_layers must be int, got True \(bool\)"),
        ("model.absolute_position_embeddings=1", r"absolute_position_embeddings must be bool"),
        ("training.max_steps=abc", r"training\.max_steps must be int"),
        ("training.learning_rate=x", r"training\.learning_rate must be float"),
        ("data.block_size=abc", r"data\.block_size must be int \| None"),
        ("collator.loss_on_prompt=maybe", r"collator\.loss_on_prompt must be bool"),
        ("eval_tasks.prediction.limit=abc", r"eval_tasks\.prediction\.limit must be int \| None"),
        ("eval_tasks.prediction.limit=0", r"eval_tasks\.prediction\.limit must be a positive number"),
        ("eval_tasks.prediction.kind=sample", r"eval_tasks\.prediction\.kind must be loss or generate"),
        ("eval_tasks.prediction.metrics=exact_match", r"eval_tasks\.prediction\.metrics must be list"),
        ("training.per_device_eval_batch_size=0", r"training\.per_device_eval_batch_size must be at least 1"),
    ],
)
def test_values_of_the_wrong_type_name_the_field_and_the_type(override, message):
    with pytest.raises(ExperimentError, match=message):
        load_experiment("star_easy_arlm", [override])


def test_values_of_the_right_type_pass_type_checking():
    experiment = load_experiment(
        "star_easy_arlm",
        [
            "training.learning_rate=1",  # an int where a float is asked for
            "training.eval_strategy=no",  # an enum given by its value
            "training.resume_from_checkpoint=true",  # true = the latest checkpoint
            "data.block_size=null",
            "model.hidden_dropout=0.1",
        ],
    )
    assert experiment["training"]["learning_rate"] == 1 and experiment["data"]["block_size"] is None


def test_defaults_merge_bases_in_order_and_the_experiment_wins(tmp_path):
    (tmp_path / "common.yaml").write_text(
        "training: {max_steps: 10, learning_rate: 0.1, seed: 1}\nmodel: {hidden_size: 32}\n"
    )
    (tmp_path / "task.yaml").write_text(
        "defaults: common\ndata: {task: star_easy}\ntraining: {learning_rate: 0.2}\nmodel: {num_hidden_layers: 1}\n"
    )
    path = tmp_path / "mine.yaml"
    path.write_text(
        "family: arlm\ndefaults: [task]\ntraining: {seed: 7}\neval_tasks: {lm: {kind: loss, split: validation}}\n"
    )
    experiment = load_experiment(str(path))
    assert experiment["training"]["max_steps"] == 10  # from the first base
    assert experiment["training"]["learning_rate"] == 0.2  # the second base wins over the first
    assert experiment["training"]["seed"] == 7  # the experiment wins over its bases
    assert experiment["model"] == {"hidden_size": 32, "num_hidden_layers": 1}  # mappings merge key by key
    assert "defaults" not in experiment and experiment["name"] == "mine"


def test_builtin_experiments_share_their_bases():
    easy_ilm, easy_arlm = load_experiment("star_easy_ilm"), load_experiment("star_easy_arlm")
    for section in ("data", "training"):
        assert easy_ilm[section] == easy_arlm[section]
    assert easy_ilm["model"]["initializer_range"] == easy_arlm["model"]["initializer_range"] == 0.07
    assert "base/star_easy" not in available_experiments() and "training" not in available_experiments()


@pytest.mark.parametrize(
    "files, message",
    [
        ({"mine.yaml": "family: arlm\ndefaults: nosuch\n"}, "'nosuch', which is neither next to it"),
        ({"mine.yaml": "family: arlm\ndefaults: [a]\n", "a.yaml": "defaults: [mine]\n"}, "form a cycle"),
        ({"mine.yaml": "family: arlm\ndefaults: {a: 1}\n"}, "must be a file name or a list"),
    ],
)
def test_bad_defaults_are_clear_errors(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ExperimentError, match=message):
        load_experiment(str(tmp_path / "mine.yaml"))


def test_a_dict_valued_training_argument_is_accepted_after_hf_argument_parser_ran():
    # HfArgumentParser rewrites TrainingArguments' field types in place (`dict | str | None` -> `str`); the
    # experiment check must read the declared hints, whatever ran before it in the process
    from transformers import HfArgumentParser, TrainingArguments

    HfArgumentParser(TrainingArguments)
    experiment = load_experiment("star_hard_ilm")
    scheduler_kwargs = experiment["training"]["lr_scheduler_kwargs"]
    assert isinstance(scheduler_kwargs, dict) and isinstance(scheduler_kwargs["num_decay_steps"], int)
    with pytest.raises(ValueError, match=r"training.lr_scheduler_kwargs must be"):
        load_experiment("star_hard_ilm", ["training.lr_scheduler_kwargs=7"])
