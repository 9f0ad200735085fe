"""`adder-train`: a recipe, a few common overrides, every other setting by name; then adder.train.train.

As whisper's CLI does, the command pops its own options and passes the rest to the
library as keywords: a setting is declared once, as a field of adder.train.recipe.Recipe
with its help and bounds, and given here as ``--set name=value`` or ``--name value``.
"""

from __future__ import annotations

import difflib
import shlex
import sys
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from adder.commands.common import fail, require_training_stack
from adder.train.device import BACKENDS
from adder.train.distributed import PEER_TIMEOUT, Cluster, cluster_problem
from adder.train.derive import derive, derived_changes, estimate, matches_domain
from adder.train.recipe import DEFAULT_RECIPE, Recipe, parse_number, typed
from adder.train.recipe_files import load_recipe, recipe_names

COMMON = ("terms", "largest", "ops", "brackets", "arch", "seed")  # settings with a flag of their own
SETTINGS_HELP = "adder-train --list-settings lists every setting"

train_app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": ["-h", "--help"]},
)


def about(name: str) -> str:
    """A common flag's help: the field's own, and the default recipe's value."""
    f = Recipe.field(name)
    value = f.default
    shown = ("on" if value else "off") if isinstance(value, bool) else value
    return f"{f.metadata['help']} [default recipe: {shown}]"


@train_app.command()
def train(
    ctx: typer.Context,
    recipe: Annotated[
        str,
        typer.Option(
            help=f"A shipped recipe ({', '.join(recipe_names())}) or a recipe file (.toml, or a model's .json "
            "record): every setting of a run. The options below override it."
        ),
    ] = DEFAULT_RECIPE,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="The model to write (.keras); its record .json and curves .png go beside it."),
    ] = Path("model.keras"),
    terms: Annotated[str | None, typer.Option(help=about("terms"), show_default=False)] = None,
    largest: Annotated[str | None, typer.Option(help=about("largest"), show_default=False)] = None,
    ops: Annotated[str | None, typer.Option(help=about("ops"), show_default=False)] = None,
    brackets: Annotated[bool | None, typer.Option(help=about("brackets"), show_default=False)] = None,
    arch: Annotated[str | None, typer.Option(help=about("arch"), show_default=False)] = None,
    seed: Annotated[str | None, typer.Option(help=about("seed"), show_default=False)] = None,
    epochs: Annotated[
        str | None,
        typer.Option(
            help="Train at most N epochs in all, then write the model and say what it reached, exact or not (exit 0).",
            show_default=False,
        ),
    ] = None,
    minutes: Annotated[
        str | None,
        typer.Option(
            help="Train at most this many minutes, checks included; a budget like --epochs.",
            show_default=False,
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help=f"Any setting as NAME=VALUE, e.g. --set samples=20000 (or --samples 20000); {SETTINGS_HELP}.",
            show_default=False,
        ),
    ] = None,
    list_settings: Annotated[
        bool, typer.Option("--list-settings", help="Print every setting with its default and help, and exit.")
    ] = False,
    show_recipe: Annotated[
        bool,
        typer.Option(
            "--show-recipe",
            help="Print the resolved recipe as a TOML file and exit; training from that file is the same run.",
        ),
    ] = False,
    init: Annotated[
        Path | None, typer.Option(help="Start from this trained .keras model (same domain): fine-tuning.")
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            help="Keras backend: auto (one that sees a GPU, JAX first; else TensorFlow if installed; else JAX), tensorflow, jax or torch."
        ),
    ] = "auto",
    devices: Annotated[
        str | None,
        typer.Option(
            help="Local devices to train on, data-parallel (JAX): a number, or 'all'. [default: 1]", show_default=False
        ),
    ] = None,
    num_processes: Annotated[
        str,
        typer.Option(
            envvar="ADDER_NUM_PROCESSES",
            help="Train as one of this many processes with JAX (docs/scale.md); only process 0 writes.",
            rich_help_panel="Several processes",
        ),
    ] = "1",
    process_id: Annotated[
        str,
        typer.Option(
            envvar="ADDER_PROCESS_ID", help="This process's number, from 0.", rich_help_panel="Several processes"
        ),
    ] = "0",
    coordinator: Annotated[
        str,
        typer.Option(
            envvar="ADDER_COORDINATOR",
            help="HOST:PORT of process 0.",
            show_default=False,
            rich_help_panel="Several processes",
        ),
    ] = "",
    peer_timeout: Annotated[
        str, typer.Option(help="Seconds to wait for the other processes.", rich_help_panel="Several processes")
    ] = str(PEER_TIMEOUT),
) -> None:
    """Train the seq2seq adder until every query of its domain is right, and write it to --out.

    With no options, trains the shipped default's recipe. Checkpoints after every epoch
    beside --out; rerunning the same command after a crash resumes from it. Exits 0 when
    exact (or when a budget given with --epochs/--minutes is spent), 1 when the recipe's
    own budget is spent with wrong answers left, 2 for bad options.
    """
    if list_settings:
        typer.echo(settings_table())
        raise typer.Exit(0)
    try:
        name, base = load_recipe(recipe)
        overrides = parse_settings([*sum((["--set", s] for s in set_ or []), []), *ctx.args])
        common = {"terms": terms, "largest": largest, "ops": ops, "brackets": brackets, "arch": arch, "seed": seed}
        overrides |= {k: typed(Recipe.field(k), v, f"--{k}") for k, v in common.items() if v is not None}
        plan = base.with_overrides(**overrides)
        derived = ""
        if ctx.get_parameter_source("recipe").name == "DEFAULT" and not matches_domain(plan, base):
            name, base, derived = recipe_for_domain(plan)
            plan = base.with_overrides(**overrides)
        budget = {}
        if epochs is not None:
            budget["--epochs"] = n = parse_number(epochs, int, "--epochs")
            if n < 1:
                raise ValueError(f"--epochs must be at least 1, got {n}")
            plan = plan.with_overrides(max_epochs=n, cycle_epochs=min(plan.cycle_epochs, n))
        if minutes is not None:
            budget["--minutes"] = m = parse_number(minutes, float, "--minutes")
            if not m > 0:
                raise ValueError(f"--minutes must be above 0, got {m:g}")
            plan = plan.with_overrides(max_minutes=m)
        cluster = Cluster(*(parse_number(v, int, flag) for v, flag in (
            (num_processes, "--num-processes"), (process_id, "--process-id"))), coordinator,
            parse_number(peer_timeout, int, "--peer-timeout"))  # fmt: skip
    except ValueError as exc:
        raise fail(str(exc)) from None
    problems = plan.problems()
    if problems:
        raise fail(problems[0] + f" ({SETTINGS_HELP})")
    if show_recipe:
        typer.echo(plan.to_toml(name), nl=False)
        raise typer.Exit(0)
    check_run_options(out, init, backend, devices, cluster)
    require_training_stack("jax" if cluster.joined else backend)
    if cluster.joined:
        from adder.commands.processes import join_runtime, stand_by

        stand_by(cluster)
        join_runtime(cluster)
    command = rebuild_command(name, overrides, budget, out, init)
    device_count = None if devices == "all" or cluster.joined else int(devices or 1)

    def work() -> None:
        from adder.eval.files import Busy, WriteError, exclusive
        from adder.train.run import TrainError, train

        try:
            with exclusive(out, "adder-train") if cluster.writer else nullcontext():
                trained = train(
                    plan, out, name=name, command=command, init=init, device_count=device_count,
                    cluster=cluster, log=typer.echo, to_onnx=onnx_converter(), keep_checkpoint=not budget,
                    about=f"{derived}; {estimate(plan)}" if derived else "",
                )  # fmt: skip
        except (Busy, WriteError, TrainError) as exc:
            raise fail(str(exc)) from None
        if trained.exact:
            return
        if budget:
            typer.echo(f"{out}: {trained.reason}; written as it is (a budget was given)")
            return
        if plan.layout == "pairs":  # minutes from scratch: no checkpoint is kept
            typer.echo(f"error: {trained.reason}; {out} is written as it is, unproven", err=True)
            raise typer.Exit(1)
        typer.echo(
            f"error: {trained.reason}; the checkpoint {out}.ckpt is kept: rerun the same command with "
            "--set max_epochs=N (larger) or --set max_minutes=M to go on from it",
            err=True,
        )
        raise typer.Exit(1)

    if cluster.joined:
        from adder.commands.processes import finish_together

        finish_together(cluster, work)
    work()


def recipe_for_domain(plan: Recipe) -> tuple[str, Recipe, str]:
    """A domain given without --recipe: the shipped recipe for exactly that domain, or one derived
    from it (adder.train.derive); the name it goes by, the recipe, and a line saying which."""
    for shipped in recipe_names():
        recipe = load_recipe(shipped)[1]
        if matches_domain(plan, recipe):
            return shipped, recipe, f"the domain of recipe {shipped}: training that recipe"
    recipe = derive(plan)
    return "", recipe, f"a recipe derived from the domain: {derived_changes(recipe)}"


def check_run_options(out: Path, init: Path | None, backend: str, devices: str | None, cluster: Cluster) -> None:
    """Everything a run reads or writes, checked before the first epoch, not after it."""
    import re

    checks = [
        (backend in BACKENDS, f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}"),
        (
            devices is None or devices == "all" or (re.fullmatch(r"[0-9]{1,4}", devices) and int(devices) >= 1),
            f"--devices takes a number or 'all', got {devices!r}",
        ),
        (
            not cluster.joined or devices is None,
            "--devices counts one process's devices; with --num-processes every device of every process trains",
        ),
        (out.suffix == ".keras", f"--out must end in .keras, got {out}"),
        (out.parent.is_dir(), f"--out folder {out.parent} does not exist"),
        (not out.is_dir(), f"--out {out} is a folder; give a file name ending in .keras"),
        (init is None or init.is_file(), f"--init {init}: no such file"),
    ]
    for ok, message in checks:
        if not ok:
            raise fail(message)
    problem = cluster_problem(cluster, backend)
    if problem:
        raise fail(problem)
    from adder.eval.files import WriteError, check_writable

    try:
        if cluster.writer:
            check_writable(out.parent)  # now, not after the first epoch
    except WriteError as exc:
        raise fail(f"--out: {exc}") from None


def parse_settings(args: list[str]) -> dict:
    """``--set name=value``, ``--name value``, ``--name=value``, ``--flag`` and ``--no-flag``, typed
    from the recipe's fields; an unknown name is refused with the nearest known ones."""
    names = Recipe.field_names()
    found: dict = {}
    words = list(args)
    while words:
        word = words.pop(0)
        if word == "--set":
            if not words or "=" not in words[0]:
                raise ValueError("--set takes NAME=VALUE, e.g. --set samples=20000")
            key, _, value = words.pop(0).partition("=")
            key = key.strip().replace("-", "_")
        elif word.startswith("--") and len(word) > 2:
            key, eq, value = word[2:].partition("=")
            key = key.replace("-", "_")
            negated = key.startswith("no_") and key[3:] in names and isinstance(Recipe.field(key[3:]).default, bool)
            if negated:
                key, value = key[3:], "false"
            elif key in names and isinstance(Recipe.field(key).default, bool) and not eq:
                value = "true"
            elif key in names and not eq:
                if not words:
                    raise ValueError(f"--{key.replace('_', '-')} needs a value")
                value = words.pop(0)
        else:
            raise ValueError(f"unexpected argument {word!r} (queries are not trained on one by one; {SETTINGS_HELP})")
        if key not in names:
            near = difflib.get_close_matches(key, names, n=2)
            hint = f"; did you mean {' or '.join('--' + n.replace('_', '-') for n in near)}?" if near else ""
            raise ValueError(f"no such option or setting --{key.replace('_', '-')}{hint} ({SETTINGS_HELP})")
        found[key] = typed(Recipe.field(key), value, f"--{key.replace('_', '-')}")
    return found


def rebuild_command(name: str, overrides: dict, budget: dict, out: Path, init: Path | None) -> str:
    """The one command that rebuilds this model: the recipe, what overrode it (common settings
    as their flags, the rest as --set), any budget given, and --out."""
    words = ["adder-train", *(["--recipe", name] if name else [])]
    for key in Recipe.field_names():
        if key not in overrides:
            continue
        value = overrides[key]
        if key in COMMON and isinstance(value, bool):
            words.append(f"--{key}" if value else f"--no-{key}")
        elif key in COMMON:
            words += [f"--{key}", str(value)]
        else:
            shown = ("true" if value else "false") if isinstance(value, bool) else value
            words += ["--set", f"{key}={shown}"]
    for flag, value in budget.items():
        words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if init is not None:
        words += ["--init", str(init)]
    return shlex.join([*words, "--out", str(out)])


def settings_table() -> str:
    """Every recipe field: its name, default and help, by group; and the shipped recipes' values."""
    lines = [
        f"Every setting of a recipe; give one as --set NAME=VALUE or --NAME VALUE. Shipped recipes: {', '.join(recipe_names())}."
    ]
    group = None
    for f in fields(Recipe):
        if f.metadata["group"] != group:
            group = f.metadata["group"]
            lines.append(f"\n[{group}]")
        default = ("true" if f.default else "false") if isinstance(f.default, bool) else repr(f.default)
        lines.append(f"  {f.name} = {default}  ({type(f.default).__name__})\n      {f.metadata['help']}")
    return "\n".join(lines)


def onnx_converter():
    """adder.export's converter for fast checks through onnxruntime, where tf2onnx is installed."""
    import importlib.util

    if importlib.util.find_spec("tf2onnx") is None:
        return None
    from adder.export.convert import keras_to_onnx

    return lambda model, config: keras_to_onnx(model, config).SerializeToString()


def main() -> None:
    train_app(args=sys.argv[1:], prog_name="adder-train")
