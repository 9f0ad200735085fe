"""Training as one of several processes, on one machine or many: JAX's distributed runtime.

Every process runs the same loop on the same seeded data and keeps the same replicated
weights; each feeds its own slice of every global batch, and Keras's DataParallel
averages the gradients over all of them, so the global batch is a one-process run's.
Predictions are split the same way and gathered, so every process sees the same
answers and takes the same decisions. Only process 0 writes files.

A process that loses a peer mid-run gets an error from the next collective (gloo
reports the closed connection at once), which the CLI turns into one line. JAX's
runtime itself ends a process, with SIGABRT and a C++ stack trace, the moment it finds
that process 0's coordinator is gone, or that a peer has sent no heartbeat for
``peer_timeout`` seconds; ``supervise`` stands by in a parent process to say so in one line.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PEER_TIMEOUT = 60  # seconds: how long a process waits for the others to join, or for a silent one
FATAL_LINE = re.compile(rb"^F\d{4} [\d:. ]+\s+\d+ [\w.\-/]+:\d+\] ")  # absl's prefix, severity F


@dataclass(frozen=True)
class Cluster:
    """Which process this is, of how many, and where process 0 coordinates them."""

    processes: int = 1
    process_id: int = 0
    coordinator: str = ""  # host:port of process 0's coordination service
    peer_timeout: int = PEER_TIMEOUT

    @property
    def joined(self) -> bool:
        return self.processes > 1

    @property
    def writer(self) -> bool:
        """Only process 0 writes the model, the record, the picture and checkpoints."""
        return self.process_id == 0

    def rows(self, count: int) -> slice:
        """This process's share of a batch of ``count`` rows: one contiguous slice of equal size."""
        share = count // self.processes
        return slice(self.process_id * share, (self.process_id + 1) * share)


def cluster_problem(cluster: Cluster, backend: str) -> str | None:
    """What is wrong with these options, in one line, or None."""
    if cluster.processes < 1:
        return f"--num-processes must be at least 1, got {cluster.processes}"
    if not 0 <= cluster.process_id < cluster.processes:
        last = cluster.processes - 1
        return f"--process-id must be from 0 to {last} (--num-processes {cluster.processes}), got {cluster.process_id}"
    if cluster.peer_timeout < 1:
        return f"--peer-timeout must be at least 1 second, got {cluster.peer_timeout}"
    if not cluster.joined:
        return None
    if backend not in ("auto", "jax"):
        return f"--num-processes {cluster.processes} needs --backend jax (JAX's distributed runtime), got {backend}"
    if not cluster.coordinator:
        return f"--num-processes {cluster.processes} needs --coordinator HOST:PORT, the address of process 0"
    return address_problem(cluster.coordinator)


def address_problem(address: str) -> str | None:
    host, colon, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"--coordinator takes HOST:PORT with a port from 1 to 65535, got {address!r}"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not all(part and part.replace("-", "").isalnum() for part in host.split(".")):
            return f"--coordinator {address!r}: {host!r} is neither an IP address nor a host name"
    return None


def join(cluster: Cluster) -> None:
    """Join JAX's distributed runtime; before anything asks JAX for its devices."""
    import jax

    jax.distributed.initialize(
        coordinator_address=cluster.coordinator,
        num_processes=cluster.processes,
        process_id=cluster.process_id,
        initialization_timeout=cluster.peer_timeout,
        heartbeat_timeout_seconds=cluster.peer_timeout,
    )


def supervise() -> tuple[int, bool] | None:
    """Go on in a child process; in the parent, pass on its stderr, wait for it and return
    (its exit status as a shell shows it, whether JAX's runtime ended it). The child returns
    None and dies with the parent.

    JAX's runtime ends a process with a fatal native log line, a dump of its state and a
    C++ stack trace, then SIGABRT. From that line on, what the child writes is dropped
    (its own last words may race with it): the caller says in one line what happened.
    """
    parent = os.getpid()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.dup2(write_end, 2)
        os.close(read_end)
        os.close(write_end)
        die_with_parent(parent)
        return None
    os.close(write_end)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the child too: let it answer
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGTERM))
    fatal = False
    with os.fdopen(read_end, "rb") as source:
        for line in source:
            fatal = fatal or FATAL_LINE.match(line) is not None
            if not fatal:
                os.write(2, line)
    _, status = os.waitpid(child, 0)
    if os.WIFEXITED(status):
        return os.waitstatus_to_exitcode(status), fatal
    return 128 + os.WTERMSIG(status), fatal or os.WTERMSIG(status) == signal.SIGABRT


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux), so that killing the
    process a user started kills the training it runs."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(128 + signal.SIGKILL)


def processes() -> int:
    """How many processes train together (1 unless the JAX backend joined a runtime)."""
    import keras

    if keras.backend.backend() != "jax":
        return 1
    import jax

    return jax.process_count()


def same_everywhere(text: str) -> bool:
    """Whether every process holds this same text (each process calls it at the same point)."""
    import numpy as np
    from jax.experimental import multihost_utils

    digest = np.frombuffer(hashlib.sha256(text.encode()).digest(), dtype=np.int32)  # JAX's default ints are 32-bit
    every = multihost_utils.process_allgather(digest)
    return bool((np.asarray(every) == digest).all())


def file_fingerprint(path: Path) -> str:
    """A file's content digest, or 'absent': what each process sees at a path."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "absent"


@functools.lru_cache(maxsize=1)
def compiled_call(model):
    """The model's forward pass as one jitted function of its weights and a global batch."""
    import jax

    return jax.jit(lambda trainable, other, rows: model.stateless_call(trainable, other, rows, training=False)[0])


def predict_rows(model, x, batch: int):
    """The model's outputs for every row of ``x``, on every process alike.

    With one process this is ``model.predict``. With several, Keras refuses numpy
    input, so each process runs its slice of every batch and the outputs are gathered.
    """
    if processes() == 1:
        return model.predict(x, batch_size=batch, verbose=0)
    import jax
    import keras
    import numpy as np
    from jax.experimental import multihost_utils

    distribution = keras.distribution.distribution()
    count, index = jax.process_count(), jax.process_index()
    devices = len(jax.devices())
    batch = -(-batch // devices) * devices  # every device gets the same number of rows
    share = batch // count
    run = compiled_call(model)
    trainable = [v.value for v in model.trainable_variables]
    other = [v.value for v in model.non_trainable_variables]
    outputs = []
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        rows = len(chunk)
        if rows < batch:  # one compiled shape: pad the last batch
            chunk = np.concatenate([chunk, np.zeros((batch - rows, *chunk.shape[1:]), chunk.dtype)])
        layout = distribution.get_data_layout(chunk.shape).backend_layout
        local = jax.make_array_from_process_local_data(layout, chunk[index * share : (index + 1) * share])
        outputs.append(multihost_utils.process_allgather(run(trainable, other, local), tiled=True)[:rows])
    return np.concatenate(outputs)


@contextmanager
def alone() -> Iterator[None]:
    """Keras without its distribution for a block: how process 0 saves a model by itself
    (under DataParallel, Keras creates each variable with a check that every process joins)."""
    import keras

    distribution = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(distribution)
