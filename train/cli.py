"""`adder-train` and `adder-eval`: thin typer layers over train.fit and train.evaluate.

Nothing heavy is imported at module level, so `--help` and the message asking for
the `train` extra work without TensorFlow installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import shlex
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from adder.answer import printable
from adder.config import MAX_CONFIG_CHARS, ConfigError, ModelConfig
from adder.train.device import BACKENDS
from adder.train.distributed import PEER_TIMEOUT, Cluster, cluster_problem
from adder.train.recipes import DEFAULT_RECIPE, RECIPES, recipe_named

MAX_SEED = 2**32 - 1  # numpy's legacy seeding, which Keras uses, takes no more
MAX_SAMPLES = 100_000_000  # an epoch's queries are built in memory: about 30 GB at this many
MAX_CONFIRM = 1_000_000_000  # checked in blocks, not held: about 17 h of a 2-core CPU at this many
EXTRA_HINT = (
    "error: training needs the train extra; install it with: pip install '.[train]' "
    "(or '.[jax]' to train with JAX and no TensorFlow)"
)

train_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="markdown")
eval_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="markdown")
plot_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="markdown")


def fail(message: str) -> typer.Exit:
    """Print one error line (control characters in a path escaped, see adder.answer.printable); exit 2."""
    typer.echo(f"error: {printable(message)}", err=True)
    return typer.Exit(2)


def require_training_stack(backend: str = "auto") -> str:
    """Point Keras at a backend (before anything imports keras) and check it is installed.

    Returns the backend chosen. TensorFlow is needed only when it is the backend.
    """
    from adder.train.device import BACKEND_EXTRA, choose_backend, missing_for
    from adder.train.quiet import quiet_native_logs

    quiet_native_logs()  # before anything loads TensorFlow's native side
    chosen = choose_backend(backend)
    missing = missing_for(chosen)
    if missing:
        if chosen == "tensorflow" and backend == "auto":
            typer.echo(EXTRA_HINT, err=True)
        else:
            extra = BACKEND_EXTRA.get(chosen)
            install = f"pip install '.[{extra}]'" if extra else "pip install " + " ".join(missing)
            typer.echo(
                f"error: training with {chosen} needs {' and '.join(missing)}; install them with: {install}", err=True
            )
        raise typer.Exit(1)
    os.environ["KERAS_BACKEND"] = chosen
    return chosen


def parse_terms(text: str) -> tuple[int, int]:
    """'2' -> (2, 2); '2-4' -> (2, 4)."""
    low, _, high = text.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise fail(f"--terms takes a number or a range like 2-4, got {text!r}") from None


def option(field: str, help: str, *names: str, **kwargs):
    """A training option whose default is the recipe's (None here means: not given); --help
    shows the default recipe's value, which is what it means unset."""
    value = getattr(RECIPES[DEFAULT_RECIPE], field)
    shown = ("on" if value else "off") if isinstance(value, bool) else (value if value != "" else "''")
    return typer.Option(*names, help=f"{help} (default recipe: {shown})", show_default=False, **kwargs)


@train_app.command()
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the trained model (.keras).")] = Path(
        "model.keras"
    ),
    recipe: Annotated[
        str,
        typer.Option(
            help=f"A named recipe: the domain, layers and every setting of a shipped model ({', '.join(RECIPES)}). "
            "Every option below overrides it; unset, it takes the recipe's value."
        ),
    ] = DEFAULT_RECIPE,
    terms: Annotated[str | None, option("terms", "Number of terms per query: N, or a range MIN-MAX.")] = None,
    smallest: Annotated[int | None, option("smallest", "Smallest operand in the domain.")] = None,
    largest: Annotated[int | None, option("largest", "Largest operand in the domain.")] = None,
    ops: Annotated[str | None, option("ops", "Operators to learn, any of + - * (e.g. '+-').")] = None,
    brackets: Annotated[bool | None, option("brackets", "Also learn round brackets around any sub-expression.")] = None,
    arch: Annotated[
        str | None,
        option(
            "arch",
            "Layer sizes: 'seed' (the tutorial's 100/50 LSTMs), 'wide' (128/128), or ENCODER/DECODER "
            "LSTM units such as 64/64 (comma-separated for stacked layers: 64,64/64).",
        ),
    ] = None,
    epochs: Annotated[int | None, option("epochs", "Length of the first learning-rate cycle, in epochs.")] = None,
    samples: Annotated[int | None, option("samples", "Random queries drawn per epoch.")] = None,
    batch_size: Annotated[int | None, option("batch_size", "Queries per gradient step.")] = None,
    learning_rate: Annotated[
        float | None, option("learning_rate", "Adam's learning rate (the first cycle's peak).")
    ] = None,
    schedule: Annotated[
        str | None, option("schedule", "Learning rate within a cycle: 'cosine' (decays to 0) or 'constant'.")
    ] = None,
    reverse: Annotated[bool | None, option("reverse", "Feed the query to the encoder reversed.")] = None,
    reverse_output: Annotated[
        bool | None, option("reverse_output", "Have the decoder write the answer's last digit first, as carries flow.")
    ] = None,
    encoding: Annotated[
        str | None,
        option(
            "encoding",
            "'onehot' vectors, 'index' with an Embedding layer, or 'ordinal': one number per symbol whose "
            "order means something (digit d is d, scaled; operators and brackets after the digits).",
        ),
    ] = None,
    seed: Annotated[
        int | None, option("seed", "Seed for weights and data; same seed, same machine, same model.")
    ] = None,
    curriculum: Annotated[
        int | None,
        option(
            "curriculum",
            "With a range of --terms: epochs spent on each term count before the next is added "
            "(the fewest terms first); 0 draws the whole grammar from the start.",
        ),
    ] = None,
    small_operands: Annotated[
        float | None,
        option(
            "small_operands",
            "Share of operands drawn with a uniform digit count (so 7 is as likely as 70..99), "
            "which uniform draws starve.",
        ),
    ] = None,
    large_operands: Annotated[
        float | None,
        option(
            "large_operands",
            "Share of operands drawn as the domain's largest, so its largest answers (99+99+99) are seen.",
        ),
    ] = None,
    carry_chains: Annotated[
        float | None,
        option(
            "carry_chains",
            "Share of queries whose first two operands carry through a chain of a uniformly drawn length "
            "(uniform pairs rarely carry through more than a few digits).",
        ),
    ] = None,
    sparse_operands: Annotated[
        float | None,
        option(
            "sparse_operands",
            "Share of operands drawn with many zero digits, their count of nonzero digits uniform "
            "(uniform ten-digit operands almost never look like 5000000000).",
        ),
    ] = None,
    mine_margin: Annotated[
        float | None,
        option(
            "mine_margin",
            "In finishing cycles, replay queries drawn afresh every epoch whose answer's weakest digit "
            "wins by less than this probability margin, right or wrong (0 turns mining off).",
        ),
    ] = None,
    mine_sample: Annotated[
        int | None,
        option("mine_sample", "Queries drawn afresh every finishing epoch to mine for unsure answers."),
    ] = None,
    hold_rate: Annotated[
        float | None,
        option(
            "hold_rate",
            "Once a check has found the fixed suites clean, finishing cycles hold this constant learning "
            "rate instead of restarting (0: they restart).",
        ),
    ] = None,
    confirm_further: Annotated[
        int | None,
        option(
            "confirm_further",
            "Where fixed suites judge the domain: once they and 10,000,000 uniform pairs drawn afresh "
            "are clean, this many more pairs of the same draw, and a tenth as many summing to 9 over a run "
            "with no carry into it, must be clean too before the run stops exact; from then on mining also "
            "draws such runs.",
        ),
    ] = None,
    confirm_beyond: Annotated[
        int | None,
        option(
            "confirm_beyond",
            "Once a verdict's --confirm-further pairs and runs are clean too, a fiftieth as many pairs whose "
            "every digit is 9 with probability 1/2, then this many more pairs of the same draw and a tenth as "
            "many more runs, must be clean before the run stops exact; checked only then, so a run going on "
            "past a clean further check is the run that stopped there. From then on mining draws such pairs too.",
        ),
    ] = None,
    average_weights: Annotated[
        bool | None,
        option(
            "average_weights",
            "Once a run goes beyond (--confirm-beyond), its checks and mining judge, and it writes, the mean "
            "of its weights after each epoch since, while training goes on from its own weights.",
        ),
    ] = None,
    replay_share: Annotated[
        float | None,
        option(
            "replay_share", "Share of each epoch replayed from the queries checks found wrong (0 turns replay off)."
        ),
    ] = None,
    check_every: Annotated[
        int | None,
        option(
            "check_every",
            "Check the domain every N epochs (refilling the replay pool); 0 checks whenever the probe "
            "(10,000 queries drawn uniformly over the domain) is all right. Every cycle also ends with a check.",
        ),
    ] = None,
    term_mix: Annotated[
        str | None,
        option(
            "term_mix",
            "Draws per term count, fewest first, as weights like '1:9' (with --terms 2-3: 10% two-term "
            "queries); '' draws every count alike, whatever share of the domain it holds.",
        ),
    ] = None,
    check_sample: Annotated[
        int | None,
        option(
            "check_sample",
            "Make the checks look at this many queries drawn uniformly over the domain, not all of them; "
            "the whole domain is checked once a sample and every pooled query are right, and only that "
            "can end a run as exact. 0 checks every query.",
        ),
    ] = None,
    max_epochs: Annotated[
        int | None,
        option(
            "max_epochs",
            "Budget: epochs in all, over every cycle. A run that is not exact when it is spent exits 1, "
            "keeping its checkpoint: rerun with a larger budget to go on.",
        ),
    ] = None,
    max_minutes: Annotated[
        float | None,
        option("max_minutes", "Budget: minutes of training and checks (over resumes too); 0 sets no limit."),
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option(help="Start from this trained .keras model (same domain) instead of fresh weights: fine-tuning."),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            help="Keras backend: auto (one that sees a GPU, JAX first; else TensorFlow if installed; else JAX), "
            "tensorflow, jax or torch."
        ),
    ] = "auto",
    devices: Annotated[
        str | None,
        typer.Option(
            help="Local devices to train on, data-parallel (keras.distribution.DataParallel, JAX backend): "
            "a number, or 'all'. The batch is split across them. [default: 1; with --num-processes: every "
            "device of every process]",
            show_default=False,
        ),
    ] = None,
    coordinator: Annotated[
        str,
        typer.Option(
            envvar="ADDER_COORDINATOR",
            help="With --num-processes: HOST:PORT of process 0, where JAX's distributed runtime coordinates "
            "the processes (process 0 listens on PORT).",
            show_default=False,
        ),
    ] = "",
    num_processes: Annotated[
        int,
        typer.Option(
            envvar="ADDER_NUM_PROCESSES",
            help="Train as one of this many processes (one per host, or several on one), data-parallel over "
            "every device of every process with JAX (--backend jax). Start each with the same options and its "
            "own --process-id; only process 0 writes files, and --out must be in a folder all of them read.",
        ),
    ] = 1,
    process_id: Annotated[
        int,
        typer.Option(envvar="ADDER_PROCESS_ID", help="This process's number, from 0 to --num-processes - 1."),
    ] = 0,
    peer_timeout: Annotated[
        int,
        typer.Option(
            help="With --num-processes: seconds a process waits for the others to join, and for one that "
            "stops answering, before it exits with an error."
        ),
    ] = PEER_TIMEOUT,
    evaluate: Annotated[bool, typer.Option(help="Measure exact-match over the domain when training ends.")] = True,
    stop_when_exact: Annotated[
        bool,
        typer.Option(
            help="Drive the run to an exact model: stop once every query is right; a cycle that ends "
            "with wrong answers is followed by another, until the budget is spent. Off: one cycle."
        ),
    ] = True,
) -> None:
    """Train the seq2seq adder and save it (with its config and record inside) to --out.

    With no options, trains the shipped default's recipe. Checkpoints after every
    epoch beside --out; rerunning the same command after a crash resumes from the last
    completed epoch. Exits 0 exact, 1 when the budget is spent with wrong answers left.
    """
    try:
        base = recipe_named(recipe)
    except ValueError as exc:
        raise fail(str(exc)) from None
    given = {
        "terms": terms, "smallest": smallest, "largest": largest, "ops": ops, "brackets": brackets,
        "reverse": reverse, "reverse_output": reverse_output, "encoding": encoding, "arch": arch,
        "epochs": epochs, "samples": samples, "batch_size": batch_size, "learning_rate": learning_rate,
        "schedule": schedule, "curriculum": curriculum, "small_operands": small_operands,
        "large_operands": large_operands, "carry_chains": carry_chains,
        "sparse_operands": sparse_operands, "mine_margin": mine_margin, "mine_sample": mine_sample,
        "hold_rate": hold_rate, "confirm_further": confirm_further,
        "confirm_beyond": confirm_beyond, "average_weights": average_weights, "replay_share": replay_share,
        "check_every": check_every, "term_mix": term_mix,
        "check_sample": check_sample, "max_epochs": max_epochs, "max_minutes": max_minutes, "seed": seed,
    }  # fmt: skip
    plan = base.with_overrides(**given)
    min_terms, max_terms = parse_terms(plan.terms)
    term_weights = parse_term_mix(plan.term_mix, max_terms - min_terms + 1)
    checks = [
        (plan.check_sample >= 0, f"--check-sample must be 0 or more queries, got {plan.check_sample}"),
        (
            plan.check_sample <= MAX_SAMPLES,
            f"--check-sample must be at most {MAX_SAMPLES:,} queries, got {plan.check_sample:,}",
        ),
        (plan.epochs >= 1, f"--epochs must be at least 1, got {plan.epochs}"),
        (plan.samples >= 1, f"--samples must be at least 1, got {plan.samples}"),
        (plan.samples <= MAX_SAMPLES, f"--samples must be at most {MAX_SAMPLES:,} an epoch, got {plan.samples:,}"),
        (plan.batch_size >= 1, f"--batch-size must be at least 1, got {plan.batch_size}"),
        (plan.seed >= 0, f"--seed must be a non-negative integer, got {plan.seed}"),
        (
            plan.seed <= MAX_SEED,
            f"--seed must be at most {MAX_SEED:,} (what the random generators take), got {plan.seed:,}",
        ),
        (plan.curriculum >= 0, f"--curriculum must be 0 or more epochs, got {plan.curriculum}"),
        (0 <= plan.small_operands <= 1, f"--small-operands must be between 0 and 1, got {plan.small_operands}"),
        (0 <= plan.large_operands <= 1, f"--large-operands must be between 0 and 1, got {plan.large_operands}"),
        (0 <= plan.carry_chains <= 1, f"--carry-chains must be between 0 and 1, got {plan.carry_chains}"),
        (
            0 <= plan.sparse_operands <= 1,
            f"--sparse-operands must be between 0 and 1, got {plan.sparse_operands}",
        ),
        (0 <= plan.mine_margin < 1, f"--mine-margin must be at least 0 and below 1, got {plan.mine_margin}"),
        (plan.mine_sample >= 0, f"--mine-sample must be 0 or more queries, got {plan.mine_sample}"),
        (
            plan.mine_sample <= MAX_SAMPLES,
            f"--mine-sample must be at most {MAX_SAMPLES:,} queries, got {plan.mine_sample:,}",
        ),
        (
            not plan.mine_margin or plan.mine_sample,
            f"--mine-margin {plan.mine_margin:g} needs --mine-sample of 1 or more queries to mine",
        ),
        (
            0 <= plan.hold_rate < float("inf"),
            f"--hold-rate must be a finite learning rate, 0 or more, got {plan.hold_rate}",
        ),
        (plan.confirm_further >= 0, f"--confirm-further must be 0 or more pairs, got {plan.confirm_further}"),
        (
            plan.confirm_further <= MAX_CONFIRM,
            f"--confirm-further must be at most {MAX_CONFIRM:,} pairs, got {plan.confirm_further:,}",
        ),
        (plan.confirm_beyond >= 0, f"--confirm-beyond must be 0 or more pairs, got {plan.confirm_beyond}"),
        (
            plan.confirm_beyond <= MAX_CONFIRM,
            f"--confirm-beyond must be at most {MAX_CONFIRM:,} pairs, got {plan.confirm_beyond:,}",
        ),
        (0 <= plan.replay_share < 1, f"--replay-share must be at least 0 and below 1, got {plan.replay_share}"),
        (plan.check_every >= 0, f"--check-every must be 0 or more epochs, got {plan.check_every}"),
        (plan.max_epochs >= 0, f"--max-epochs must be 0 or more, got {plan.max_epochs}"),
        (
            0 <= plan.max_minutes < float("inf"),
            f"--max-minutes must be a finite number of minutes, 0 or more, got {plan.max_minutes}",
        ),
        (backend in BACKENDS, f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}"),
        (
            devices is None or devices == "all" or (devices.isdigit() and int(devices) >= 1),
            f"--devices takes a number or 'all', got {devices!r}",
        ),
        (
            num_processes <= 1 or devices is None,
            "--devices counts one process's devices; with --num-processes every device of every process trains",
        ),
        (
            0 < plan.learning_rate < float("inf"),
            f"--learning-rate must be a finite number above 0, got {plan.learning_rate}",
        ),
        (
            plan.schedule in ("constant", "cosine"),
            f"--schedule must be 'constant' or 'cosine', got {plan.schedule!r}",
        ),
        (out.suffix == ".keras", f"--out must end in .keras, got {out}"),
        (out.parent.is_dir(), f"--out folder {out.parent} does not exist"),
        (not out.is_dir(), f"--out {out} is a folder; give a file name ending in .keras"),
    ]
    for ok, message in checks:
        if not ok:
            raise fail(message)
    cluster = Cluster(num_processes, process_id, coordinator, peer_timeout)
    problem = cluster_problem(cluster, backend)
    if problem:
        raise fail(problem)
    try:
        config = ModelConfig(
            min_terms=min_terms,
            max_terms=max_terms,
            min_operand=plan.smallest,
            max_operand=plan.largest,
            operators=plan.ops,
            brackets=plan.brackets,
            reverse_input=plan.reverse,
            reverse_output=plan.reverse_output,
            encoding=plan.encoding,
        )
    except ConfigError as exc:
        raise fail(str(exc)) from None
    from adder.train import suites
    from adder.train.evaluate import EXHAUSTIVE_LIMIT

    judged_by_suites = config.domain_size > EXHAUSTIVE_LIMIT and suites.applies(config)
    given_later = (
        ("--mine-margin", mine_margin),
        ("--hold-rate", hold_rate),
        ("--confirm-further", confirm_further),
        ("--confirm-beyond", confirm_beyond),
        ("--average-weights", average_weights),
    )
    for flag, value in given_later:  # given, not the recipe's
        if value and not judged_by_suites:
            raise fail(
                f"{flag} acts only once fixed suites judge the domain (two terms, +, more than "
                f"{EXHAUSTIVE_LIMIT:,} queries); this one's {config.domain_size:,} are checked in full"
            )
    if plan.confirm_beyond and (not plan.confirm_further or plan.confirm_further % suites.FURTHER_STEP):
        raise fail(
            f"--confirm-beyond continues the draw of --confirm-further, which must then be a positive multiple of "
            f"{suites.FURTHER_STEP:,} pairs, got {plan.confirm_further:,}"
        )
    if plan.average_weights and not plan.confirm_beyond:
        raise fail(
            "--average-weights acts only once a run goes beyond, so it needs --confirm-beyond too "
            "(or --no-average-weights)"
        )
    if init is not None and not init.is_file():
        raise fail(f"--init {init}: no such file")
    from adder.train.archive import WriteError, check_writable

    try:
        if cluster.writer:
            check_writable(out.parent)  # now, not after the first epoch
    except WriteError as exc:
        raise fail(f"--out: {exc}") from None
    from adder.train.recipes import parse_arch

    try:
        parse_arch(plan.arch)
    except ValueError as exc:
        raise fail(str(exc)) from None
    require_training_stack("jax" if cluster.joined else backend)
    if cluster.joined:
        stand_by(cluster)
        join_runtime(cluster)
    from adder.train.fit import TrainSettings

    settings = TrainSettings(
        epochs=plan.epochs,
        samples=plan.samples,
        batch_size=plan.batch_size,
        learning_rate=plan.learning_rate,
        schedule=plan.schedule,
        seed=plan.seed,
        curriculum=plan.curriculum,
        small_operands=plan.small_operands,
        large_operands=plan.large_operands,
        carry_chains=plan.carry_chains,
        sparse_operands=plan.sparse_operands,
        mine_margin=plan.mine_margin,
        mine_sample=plan.mine_sample,
        hold_rate=plan.hold_rate,
        confirm_further=plan.confirm_further,
        confirm_beyond=plan.confirm_beyond,
        average_weights=plan.average_weights,
        replay_share=plan.replay_share,
        check_every=plan.check_every,
        term_weights=term_weights,
        check_sample=plan.check_sample,
        max_epochs=plan.max_epochs,
        max_minutes=plan.max_minutes,
    )
    command = rebuild_command(recipe, given, out, init)
    from adder.train.archive import Busy, exclusive

    device_count = None if devices == "all" or cluster.joined else int(devices or 1)

    def work() -> None:
        try:
            with exclusive(out, "adder-train") if cluster.writer else nullcontext():
                exact = run_training(
                    config, plan.arch, out, settings, evaluate, stop_when_exact, init, device_count,
                    recipe={"name": recipe, **plan.to_dict()}, command=command, cluster=cluster,
                )  # fmt: skip
        except (Busy, WriteError) as exc:
            raise fail(str(exc)) from None
        if not exact:
            raise typer.Exit(1)

    if cluster.joined:
        finish_together(cluster, work)
    work()


def stand_by(cluster: Cluster) -> None:
    """Train in a child process; here, wait for it and say in one line why it ended if JAX's
    runtime ended it (it does so with SIGABRT when another process is gone)."""
    from adder.train.distributed import supervise

    ended = supervise()
    if ended is None:  # the child: train
        return
    code, by_runtime = ended
    if by_runtime:
        typer.echo(
            f"error: process {cluster.process_id} of {cluster.processes} was ended by JAX's distributed runtime: "
            f"another process is gone, or sent nothing for --peer-timeout {cluster.peer_timeout} s; "
            "rerun every process to resume from the checkpoint",
            err=True,
        )
        raise typer.Exit(3)
    if code > 128:
        who = f"process {cluster.process_id} of {cluster.processes}"
        typer.echo(f"error: {who} was killed (signal {code - 128})", err=True)
    raise typer.Exit(code)


def join_runtime(cluster: Cluster) -> None:
    """Join JAX's distributed runtime (before anything asks JAX for devices), or fail in one line."""
    from adder.train.distributed import join

    try:
        join(cluster)
    except Exception as exc:  # jaxlib raises its own runtime error types
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise fail(
            f"process {cluster.process_id} of {cluster.processes} could not join the others at "
            f"{cluster.coordinator} within {cluster.peer_timeout} s ({reason})"
        ) from None


def finish_together(cluster: Cluster, work) -> None:
    """Run ``work`` as one process of several, then wait for the others and leave.

    The wait lets process 0 write its files before anyone reports done. Leaving with
    os._exit skips the interpreter's teardown, where JAX's runtime crashed (SIGSEGV)
    after a run that had finished and written everything.
    """
    code = 0
    try:
        work()
    except typer.Exit as exc:
        code = exc.exit_code
    except KeyboardInterrupt:  # a normal exit would wait at JAX's shutdown barrier for the others
        typer.echo(f"error: process {cluster.process_id} of {cluster.processes} interrupted", err=True)
        sys.stderr.flush()
        os._exit(130)
    except Exception as exc:
        leave_runtime(cluster, exc)
    try:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("adder-train ends")
    except Exception as exc:
        leave_runtime(cluster, exc)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def leave_runtime(cluster: Cluster, exc: Exception) -> None:
    """End this process at once after a failure in a multi-process run.

    A normal exit would wait at JAX's shutdown barrier for processes that are gone or
    stuck in a collective with this one; os._exit leaves without waiting.
    """
    text = str(exc).strip()
    reason = text.splitlines()[0][:300] if text else type(exc).__name__
    lost = any(word in text for word in ("Gloo", "Connection reset", "UNAVAILABLE", "DEADLINE_EXCEEDED", "heartbeat"))
    if lost:
        message = f"process {cluster.process_id} of {cluster.processes} lost contact with another process ({reason})"
    else:
        import traceback

        traceback.print_exc()
        message = f"process {cluster.process_id} of {cluster.processes} failed: {reason}"
    rerun = "rerun every process to resume from the checkpoint"
    typer.echo(f"error: {message}; stopping this process too ({rerun})", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(3)


def rebuild_command(recipe: str, given: dict, out: Path, init: Path | None) -> str:
    """The one command that rebuilds this model: the recipe, what overrode it, and --out."""
    words = ["adder-train", "--recipe", recipe]
    for name, value in given.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        else:
            words += [flag, str(value)]
    if init is not None:
        words += ["--init", str(init)]
    return shlex.join([*words, "--out", str(out)])


def parse_term_mix(text: str, counts: int) -> tuple[float, ...]:
    """'1:9' -> (1.0, 9.0): one non-negative weight per term count of --terms, not all zero."""
    if not text:
        return ()
    try:
        weights = tuple(float(part) for part in text.split(":"))
    except ValueError:
        raise fail(f"--term-mix takes weights like '1:9', got {text!r}") from None
    if len(weights) != counts:
        raise fail(f"--term-mix needs {counts} weight(s), one per term count of --terms, got {text!r}")
    if any(not w >= 0 or w == float("inf") for w in weights) or not sum(weights) > 0:
        raise fail(f"--term-mix weights must be finite, non-negative and not all 0, got {text!r}")
    if not math.isfinite(sum(weights)):
        raise fail(f"--term-mix weights must add up to a finite number, got {text!r}; scale them down")
    return weights


def load_init(path: Path, config):
    """The model to fine-tune and what the record says of it; refused unless its domain is ours."""
    from adder.train.archive import ArchiveError, load_keras

    try:
        model, init_config = load_keras(path)
    except (ArchiveError, ConfigError) as exc:
        raise fail(str(exc)) from None
    if init_config != config:
        raise fail(
            f"--init {path} was trained on {init_config.describe()} ({init_config.encoding}); "
            f"this run is {config.describe()} ({config.encoding}): give the same domain options"
        )
    started_from = {
        "path": str(path),
        "sha256": file_sha256(path),
        "command": init_config.training.get("command"),
        "arch": str(init_config.training.get("arch", "unrecorded")),
        "layers": recorded_layers(init_config.training.get("layers")) or layers_of(model),
    }
    return model, started_from


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def recorded_layers(layers) -> dict | None:
    """A record's layer sizes, or None where a hand-edited record holds anything else
    (the sizes are then read off the model itself)."""
    if not isinstance(layers, dict) or not {"encoder", "decoder"} <= set(layers) <= {"encoder", "decoder", "embedding"}:
        return None
    sizes = (
        [*layers["encoder"], *layers["decoder"]]
        if all(isinstance(layers[k], list) for k in ("encoder", "decoder"))
        else []
    )
    embedding = layers.get("embedding", 0)
    whole = all(isinstance(n, int) and not isinstance(n, bool) for n in [*sizes, embedding])
    if not sizes or not whole or min(sizes) < 1 or embedding < 0:
        return None
    return layers


def layers_of(model) -> dict:
    """LSTM sizes read off a model whose record does not name them."""
    units = [layer.units for layer in model.layers if type(layer).__name__ == "LSTM"]
    return {"encoder": units[:1], "decoder": units[1:], "embedding": 0}


def run_training(
    config, arch_name, out, settings, evaluate, stop_when_exact, init=None, device_count=1, recipe=None, command="",
    cluster=Cluster(),
) -> bool:  # fmt: skip
    """Train, write the model, its record and curves (process 0 only); True when the model
    ends exact (or exactness was not asked for)."""
    from dataclasses import asdict, replace

    from adder.train.device import describe, use_devices, versions
    from adder.train.fit import Checkpoint, CheckpointError, fit, full_check
    from adder.train.model import Architecture, parse_arch

    try:
        devices = use_devices(device_count, cluster.joined)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if settings.batch_size % devices["count"]:
        raise fail(f"--batch-size {settings.batch_size} must split evenly over {devices['count']} devices")
    if settings.samples % settings.batch_size % devices["count"]:
        raise fail(
            f"--samples {settings.samples} leaves a last batch of {settings.samples % settings.batch_size} "
            f"that does not split evenly over {devices['count']} devices"
        )
    arch = parse_arch(arch_name)
    init_model, started_from = load_init(init, config) if init is not None else (None, None)
    if init_model is not None:  # the layers are the starting model's, whatever --arch says
        arch_name = started_from.pop("arch")
        arch = Architecture(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in started_from.pop("layers").items()}
        )
    budget = f"up to {settings.epoch_budget} epochs" if stop_when_exact else f"{settings.epochs} epochs"
    if stop_when_exact and settings.max_minutes:
        budget += f" or {settings.max_minutes:g} minutes"
    typer.echo(
        f"training with {describe(devices)}: {config.describe()}, arch {arch_name}, "
        f"{budget} x {settings.samples:,} samples"
        + (", until exact" if stop_when_exact else "")
        + (f", starting from {init}" if init is not None else "")
    )
    earlier = Checkpoint(out, {}).seconds()  # spent by the calls before this one, if it resumes
    started = time.perf_counter()
    try:
        model, history, outcome = fit(
            config, arch, settings, out, log=typer.echo, stop_when_exact=stop_when_exact, init=init_model,
            cluster=cluster,
        )  # fmt: skip
    except CheckpointError as exc:
        raise fail(str(exc)) from None
    train_seconds = time.perf_counter() - started
    record = {
        "command": command or shlex.join(["adder-train", *sys.argv[1:]]),
        "recipe": recipe or {},
        "arch": arch_name,
        "layers": arch.to_dict(),
        "parameters": int(model.count_params()),
        "settings": asdict(settings),
        "device": describe(devices),
        "backend": os.environ["KERAS_BACKEND"],
        "devices": devices,
        "versions": versions(),
        "train_seconds": round(earlier + train_seconds, 1),  # every call of a resumed run
        "call_seconds": round(train_seconds, 1),
        "history": history,
    }
    if started_from:
        record["init"] = started_from
    result = outcome.result
    if evaluate or (stop_when_exact and not outcome.exact):
        result = result or full_check(model, config)
        typer.echo(f"{out}: {result.summary()}")
        for example in result.first_wrong:
            typer.echo(f"  {example['query']} = {example['expected']}, model says {example['got']}")
        record["evaluation"] = result.to_dict()
    exact = outcome.exact or (result is not None and result.is_verdict and result.wrong == 0)
    record["exact"] = bool(exact)
    if cluster.writer:
        write_model(model, replace(config, training=record), out, arch_name)
        written = f"wrote {out}, {out.with_suffix('.json')} and {out.with_suffix('.png')}"
    else:
        written = f"process {cluster.process_id} of {cluster.processes} done"
    written += f" (trained in {train_seconds:.0f} s)" + ("" if cluster.writer else f"; process 0 writes {out}")
    if stop_when_exact and not exact:
        kept = Checkpoint(out, {})
        if cluster.writer and result is not None and result.is_verdict and kept.state_path.exists():
            # A rerun with a larger budget replays exactly what the final check found wrong.
            from adder.train.replay import ReplayPool

            ReplayPool(result.wrong_queries).save(kept.pool_path)
        typer.echo(written)
        wrong = f"{result.wrong:,} of {result.total:,} queries ({result.method}) still wrong" if result else "not exact"
        typer.echo(
            f"error: not exact when {outcome.reason}: {wrong}; the checkpoint {Checkpoint(out, {}).dir} is kept: "
            "rerun the same command with a larger --max-epochs or --max-minutes to go on from it",
            err=True,
        )
        return False
    if cluster.writer:
        Checkpoint(out, {}).remove()
    typer.echo(written)
    return True


def write_model(model, final, out: Path, arch_name: str) -> None:
    """The model with its record inside, the record beside it, and its curves."""
    from adder.train.archive import save_keras, write_atomic
    from adder.train.distributed import alone
    from adder.train.plot import draw_curves

    with alone():  # process 0 saves by itself
        save_keras(model, final, out)
    write_atomic(out.with_suffix(".json"), lambda tmp: tmp.write_text(final.to_json(indent=2) + "\n"))
    draw_curves(final.training, out.with_suffix(".png"), title=f"{out.name}: {final.describe()}, arch {arch_name}")


@eval_app.command()
def evaluate_models(
    models: Annotated[list[Path], typer.Argument(help="Models to evaluate: .keras (through Keras) or .onnx.")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the figures of the last model to this JSON file.")
    ] = None,
    progress: Annotated[
        bool, typer.Option(help="Show progress on stderr: done, rate, wrong so far, time left.")
    ] = True,
    uniform: Annotated[
        int,
        typer.Option(
            help="With the verification suites: pairs in the uniform suite (drawn with --uniform-seed).",
            min=0,
            max=100_000_000,
        ),
    ] = 10_000_000,
    uniform_seed: Annotated[
        int,
        typer.Option(
            help="With the verification suites: numpy seed of the uniform suite. Training's own checks use "
            "2026 and replay what they find wrong, so another seed gives pairs no run has seen.",
            min=0,
        ),
    ] = 2026,
    runs: Annotated[
        int,
        typer.Option(
            help="With the verification suites: also this many pairs summing to 9 over a run of digits with "
            "no carry into it (drawn with --uniform-seed), which uniform pairs almost never hold.",
            min=0,
            max=100_000_000,
        ),
    ] = 0,
    nines: Annotated[
        int,
        typer.Option(
            help="With the verification suites: also this many pairs whose every digit is 9 with probability "
            "1/2 (drawn with --uniform-seed): digit pairs summing to 18 and 9 side by side.",
            min=0,
            max=100_000_000,
        ),
    ] = 0,
) -> None:
    """Check every query of a model's domain (up to 50,000,000) and print what is wrong, overall
    and per slice.

    A two-term sum too large to enumerate (ten-digit operands: 10^20 queries) is checked
    on fixed suites instead: AdderBoard's 10,010 cases, --uniform pairs, every carry
    chain, every pair of repdigits, every pair with at most two nonzero digits each.
    Any other larger domain gets a 1,000,000-query sample drawn uniformly over its queries.
    An .onnx model is answered through the runtime's string API on every core, exactly
    as `adder -` answers; a .keras model through Keras.
    """
    check_eval_arguments(models, json_out)
    from adder.train import suites
    from adder.train.evaluate import EXHAUSTIVE_LIMIT, evaluate, write_json

    result = None
    for path in models:
        started = time.perf_counter()
        predict, config = predictor_for(path)
        if config.domain_size > EXHAUSTIVE_LIMIT and suites.applies(config):
            each = suites.evaluate_suites(
                predict, config, uniform, uniform_seed, progress=(lambda name: ProgressBar(name)) if progress else None
            )
            result = suites.combined(each)
            if runs:
                result = suites.confirmed_drawn(result, predict, config, uniform_seed, runs)
            if nines:
                result = suites.confirmed_drawn(result, predict, config, uniform_seed, nines, family="nines")
        else:
            result = evaluate(predict, config, progress=ProgressBar(path.name) if progress else None)
        seconds = time.perf_counter() - started
        typer.echo(f"{path}: {result.summary()} in {seconds:.1f} s")
        for example in result.first_wrong:
            typer.echo(f"  {example['query']} = {example['expected']}, model says {example['got']}")
        if json_out:
            write_json(result, json_out, {"model": str(path), "config": config.to_dict(), "seconds": seconds})
    if result and result.wrong:
        raise typer.Exit(1)


def check_eval_arguments(models: list[Path], json_out: Path | None) -> None:
    """Everything adder-eval reads or writes, checked before any model is evaluated: an hour's
    evaluation must not end in a refusal to write its figures."""
    for path in models:
        if path.is_dir():
            raise fail(f"{path} is a folder; give a .keras or .onnx model file")
        if not path.is_file():
            raise fail(f"{path}: no such file")
        if path.suffix == ".keras":
            from adder.train.archive import ArchiveError, read_keras_config

            try:
                read_keras_config(path)
            except (ArchiveError, ConfigError) as exc:
                raise fail(str(exc)) from None
    if json_out is None:
        return
    if json_out.is_dir():
        raise fail(f"--json {json_out} is a folder; give a file name such as figures.json")
    if not json_out.parent.is_dir():
        raise fail(f"--json folder {json_out.parent} does not exist")
    from adder.train.archive import WriteError, check_writable

    try:
        check_writable(json_out.parent)
    except WriteError as exc:
        raise fail(f"--json: {exc}") from None


class ProgressBar:
    """One stderr line redrawn at most twice a second: done, rate, wrong so far, time left."""

    def __init__(self, label: str) -> None:
        self.label, self.started, self.shown = label, time.perf_counter(), 0.0

    def __call__(self, done: int, total: int, wrong: int) -> None:
        now = time.perf_counter()
        if now - self.shown < 0.5 and done < total:
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-9)
        left = (total - done) / rate if rate else 0
        width = 24
        filled = int(width * done / total) if total else width
        line = (
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} "
            f"{rate:,.0f} q/s, {wrong:,} wrong, {int(left) // 60}:{int(left) % 60:02d} left "
        )
        sys.stderr.write(line + ("\n" if done >= total else ""))
        sys.stderr.flush()


def predictor_for(path: Path):
    if path.suffix == ".keras":
        require_training_stack()
        from adder.train.archive import ArchiveError, load_keras

        try:
            model, config = load_keras(path)
        except (ArchiveError, ConfigError) as exc:
            raise fail(str(exc)) from None
        from adder.train.fit import keras_predictor

        return keras_predictor(model, config), config
    from adder import Adder, ModelError

    try:
        adder = Adder(path)
    except ModelError as exc:
        raise fail(str(exc)) from None
    return onnx_predictor(adder), adder.config


def onnx_predictor(adder):
    """A block predictor answering through the public string API and its batch path, as `adder -` does."""
    import numpy as np

    from adder.grammar import shape_text

    def predict(shape, terms):
        template = shape_text(shape)
        results = list(adder.results(template.format(*row) for row in terms.tolist()))
        valid = np.array([isinstance(r, int) for r in results])
        return np.array([r if isinstance(r, int) else 0 for r in results], dtype=adder.codec.answer_dtype), valid

    predict.takes_blocks = True
    return predict


@plot_app.command()
def plot_record(
    record: Annotated[
        Path, typer.Argument(help="A training record: model.json, or a .keras / .onnx model carrying one.")
    ],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="PNG to write (default: beside RECORD).")] = None,
) -> None:
    """Redraw the training curves (loss, probe exact-match, full checks, replay pool) from a record."""
    if importlib.util.find_spec("matplotlib") is None:
        typer.echo(
            "error: drawing curves needs matplotlib; install it with: pip install '.[train]' (or '.[jax]')", err=True
        )
        raise typer.Exit(1)
    target = out or record.with_suffix(".png")
    checks = [
        (not target.is_dir(), f"--out {target} is a folder; give a file name ending in .png"),
        (target.suffix == ".png", f"--out must end in .png, got {target}"),
        (target.parent.is_dir(), f"--out folder {target.parent} does not exist"),
    ]
    for ok, message in checks:
        if not ok:
            raise fail(message)
    from adder.train.archive import WriteError, check_writable
    from adder.train.plot import draw_curves, record_problem

    try:
        config = read_record(record)
        check_writable(target.parent)
    except WriteError as exc:
        raise fail(f"--out: {exc}") from None
    except (OSError, ValueError) as exc:
        raise fail(str(exc)) from None
    problem = record_problem(config.training)
    if problem:
        raise fail(f"{record}: {problem}")
    try:
        draw_curves(config.training, target, title=f"{record.name}: {config.describe()}")
    except WriteError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"wrote {target}")


def read_record(path: Path) -> ModelConfig:
    """The config and training record in model.json, a .keras or an .onnx file; at most
    MAX_CONFIG_CHARS of a record are ever read, whatever its size."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give model.json or a .keras / .onnx model")
    if path.suffix == ".keras":
        from adder.train.archive import read_keras_config

        return read_keras_config(path)
    if path.suffix == ".onnx":
        from adder import Adder

        return Adder(path).config
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    with open(path, encoding="utf-8", errors="surrogateescape") as file:
        text = file.read(MAX_CONFIG_CHARS + 1)
    if len(text) > MAX_CONFIG_CHARS:
        raise ValueError(f"{path}: longer than {MAX_CONFIG_CHARS:,} characters; refused")
    try:
        return ModelConfig.from_json(text)
    except ConfigError as exc:
        raise ValueError(f"{path}: {exc}") from None


def plot_main() -> None:
    plot_app()


def main() -> None:
    train_app()


def eval_main() -> None:
    eval_app()
