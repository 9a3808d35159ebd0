"""The ``peftkit`` command. Thin: it parses, calls the library and prints; no logic of its own.

User errors (a bad recipe, a missing file, bad YAML, a bad option) print every problem without a
traceback and exit with code 2; Ctrl-C exits with 130, so ``peftkit train ... && next`` stops.
Anything else is a bug in peftkit and keeps its traceback; ``--debug`` shows the traceback of
user errors too.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from peftkit.core.errors import (
    MissingExtraError,
    PeftkitWarning,
    RecipeError,
    describe,
    problems_of,
)
from peftkit.core.limits import SHORTEST_SEQUENCE
from peftkit.core.quiet import quiet
from peftkit.memory.optimizers import OPTIMIZERS

if TYPE_CHECKING:
    from peftkit.memory import Plan
    from peftkit.recipes import Recipe

USER_ERRORS = (ValidationError, RecipeError, MissingExtraError, OSError)
"""What bad input raises. OSError covers what the file system refuses (a read-only folder, a
full disk); its message names the path."""
EXIT_USER_ERROR = 2
EXIT_DOES_NOT_FIT = 1
EXIT_INTERRUPTED = 130
"""128 + SIGINT, what a shell reports for a command stopped by Ctrl-C."""
DEBUG_FLAG = "--debug"
VERBOSE_FLAG = "--verbose"

app = typer.Typer(
    name="peftkit",
    help="Validated LoRA/QLoRA fine-tuning recipes for the Hugging Face stack. "
    f"Add {DEBUG_FLAG} anywhere to see the traceback behind an error, {VERBOSE_FLAG} to see "
    "every warning and progress bar of the HF stack.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Dotted overrides, e.g. training.learning_rate=1e-4 lora.r=32"),
]
RecipeArg = Annotated[str, typer.Argument(help="A built-in recipe name or a recipe YAML file.")]


def _version(shown: bool) -> None:
    if shown:
        from peftkit import __version__

        typer.echo(f"peftkit {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Validated LoRA/QLoRA fine-tuning recipes for the Hugging Face stack."""


@app.command("recipes")
def list_recipes() -> None:
    """List the built-in recipes."""
    from rich.console import Console
    from rich.table import Table

    from peftkit.recipes.registry import BUILTIN, summary

    table = Table("recipe", "method", "what it is for")
    for name, kind in BUILTIN.items():
        table.add_row(name, kind.model_fields["method"].default, summary(kind))
    Console().print(table)


JSON_FLAG = "--json"
JsonFlag = Annotated[
    bool, typer.Option(JSON_FLAG, help="Print the result as JSON (an error too, on stdout).")
]


@app.command()
def show(
    recipe: RecipeArg,
    overrides: Overrides = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="A model's config.json, folder or cached hub name: resolve every 'auto' for it "
            "on this machine (learning rate, dtypes, precision, attention).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Print a recipe, with every default resolved, as YAML (or JSON)."""
    from peftkit import recipes

    loaded = recipes.load(recipe, overrides or [])
    if model is None:
        if as_json:
            typer.echo(json.dumps(loaded.model_dump(mode="json"), indent=2))
        else:
            typer.echo(loaded.to_yaml(), nl=False)
        return
    from peftkit.recipes.resolution import for_model

    resolved, runs = for_model(loaded, str(_path(model, "--model")))
    if as_json:
        found = {"recipe": runs.model_dump(mode="json"), "resolved": resolved.as_dict()}
        typer.echo(json.dumps(found, indent=2))
        return
    lines = [f"# Resolved for {model} on this {resolved.machine.describe()}:"]
    lines += [f"#   {line}" for line in resolved.lines()]
    typer.echo(runs.to_yaml(resolved.notes()) + "\n".join(lines))


@app.command()
def new(
    file: Annotated[str, typer.Argument(help="The recipe file to create.")],
    from_: Annotated[str, typer.Option("--from", help="Built-in recipe to copy.")] = "json-output",
) -> None:
    """Copy a built-in recipe to FILE for editing. Never overwrites an existing file."""
    import shlex

    from peftkit.recipes.files import new_file_path, write_new

    _path(file, "FILE")  # never empty
    path = write_new(new_file_path(file, from_), from_)
    shown = f"./{path}" if str(path).startswith("-") else str(path)
    typer.echo(
        f"wrote {path} (a copy of '{from_}'); check it with: peftkit validate {shlex.quote(shown)}"
    )


@app.command("import")
def import_command(
    file: Annotated[str, typer.Argument(help="A `trl sft --config` YAML or an axolotl YAML.")],
    overrides: Overrides = None,
    output: Annotated[
        str | None,
        typer.Option(help="The recipe file to write (default: FILE.peftkit.yaml beside FILE)."),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(help="The recipe to build on (default: chosen from FILE), e.g. json-output."),
    ] = None,
) -> None:
    """Convert a TRL or axolotl config to a recipe; list every key it could not map."""
    from peftkit.recipes.importing import import_file

    target = None if output is None else _path(output, "--output")
    imported = import_file(_path(file, "FILE"), target, recipe, overrides or [])
    typer.echo(imported.summary())


@app.command()
def validate(recipe: RecipeArg, overrides: Overrides = None, as_json: JsonFlag = False) -> None:
    """Check a recipe; print every problem at once (exit 2) or 'ok' with any warnings."""
    from peftkit import recipes

    if not as_json:
        loaded = recipes.load(recipe, overrides or [])
        typer.echo(f"ok: {recipe} is a valid '{loaded.recipe}' recipe (method {loaded.method})")
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PeftkitWarning)
        try:
            loaded = recipes.load(recipe, overrides or [])
        except USER_ERRORS as error:
            found = problems_of(error)
            details = {"message": describe(error), "exit_code": EXIT_USER_ERROR, "problems": found}
            typer.echo(json.dumps({"valid": False, "errors": found, "error": details}, indent=2))
            print(f"error: {describe(error)}", file=sys.stderr)
            raise typer.Exit(EXIT_USER_ERROR) from None
    doubts = [str(w.message) for w in caught if issubclass(w.category, PeftkitWarning)]
    found = {"valid": True, "recipe": loaded.recipe, "method": loaded.method, "warnings": doubts}
    typer.echo(json.dumps(found, indent=2))


@app.command()
def env(as_json: JsonFlag = False) -> None:
    """Print the versions, GPUs and precision support to paste into a bug report."""
    from peftkit.core.environment import as_text, describe

    found = describe()
    typer.echo(json.dumps(found, indent=2) if as_json else as_text(found))


@app.command()
def schema() -> None:
    """Print the JSON Schema of recipe files (for editor completion)."""
    from peftkit.recipes import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


ModelArg = Annotated[
    str,
    typer.Option("--model", help="The model's config.json, its folder, or a cached hub name."),
]
PushToHub = Annotated[
    str | None,
    typer.Option(
        "--push-to-hub",
        metavar="REPO",
        help="Upload the result to this Hugging Face Hub repository (private) at the end.",
    ),
]


@app.command()
def plan(
    recipe: RecipeArg,
    model: ModelArg,
    overrides: Overrides = None,
    gpu_memory: Annotated[
        float | None, typer.Option("--gpu-memory", help="GB per GPU (default: the recipe's).")
    ] = None,
    gpus: Annotated[int | None, typer.Option("--gpus", help="Number of GPUs.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Peak GPU memory of RECIPE on MODEL, whether it fits, and (qlora-budget) what to change."""
    from peftkit import recipes
    from peftkit.memory import load_shape
    from peftkit.recipes.resolution import learning_rate_for

    loaded = recipes.load(recipe, overrides or [])
    chosen = loaded.plan(load_shape(model), gpu_memory, gpus)
    rate = learning_rate_for(loaded, model)
    _show(chosen, as_json, {"training.learning_rate": {"value": rate.value, "why": rate.why}})


@app.command()
def estimate(
    ctx: typer.Context,
    model: ModelArg,
    method: Annotated[
        str, typer.Option(help="full, lora, or qlora (LoRA on a 4-bit base).")
    ] = "lora",
    batch_size: Annotated[int, typer.Option(min=1, help="Sequences per micro-batch.")] = 1,
    seq_len: Annotated[
        int | None,
        typer.Option(
            min=SHORTEST_SEQUENCE,
            help="Tokens per sequence, at most the model's context (default: 1024, or the "
            "model's context when shorter).",
        ),
    ] = None,
    r: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 16,
    targets: Annotated[
        str, typer.Option(help="all-linear, or comma-separated module names (q_proj,v_proj).")
    ] = "all-linear",
    activation_checkpointing: Annotated[
        bool, typer.Option(help="Recompute activations in the backward pass.")
    ] = False,
    optimizer: Annotated[
        str,
        typer.Option(help=f"{', '.join(list(OPTIMIZERS)[:-1])} or {list(OPTIMIZERS)[-1]}."),
    ] = "adamw_torch",
    gpu_memory: Annotated[
        float | None,
        typer.Option("--gpu-memory", help="GB per GPU: adds whether it fits (exit 1 if not)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Peak GPU memory of a one-off setting, without a recipe file."""
    from peftkit import memory
    from peftkit.core.targets import ALL_LINEAR, parse_target_list
    from peftkit.memory.peak import auto_dtype
    from peftkit.memory.planner import default_seq_len

    _check_choices(ctx, method, optimizer)
    target_list = ALL_LINEAR if targets.strip() == ALL_LINEAR else parse_target_list(targets)
    shape = memory.load_shape(model)
    seq_len, note = (seq_len, None) if seq_len is not None else default_seq_len(shape)
    setup = memory.Setup(
        method=method,
        bits=4 if method == "qlora" else None,
        r=r,
        targets=target_list,
        batch_size=batch_size,
        seq_len=seq_len,
        activation_checkpointing=activation_checkpointing,
        optimizer=optimizer,
        weights_dtype=auto_dtype(shape.checkpoint_dtype),
    )
    judged = memory.judge(shape, setup, gpu_memory)
    judged.reasons[:0] = [note] if note else []
    _show(judged, as_json)


def _check_choices(ctx: typer.Context, method: str, optimizer: str) -> None:
    """`peftkit estimate`'s --method and --optimizer, refused as the parser refuses options."""
    from typing import get_args

    from peftkit.memory.peak import Method

    choices = {
        "--method": (method, get_args(Method)),
        "--optimizer": (optimizer, tuple(OPTIMIZERS)),
    }
    for option, (value, allowed) in choices.items():
        if value not in allowed:
            listed = ", ".join(repr(name) for name in allowed)
            message = f"{value!r} is not one of {listed}."
            raise typer.BadParameter(message, ctx, param_hint=f"'{option}'")


def _show(chosen: Plan, as_json: bool, extra: dict | None = None) -> None:
    """Print a plan (with ``extra``: the resolved learning rate) as JSON or as tables; exit 1
    when it does not fit."""
    if as_json:
        typer.echo(json.dumps({**chosen.as_dict(), **(extra or {})}, indent=2))
    else:
        from peftkit.run.report import print_plan

        print_plan(chosen)
        for key, item in (extra or {}).items():
            typer.echo(f"{key}: {item['value']} ({item['why']})")
    if not chosen.fits:
        raise typer.Exit(EXIT_DOES_NOT_FIT)


ModelOption = Annotated[str | None, typer.Option("--model", help="Model folder or hub id.")]
DataOption = Annotated[str | None, typer.Option("--data", help="Training data file or folder.")]
EvalDataOption = Annotated[str | None, typer.Option("--eval-data", help="Evaluation data.")]


def _with_inputs(
    recipe: str, overrides: list[str] | None, model: str | None, data: str | None,
    eval_data: str | None,
) -> Recipe:  # fmt: skip
    """RECIPE with --model, --data and --eval-data written into it: the recipe is the one place
    that holds them."""
    from peftkit import recipes

    given = {"model.name": (model, "--model"), "data.train_path": (data, "--data")}
    given["data.eval_path"] = (eval_data, "--eval-data")
    extra = [
        f"{field}={json.dumps(str(_path(value, option)))}"
        for field, (value, option) in given.items()
        if value is not None
    ]
    return recipes.load(recipe, [*(overrides or []), *extra])


@app.command()
def check(
    recipe: RecipeArg,
    overrides: Overrides = None,
    model: ModelOption = None,
    data: DataOption = None,
    eval_data: EvalDataOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Audit --data as the trainer will see it (lengths, labels, template, duplicates, JSON
    answers, run length) without loading weights; exit 2 when training would be meaningless."""
    from peftkit.run.prepare import audit_data
    from peftkit.run.report import print_audit

    found = audit_data(_with_inputs(recipe, overrides, model, data, eval_data))
    if as_json:
        typer.echo(json.dumps(found.as_dict(), indent=2))
    else:
        from rich.console import Console

        print_audit(found, Console())
    if found.errors:
        raise typer.Exit(EXIT_USER_ERROR)


@app.command("train")
def train_command(
    recipe: RecipeArg,
    overrides: Overrides = None,
    model: ModelOption = None,
    data: DataOption = None,
    eval_data: EvalDataOption = None,
    output: Annotated[str, typer.Option(help="Folder for the results.")] = "out",
    overwrite: Annotated[
        bool, typer.Option(help="Replace an earlier peftkit output in --output.")
    ] = False,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="auto|PATH",
            help="Continue from a checkpoint of this --output's run: its last one (auto), or a "
            "checkpoint folder. Never replaces another output (see --fork).",
        ),
    ] = None,
    fork: Annotated[
        bool,
        typer.Option(
            "--fork",
            help="With --resume PATH: start a new run in --output from a checkpoint of "
            "another run.",
        ),
    ] = False,
    push_to_hub: PushToHub = None,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="Skip the data audit before training.")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            JSON_FLAG, help="Print the final summary (the metrics), or the error, as JSON."
        ),
    ] = False,
) -> None:
    """Fine-tune with RECIPE on --data and write adapter, recipe, metrics and plot to --output."""
    from peftkit.core.processes import is_main_process
    from peftkit.run.report import print_audit
    from peftkit.run.train import train

    loaded = _with_inputs(recipe, overrides, model, data, eval_data)
    sources = {"the recipe file": recipe} if Path(recipe).is_file() else {}
    target = _path(output, "--output")
    metrics = train(
        loaded,
        target,
        overwrite=overwrite,
        sources=sources,
        resume=resume,
        push_to_hub=push_to_hub,
        check=not no_check,
        on_audit=print_audit,
        fork=fork,
    )
    if is_main_process():
        _report(metrics, target, as_json)


def _report(metrics: dict, output: Path, as_json: bool = False) -> None:
    """The run's summary; exit 130 after Ctrl-C, so that `peftkit train ... && next` stops."""
    from peftkit.run.report import print_training

    if as_json:
        typer.echo(json.dumps(metrics, indent=2, default=str))
    else:
        print_training(metrics, output)
    if metrics["stop_reason"] == "interrupted":
        kept = (
            f"the earlier results in {output} are kept; this run was discarded"
            if metrics.get("output") is None
            else f"the results so far are in {output}"
        )
        print(f"interrupted after step {metrics['global_step']}: {kept}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)  # not typer.Exit: main() reads a returned 130 as unreported


@app.command()
def demo(
    task: Annotated[str, typer.Option(help="json (JSON answers) or docs (domain adaptation).")] = (
        "json"
    ),
    output: Annotated[str, typer.Option(help="Folder for the results.")] = "demo-output",
    overwrite: Annotated[
        bool, typer.Option(help="Replace an earlier peftkit output in --output.")
    ] = False,
) -> None:
    """Fine-tune the embedded SmolLM2-135M-Instruct offline and show before/after."""
    from peftkit.demo import TASKS
    from peftkit.demo import demo as run_demo

    if task not in TASKS:
        raise RecipeError(f"--task {task!r}: choose one of {', '.join(TASKS)}")
    target = _path(output, "--output")
    _report(run_demo(task, target, overwrite), target)


@app.command()
def merge(
    adapter: Annotated[str, typer.Argument(help="The adapter folder (OUTPUT/adapter).")],
    output: Annotated[str, typer.Option(help="Folder for the merged model.")],
    base: Annotated[str | None, typer.Option(help="Base model (default: the adapter's).")] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an earlier peftkit output in --output.")
    ] = False,
    push_to_hub: PushToHub = None,
) -> None:
    """Merge ADAPTER into its base model for inference without adapter overhead."""
    from peftkit.run.merging import merge as merge_adapter

    chosen = None if base is None else str(_path(base, "--base"))
    written = merge_adapter(
        _path(adapter, "ADAPTER"), _path(output, "--output"), chosen, overwrite, push_to_hub
    )
    typer.echo(f"merged model written to {written}")
    if push_to_hub is not None:
        typer.echo(f"pushed to {push_to_hub}")


AdapterArg = Annotated[str, typer.Argument(help="The adapter folder (OUTPUT/adapter).")]
AdapterRecipe = Annotated[
    str | None,
    typer.Option(
        "--recipe",
        help="The recipe it trained with (default: the recipe.yaml peftkit train wrote with it).",
    ),
]


@app.command("evaluate")
def evaluate_command(
    adapter: AdapterArg,
    data: Annotated[str, typer.Option("--data", help="Evaluation data (as --data of train).")],
    recipe: AdapterRecipe = None,
    as_json: JsonFlag = False,
) -> None:
    """Score ADAPTER on --data without training: its base model, then with the adapter (loss,
    perplexity; for json-output the JSON and schema rates and the content scores)."""
    from peftkit.run.adapters import evaluate_adapter

    chosen = None if recipe is None else str(_path(recipe, "--recipe"))
    found = evaluate_adapter(_path(adapter, "ADAPTER"), _path(data, "--data"), chosen)
    if as_json:
        typer.echo(json.dumps(found, indent=2, default=str))
    else:
        from peftkit.run.report import print_evaluation

        print_evaluation(found)


@app.command()
def generate(
    adapter: AdapterArg,
    prompt: Annotated[str, typer.Argument(help="The prompt, in quotes.")],
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="Tokens to generate at most.")
    ] = 256,
    recipe: AdapterRecipe = None,
) -> None:
    """Answer PROMPT with ADAPTER on its base model (greedy), through the chat template when it
    trained on chat data."""
    from peftkit.run.adapters import generate as answer

    chosen = None if recipe is None else str(_path(recipe, "--recipe"))
    typer.echo(answer(_path(adapter, "ADAPTER"), prompt, max_new_tokens, chosen))


def _path(value: str, option: str) -> Path:
    """A path as typed: never empty (an unset shell variable gives ''), with ~ expanded."""
    if not value.strip():
        raise RecipeError(f"{option}: empty (an unset shell variable?). Fix: give {option} a path.")
    return Path(value).expanduser()


def _check_repeated_options(args: list[str]) -> None:
    """Refuse an option given twice with different values: the parser would keep the last
    without a word (``--data a.jsonl --data b.jsonl`` trained on b alone)."""
    command = typer.main.get_command(app)
    chosen = getattr(command, "commands", {}).get(args[0]) if args else None
    flags = {
        name
        for param in getattr(chosen, "params", [])
        if getattr(param, "is_flag", False)
        for name in (*param.opts, *param.secondary_opts)
    }
    seen: dict[str, str] = {}
    for index, arg in enumerate(args):
        if arg == "--":
            break
        name, sep, value = arg.partition("=")
        if not name.startswith("--"):
            continue
        taken = value if sep else "" if name in flags else " ".join(args[index + 1 : index + 2])
        given = f"{name} {taken}".strip()
        if name in seen and seen[name] != given:
            fix = (
                "peftkit trains on one file: join them into one (cat a.jsonl b.jsonl > "
                "all.jsonl) and pass --data all.jsonl"
                if name in ("--data", "--eval-data")
                else f"keep one {name}"
            )
            raise RecipeError(
                f"{name} is given twice ({seen[name]}, {given}); peftkit does not pick one. "
                f"Fix: {fix}."
            )
        seen[name] = given


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
    """Print peftkit's warnings as one plain line each; others the usual way."""
    if issubclass(category, PeftkitWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main() -> None:
    """Console-script entry point: one message and exit 2 for user errors, 130 for Ctrl-C.
    With ``--json``, an error is also a JSON object on stdout, ``{"error": {...}}``, so that a
    script reading stdout always has something to parse."""
    args = sys.argv[1:]
    debug = DEBUG_FLAG in args or os.environ.get("PEFTKIT_DEBUG") == "1"
    if VERBOSE_FLAG not in args:
        quiet()
    args = [a for a in args if a not in (DEBUG_FLAG, VERBOSE_FLAG)] or ["--help"]
    warnings.showwarning = _show_warning
    as_json = _takes_json(args)
    try:
        _check_repeated_options(args)
        code = app(args=args, standalone_mode=False)
    except USER_ERRORS as error:
        found = problems_of(error) if as_json else None
        _fail(f"error: {describe(error)}", EXIT_USER_ERROR, debug, found)
    except typer.TyperException as error:  # a bad option or argument, found by the parser
        context = getattr(error, "ctx", None)
        hint = "" if context is None else f"\n{context.get_usage()}"
        found = [{"message": error.format_message()}] if as_json else None
        _fail(f"error: {error.format_message()}{hint}", EXIT_USER_ERROR, debug, found)
    except (KeyboardInterrupt, typer.Abort):
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:  # typer turns Ctrl-C into a silent return of 130
        found = [{"message": "interrupted"}] if as_json else None
        _fail("interrupted (Ctrl-C)", EXIT_INTERRUPTED, debug, found)
    sys.exit(code if isinstance(code, int) else 0)


def _takes_json(args: list[str]) -> bool:
    """Whether the command line asks a command that has ``--json`` for JSON."""
    given = args[: args.index("--")] if "--" in args else args
    if JSON_FLAG not in given:
        return False
    command = getattr(typer.main.get_command(app), "commands", {}).get(args[0])
    return any(JSON_FLAG in getattr(param, "opts", ()) for param in getattr(command, "params", []))


def _fail(
    message: str, code: int, debug: bool, problems: list[dict[str, Any]] | None = None
) -> None:
    """Print ``message`` (and under ``--json``, the error object with ``problems`` on stdout)
    and exit with ``code``."""
    if debug and sys.exc_info()[0] is not None:
        traceback.print_exc()
    if problems is not None:
        summary = message.removeprefix("error: ").split("\nUsage:")[0]
        found = {"message": summary, "exit_code": code, "problems": problems}
        print(json.dumps({"error": found}, indent=2, default=str))
    print(message, file=sys.stderr)
    sys.exit(code)
