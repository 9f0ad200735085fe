"""Which device Keras will train on, said in words, for any backend."""

from __future__ import annotations

import keras


def describe_device() -> str:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"tensorflow on {'GPU ' + gpus[0].name if gpus else 'CPU'}"
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"jax on {device.platform.upper()} ({device.device_kind})"
    if backend == "torch":
        import torch

        return f"torch on {'GPU ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}"
    return backend
