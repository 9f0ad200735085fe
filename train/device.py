"""Which Keras backend trains, on which devices, said in words and in the record.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so ``choose_backend``
runs before anything imports keras. Data parallelism uses Keras's own distribution
API (``keras.distribution.DataParallel``), which Keras implements on JAX.
"""

from __future__ import annotations

import importlib.util
import os
import platform

BACKENDS = ("auto", "tensorflow", "jax", "torch")
# The package each backend needs, and the extra that installs it (none installs torch).
BACKEND_PACKAGE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
BACKEND_EXTRA = {"tensorflow": "train", "jax": "jax"}


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def jax_sees_gpu() -> bool:
    if not installed("jax"):
        return False
    try:
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    except RuntimeError:  # a CUDA plugin without a usable driver
        return False


def torch_sees_gpu() -> bool:
    if not installed("torch"):
        return False
    import torch

    return torch.cuda.is_available()


def choose_backend(requested: str) -> str:
    """The backend to train with. ``auto``: KERAS_BACKEND if set; else one that sees a GPU
    (JAX first); else TensorFlow if installed; else JAX; else torch."""
    if requested != "auto":
        return requested
    if os.environ.get("KERAS_BACKEND") in BACKEND_PACKAGE:
        return os.environ["KERAS_BACKEND"]
    if jax_sees_gpu():
        return "jax"
    if torch_sees_gpu():
        return "torch"
    for backend in ("tensorflow", "jax", "torch"):
        if installed(BACKEND_PACKAGE[backend]):
            return backend
    return "tensorflow"  # nothing installed: the caller's check says which extra to install


def missing_for(backend: str) -> list[str]:
    """Packages the backend needs that are not installed."""
    return [p for p in ("keras", BACKEND_PACKAGE[backend]) if not installed(p)]


def accelerators() -> tuple[str, list]:
    """(kind, devices) Keras will train on under the current backend."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = jax.devices()
        return f"{devices[0].platform.upper()} ({devices[0].device_kind})", devices
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return ("GPU", gpus) if gpus else ("CPU", tf.config.list_physical_devices("CPU")[:1])
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"GPU ({torch.cuda.get_device_name()})", list(range(torch.cuda.device_count()))
        return "CPU", ["cpu"]
    return "unknown", []


def use_devices(count: int | None, every_process: bool = False) -> dict:
    """Spread training over ``count`` local devices (None: all) with keras.distribution.DataParallel;
    with ``every_process``, over every device of every process of JAX's distributed runtime.

    Returns what the record says of the devices. More than one device needs the JAX
    backend: Keras's distribution API is implemented there.
    """
    import keras

    kind, devices = accelerators()
    if every_process:
        import jax

        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=keras.distribution.list_devices()))
        names = [f"{d.platform}:{d.id} (process {d.process_index})" for d in jax.devices()]
        return {"kind": kind, "count": len(names), "processes": jax.process_count(), "names": names}
    wanted = len(devices) if count is None else count
    if wanted > 1 and keras.backend.backend() != "jax":
        raise ValueError(f"--devices {wanted} needs --backend jax (Keras's DataParallel runs on JAX)")
    if wanted > len(devices):
        raise ValueError(f"--devices {wanted}: only {len(devices)} {kind} device(s) are visible")
    if wanted > 1:
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices[:wanted]))
    return {"kind": kind, "count": wanted}


def describe(devices: dict) -> str:
    import keras

    plural = "s" if devices["count"] > 1 else ""
    processes = f" in {devices['processes']} processes" if devices.get("processes", 1) > 1 else ""
    return f"{keras.backend.backend()} on {devices['count']} {devices['kind']} device{plural}{processes}"


def versions() -> dict[str, str]:
    """Versions that decide what a training run computes: Python, Keras, numpy and the backend."""
    import keras
    import numpy

    found = {"python": platform.python_version(), "keras": keras.__version__, "numpy": numpy.__version__}
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow

        found["tensorflow"] = tensorflow.__version__
    elif backend == "jax":
        import jax
        import jaxlib

        found["jax"] = jax.__version__
        found["jaxlib"] = jaxlib.__version__
    elif backend == "torch":
        import torch

        found["torch"] = torch.__version__
    return found
