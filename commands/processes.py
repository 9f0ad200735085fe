"""Several training processes as one run: a supervisor per process, JAX's runtime joined and left."""

from __future__ import annotations

import os
import sys

import typer

from adder.commands.common import fail
from adder.train.distributed import Cluster  # noqa: F401 (the type these take)


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
