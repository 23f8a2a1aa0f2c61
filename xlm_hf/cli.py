"""The `xlm-hf` command line: prepare-data, train, eval, generate, card, push, new-family.

    xlm-hf prepare-data star_easy
    xlm-hf prepare-data text_pydoc
    xlm-hf tokenizer train --task text_pydoc --vocab-size 4096 --output my_tokenizer
    xlm-hf train star_easy_arlm training.max_steps=200 model.num_hidden_layers=2
    xlm-hf train star_easy_arlm --debug overfit
    xlm-hf eval outputs/star_easy_arlm --task star_easy --split test --limit 500
    xlm-hf generate outputs/star_easy_arlm --prompt "3 7 7 12 ... 3 15"
    xlm-hf card outputs/star_easy_arlm
    xlm-hf push outputs/star_easy_arlm --repo-id my-org/star-easy-arlm [--private] [--revision BRANCH]
    xlm-hf new-family my_lm --like mlm
    xlm-hf compare star_easy --families arlm,ilm --budget-minutes 30 --seeds 42,43
    xlm-hf demo outputs/star_easy_ilm [--port 7860] [--share]
    xlm-hf space my-org/star-easy-ilm my-space/

Errors in what the user asked for (unknown experiment, key, task; bad model folder; bad prompt) print one line
starting with `error:` and exit with status 2.

`train` and `eval` also run under a launcher, one process per device (CPU cores use gloo):

    torchrun --nproc_per_node 2 $(which xlm-hf) train star_easy_ilm
    accelerate launch --multi_gpu --num_processes 2 $(which xlm-hf) train star_easy_ilm

Only the main process prints the final JSON line.
"""

import argparse
import errno
import json
import os
import sys
from typing import NoReturn

# Failures of the machine rather than of the code (a full disk, a read-only or foreign folder): one `error:` line
# that names the file, like a user error; any other OSError is a bug and keeps its traceback.
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)


class CLIArgumentParser(argparse.ArgumentParser):
    """argparse with the convention of the CLI and the scripts for user errors: one `error:` line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _join_dash_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`--repo-id -org/x` as `--repo-id=-org/x`: argparse takes a value that starts with '-' for an unknown option
    and says "expected one argument"; joined, the value reaches the checks that say what is wrong with it."""
    takes_value, known = set(), set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                for sub_action in subparser._actions:
                    known.update(sub_action.option_strings)
                    if sub_action.option_strings and sub_action.nargs is None:
                        takes_value.update(sub_action.option_strings)
        known.update(action.option_strings)
    joined, index = [], 0
    while index < len(argv):
        item = argv[index]
        following = argv[index + 1] if index + 1 < len(argv) else None
        if (
            item in takes_value
            and following is not None
            and following.startswith("-")
            and following not in known
        ):
            joined.append(f"{item}={following}")
            index += 2
        else:
            joined.append(item)
            index += 1
    return joined


def _parse_value(text: str):
    from .experiment import parse_yaml

    return parse_yaml(text)


def _eval_task_specs(items: list[str] | None) -> dict | None:
    """`--eval-task NAME=SPEC` options as eval-task mappings (SPEC is YAML, e.g. `{kind: perplexity}`)."""
    if not items:
        return None
    specs = {}
    for item in items:
        name, _, spec = item.partition("=")
        value = _parse_value(spec) if spec else None
        if not name or not isinstance(value, dict):
            raise ValueError(f"--eval-task expects NAME={{kind: ..., ...}}, got {item!r}.")
        specs[name.strip()] = value
    return specs


def build_parser() -> argparse.ArgumentParser:
    parser = CLIArgumentParser(prog="xlm-hf", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    prep = sub.add_parser("prepare-data", help="generate a task's dataset into the cache folder")
    prep.add_argument("task")
    prep.add_argument("--cache-dir", default=None, help="default: $XLM_HF_DATA_DIR or ~/.cache/xlm_hf/data")
    prep.add_argument("--overwrite", action="store_true", help="regenerate even if the cache has the task")

    tok = sub.add_parser("tokenizer", help="tokenizers for text tasks")
    tok_sub = tok.add_subparsers(dest="tokenizer_command", required=True)
    tok_train = tok_sub.add_parser(
        "train", help="train a byte-level BPE (with XLM's special tokens) on a corpus"
    )
    tok_source = tok_train.add_mutually_exclusive_group(required=True)
    tok_source.add_argument("--task", help="a text task whose train split to train on, e.g. text_pydoc")
    tok_source.add_argument(
        "--files", nargs="+", help=".txt (a document per line), .jsonl/.json/.parquet (text)"
    )
    tok_train.add_argument(
        "--vocab-size", type=int, default=4096, help="special tokens included (default 4096)"
    )
    tok_train.add_argument(
        "--output", required=True, help="folder to save it to (then data.tokenizer=FOLDER)"
    )
    tok_train.add_argument("--cache-dir", default=None)

    train = sub.add_parser("train", help="train an experiment and export a Hub-ready folder")
    train.add_argument("experiment", help="a built-in experiment name (e.g. star_easy_arlm) or a YAML path")
    train.add_argument("overrides", nargs="*", help="dotted overrides such as training.max_steps=200")
    train.add_argument("--debug", choices=["overfit", "small_data"], default=None)

    ev = sub.add_parser(
        "eval", help="run a saved model's eval tasks; prints the metrics as JSON on the last line"
    )
    ev.add_argument("model", help="a model folder or a Hub id")
    ev.add_argument("--task", default=None, help="default: the task the model was trained on")
    ev.add_argument("--split", default="test")
    ev.add_argument("--limit", type=int, default=None, help="evaluate on the first N examples")
    ev.add_argument("--batch-size", type=int, default=None)
    ev.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    ev.add_argument("--cache-dir", default=None)
    ev.add_argument(
        "--eval-task",
        action="append",
        default=None,
        metavar="NAME=SPEC",
        help="run this eval task instead of the experiment's (repeat for more), e.g. "
        "'ppl={kind: perplexity, num_samples: 8}' or 'gen={kind: generative_perplexity, judge: outputs/x_arlm}'",
    )

    gen = sub.add_parser("generate", help="generate from a saved model and print the text")
    gen.add_argument("model", help="a model folder or a Hub id")
    gen.add_argument(
        "--prompt", action="append", default=None, help="a prompt (repeat for a batch); empty for none"
    )
    gen.add_argument("--revision", default=None)
    gen.add_argument("--max-new-tokens", type=int, default=None)
    gen.add_argument("--do-sample", action="store_true")
    gen.add_argument("--temperature", type=float, default=None)
    gen.add_argument("--top-k", type=int, default=None)
    gen.add_argument("--top-p", type=float, default=None)
    gen.add_argument("--num-beams", type=int, default=None)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other generation option, e.g. num_steps=8",
    )

    sub.add_parser("experiments", help="list the built-in experiments")

    compare = sub.add_parser(
        "compare", help="train and evaluate families on a task at an equal time budget; write a table"
    )
    compare.add_argument(
        "task", help="a task with a recipe per family, e.g. star_easy (experiments <task>_<family>)"
    )
    compare.add_argument("--families", required=True, help="comma-separated, e.g. arlm,mlm,mdlm,ilm")
    compare.add_argument("--budget-minutes", type=float, required=True, help="training time per run")
    compare.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="budget in process CPU time (default) or wall time",
    )
    compare.add_argument("--seeds", default="42", help="comma-separated training seeds (default: 42)")
    compare.add_argument("--out", default=None, help="default: outputs/compare/<task>")
    compare.add_argument("--limit", type=int, default=None, help="evaluate on the first N test examples")
    compare.add_argument(
        "--speed-examples", type=int, default=256, help="test prompts timed for the generation speed"
    )
    compare.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at a time, each in its own process with its output in <out>/runs/<family>-seed<S>.log "
        "(default: 1, one after another in this process)",
    )
    compare.add_argument(
        "--threads-per-job", type=int, default=1, help="torch threads of each parallel run (default: 1)"
    )
    compare.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override for every run, e.g. training.max_steps=3000",
    )

    push = sub.add_parser("push", help="upload a Hub-ready model folder to the Hugging Face Hub")
    push.add_argument("model", help="the folder `xlm-hf train` exported")
    push.add_argument("--repo-id", required=True, help="ORG/NAME of the model repo (created when missing)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", default=None, help="branch to push to (created from main when missing)")
    push.add_argument("--commit-message", default=None)

    card = sub.add_parser(
        "card", help="re-render a model folder's README.md (e.g. after a new `xlm-hf eval`)"
    )
    card.add_argument("model", help="a model folder")
    card.add_argument("--repo-id", default=None, help="the Hub id to show in the usage snippet")
    card.add_argument("--no-widget", action="store_true", help="do not generate widget examples")

    family = sub.add_parser(
        "new-family", help="write a new family (model, loss, collators, Trainer, experiment, card, tests)"
    )
    family.add_argument("name", help="the new family's name, a lowercase Python identifier (e.g. my_lm)")
    family.add_argument(
        "--like", default="mlm", help="the family to copy and rename (mlm, mdlm, ilm or arlm; default: mlm)"
    )
    family.add_argument(
        "--class-prefix",
        default=None,
        help="the prefix of the new class names (default: the name in CamelCase, my_lm -> MyLm; e.g. FlexMDM)",
    )
    family.add_argument(
        "--root", default=None, help="the source checkout to write into (default: xlm_hf's own)"
    )

    demo = sub.add_parser("demo", help="serve a Gradio app that shows the model generating, step by step")
    demo.add_argument("model", help="a model folder or a Hub id")
    demo.add_argument("--port", type=int, default=None, help="default: 7860 or the next free port")
    demo.add_argument("--share", action="store_true", help="also open a public gradio.live link")

    space = sub.add_parser(
        "space", help="write a Space folder (Gradio app) that runs the demo for a Hub model"
    )
    space.add_argument("model", help="the model's Hub id (ORG/NAME)")
    space.add_argument("out_dir", help="a new folder; push it with `xlm-hf push OUT_DIR --repo-id ORG/SPACE`")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = _join_dash_values(parser, list(sys.argv[1:] if argv is None else argv))
    # Overrides may come after options (`train EXP --debug overfit training.max_steps=5`): collect them.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "train" or any(item.startswith("-") or "=" not in item for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    try:
        return _run(args)
    except ValueError as error:  # our errors are ValueErrors that say what to fix
        from .jobs import LaunchError

        # a launch error is the same on every process: the first one says it
        if not isinstance(error, LaunchError) or os.environ.get("RANK", "0") == "0":
            print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in ENVIRONMENT_ERRNOS:
            raise
        where = f" ({error.filename})" if error.filename else ""
        print(
            f"error: {error.strerror or error}{where}: free disk space or fix the folder's permissions, then run "
            "again.",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside training (which saves a checkpoint and says so itself)
        print(
            "interrupted: stopped before the command finished; nothing was left half-written.",
            file=sys.stderr,
        )
        return 130


def _is_main_process() -> bool:
    """False on the other processes of a multi-process launch (the process group is set up by then)."""
    from accelerate import PartialState

    return PartialState().is_main_process


def _run(args: argparse.Namespace) -> int:
    if args.command == "experiments":
        from .experiment import available_experiments

        print("\n".join(available_experiments()))
        return 0

    if args.command == "prepare-data":
        from .tasks import prepare_task

        print(prepare_task(args.task, args.cache_dir, overwrite=args.overwrite))
        return 0

    if args.command == "tokenizer":
        from .tasks.tokenizer_training import train_tokenizer_command

        print(train_tokenizer_command(args.task, args.files, args.vocab_size, args.output, args.cache_dir))
        return 0

    if args.command == "train":
        from .jobs import TrainingInterrupted, prepare_experiment, train

        experiment = prepare_experiment(args.experiment, args.overrides, debug=args.debug)
        try:
            summary = train(experiment)
        except TrainingInterrupted as interrupted:  # SIGINT / SIGTERM: one line, the shell's exit status
            if _is_main_process():
                print(f"interrupted: {interrupted}", file=sys.stderr)
            return interrupted.exit_code
        if _is_main_process():
            print(json.dumps(summary))
        return 0

    if args.command == "compare":
        from .compare import compare, markdown_table, output_folder, parse_list
        from .jobs import TrainingInterrupted

        try:
            report = compare(
                args.task,
                parse_list(args.families, "families"),
                args.budget_minutes,
                seeds=parse_list(args.seeds, "seeds", int),
                out=args.out,
                clock=args.clock,
                overrides=args.set,
                limit=args.limit,
                speed_examples=args.speed_examples,
                parallel_jobs=args.jobs,
                threads_per_job=args.threads_per_job,
            )
        # SIGINT / SIGTERM during a run: the finished runs' table stays
        except TrainingInterrupted as interrupted:
            results = output_folder(args.task, args.out) / "results.json"
            print(f"interrupted: {interrupted}. The finished runs' rows are in {results}.", file=sys.stderr)
            return interrupted.exit_code
        print(markdown_table(report), end="")
        print(json.dumps({"out": report["out"], "runs": len(report["rows"])}))
        return 0

    if args.command == "eval":
        from .jobs import evaluate

        results = evaluate(
            args.model,
            task=args.task,
            split=args.split,
            limit=args.limit,
            revision=args.revision,
            batch_size=args.batch_size,
            cache_dir=args.cache_dir,
            eval_tasks=_eval_task_specs(args.eval_task),
        )
        if _is_main_process():
            print(json.dumps(results["metrics"]))
        return 0

    if args.command == "generate":
        from transformers import set_seed

        from .jobs import generate

        options = {}
        for key in ("max_new_tokens", "temperature", "top_k", "top_p", "num_beams"):
            if getattr(args, key) is not None:
                options[key] = getattr(args, key)
        if args.do_sample:
            options["do_sample"] = True
        for item in args.set:
            if "=" not in item:
                raise ValueError(f"--set expects KEY=VALUE, got {item!r}.")
            key, value = item.split("=", 1)
            options[key] = _parse_value(value)
        if args.seed is not None:
            set_seed(args.seed)
        prompts = args.prompt if args.prompt else [""]
        for text in generate(args.model, prompts, revision=args.revision, **options):
            print(text)
        return 0

    if args.command == "push":
        from .hub import push_to_hub

        result = push_to_hub(
            args.model,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
        )
        print(
            json.dumps(
                {
                    "repo_id": result.repo_id,
                    "revision": result.revision,
                    "files": result.files,
                    "commit_url": result.commit_url,
                }
            )
        )
        return 0

    if args.command == "card":
        # `xlm-hf card` loads the model to generate the widget outputs (export and push never do)
        from .jobs import write_card

        print(write_card(args.model, repo_id=args.repo_id, widget=not args.no_widget))
        return 0

    if args.command in ("demo", "space"):
        try:
            from . import demo
        except ImportError as error:
            raise ValueError(f"{error}; the demo needs gradio: pip install 'xlm_hf[demo]'.") from error
        if args.command == "space":
            print(demo.write_space(args.model, args.out_dir))
        else:
            demo.launch(args.model, port=args.port, share=args.share)
        return 0

    if args.command == "new-family":
        from .scaffold import new_family, next_steps

        written = new_family(args.name, like=args.like, root=args.root, class_prefix=args.class_prefix)
        print(f"Wrote the {args.name} family (copied from {args.like}):")
        print("\n".join(f"  {path}" for path in written))
        print(next_steps(args.name, written))
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
