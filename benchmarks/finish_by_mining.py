"""A trial of mining on a finished model: go on training it at a constant low rate, replaying the
fresh pairs it answers unsurely, and watch its margins on pairs it never trains on.

    python benchmarks/finish_by_mining.py train/models/wide.keras runs/mined 1e-5 0.95 [EPOCHS]

Arguments: the model to start from, a folder for the log and the model (saved every 5
epochs as model.keras, a plain Keras file), the learning rate, the margin below which
an answer counts as unsure, and the epochs (default 200). Each epoch draws 200,000
uniform and 200,000 carry-dense pairs (numpy seed [7, epoch]), keeps the newest 20,000
unsure ones, and trains on 75,000 pairs drawn as the wide recipe draws them plus 25,000
from those. Every 5 epochs it counts wrong and unsure answers on 1,000,000 uniform and
1,000,000 carry-dense pairs of seed 99, which it never trains on. It is the trial behind
docs/training.md's "Mining unsure answers"; adder-train's --mine-margin and --hold-rate
are what a run does with the idea, from scratch.
"""

import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from adder import Adder  # noqa: E402
from adder.codec import Codec  # noqa: E402
from adder.config import ModelConfig  # noqa: E402
from adder.export.convert import keras_to_onnx  # noqa: E402
from adder.grammar import Expression  # noqa: E402
from adder.train import suites  # noqa: E402
from adder.train.data import encode_epoch, sample_expressions  # noqa: E402
from adder.train.fit import train_epoch  # noqa: E402
from adder.train.mining import margins  # noqa: E402

THRESHOLDS = (0.5, 0.8, 0.95)


def dense_pairs(n: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """adder.train.data.dense_carry_pairs's distribution, in the trial's own order of draws."""
    rate = rng.random((n, 1))
    wanted = rng.random((n, width)) < rate
    a = np.zeros((n, width), np.int64)
    b = np.zeros((n, width), np.int64)
    carry_in = np.zeros(n, np.int64)
    for i in range(width):
        out = wanted[:, i]
        low_a, high_a = np.where(out, 1 - carry_in, 0), np.where(out, 9, 9 - carry_in)
        digit_a = low_a + (rng.random(n) * (high_a - low_a + 1)).astype(np.int64)
        low_b, high_b = np.where(out, 10 - digit_a - carry_in, 0), np.where(out, 9, 9 - digit_a - carry_in)
        digit_b = low_b + (rng.random(n) * (high_b - low_b + 1)).astype(np.int64)
        a[:, i], b[:, i] = digit_a, digit_b
        carry_in = out.astype(np.int64)
    scale = 10 ** np.arange(width, dtype=np.int64)
    return np.stack([a @ scale, b @ scale], 1)


def main() -> None:
    src, outdir, rate, below = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    epochs = int(sys.argv[5]) if len(sys.argv) > 5 else 200
    outdir.mkdir(exist_ok=True, parents=True)
    model = keras.saving.load_model(src, compile=True, safe_mode=True)
    data = json.loads(zipfile.ZipFile(src).read("adder.json"))
    config = ModelConfig.from_dict({k: v for k, v in data.items() if k != "training"})
    codec = Codec(config)
    width = config.operand_width
    model.optimizer.learning_rate.assign(rate)

    def probabilities(adder, pairs):
        return adder.predict_tensor(codec.encode_shape(suites.SUM, pairs))

    def measure(adder, pairs):
        outputs = np.concatenate([probabilities(adder, pairs[s : s + 200_000]) for s in range(0, len(pairs), 200_000)])
        values, valid = codec.decode_answers(outputs)
        margin = margins(outputs)
        return int(((values != pairs.sum(1)) | ~valid).sum()), [int((margin < t).sum()) for t in THRESHOLDS]

    held_out = np.random.default_rng(99)
    uniform = held_out.integers(0, config.max_operand + 1, size=(1_000_000, 2))
    dense = dense_pairs(1_000_000, width, held_out)
    unsure = np.zeros((0, 2), np.int64)
    log = open(outdir / "log.txt", "a")

    def say(line: str) -> None:
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    say(f"start {src} lr {rate} thresh {below}")
    onnx_path = Path(tempfile.mkdtemp()) / "m.onnx"
    for epoch in range(epochs):
        started = time.time()
        onnx_path.write_bytes(keras_to_onnx(model, config).SerializeToString())
        adder = Adder(onnx_path)
        if epoch % 5 == 0:
            (wrong_u, unsure_u), (wrong_d, unsure_d) = measure(adder, uniform), measure(adder, dense)
            say(
                f"epoch {epoch}: eval uniform wrong {wrong_u} margins<.5/.8/.95 {unsure_u}; "
                f"dense wrong {wrong_d} margins {unsure_d}"
            )
            keras.saving.save_model(model, outdir / "model.keras")
        rng = np.random.default_rng([7, epoch])
        drawn = np.concatenate(
            [rng.integers(0, config.max_operand + 1, size=(200_000, 2)), dense_pairs(200_000, width, rng)]
        )
        found = drawn[margins(probabilities(adder, drawn)) < below]
        unsure = np.concatenate([unsure, found])[-20_000:]
        mined_in = time.time() - started
        base = sample_expressions(config, 75_000, rng, 0.5, (), 0.0, 0.2, 0.3)
        picked = unsure[rng.integers(0, len(unsure), size=25_000)] if len(unsure) else np.zeros((0, 2), np.int64)
        queries = base + [Expression((int(a), int(b)), ("+",), ()) for a, b in picked.tolist()]
        queries = [queries[i] for i in rng.permutation(len(queries))]
        x, y = encode_epoch(config, queries)
        loss = train_epoch(model, x, y, 256)
        say(
            f"epoch {epoch + 1}: mined {len(found)} (pool {len(unsure)}) in {mined_in:.0f}s, "
            f"loss {loss:.6f}, {time.time() - started:.0f}s"
        )


if __name__ == "__main__":
    main()
