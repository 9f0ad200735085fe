"""The Keras seq2seq model: LSTM encoder -> RepeatVector -> LSTM decoder -> softmax per step."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras

from adder.config import ModelConfig


@dataclass(frozen=True)
class Architecture:
    """Layer sizes; stacked LSTMs when a tuple has more than one entry."""

    encoder: tuple[int, ...]
    decoder: tuple[int, ...]
    embedding: int = 0  # width of an Embedding layer when the config's encoding is "index"

    def to_dict(self) -> dict:
        return asdict(self)


ARCHITECTURES = {
    # The seed tutorial's model, kept so its results stay reproducible.
    "seed": Architecture(encoder=(100,), decoder=(50,)),
    "wide": Architecture(encoder=(128,), decoder=(128,)),
}


def parse_arch(text: str) -> Architecture:
    """A named architecture, or layer sizes written ENCODER/DECODER (e.g. '64/64', '96,48/64')."""
    if text in ARCHITECTURES:
        return ARCHITECTURES[text]
    encoder, slash, decoder = text.partition("/")
    try:
        sizes = [tuple(int(units) for units in part.split(",")) for part in (encoder, decoder)]
    except ValueError:
        sizes = []
    if not slash or not sizes or any(units < 1 or units > 4096 for part in sizes for units in part):
        names = ", ".join(ARCHITECTURES)
        raise ValueError(f"--arch must be one of {names} or layer sizes like 64/64, got {text!r}")
    return Architecture(encoder=sizes[0], decoder=sizes[1])


def build_model(config: ModelConfig, arch: Architecture) -> keras.Model:
    vocab = len(config.alphabet)
    if config.encoding == "index":
        inputs = keras.Input((config.input_length,), dtype="int32", name="query")
        x = keras.layers.Embedding(vocab, arch.embedding or vocab)(inputs)
    else:
        inputs = keras.Input((config.input_length, vocab), name="query")
        x = inputs
    for i, units in enumerate(arch.encoder):
        x = keras.layers.LSTM(units, return_sequences=i < len(arch.encoder) - 1)(x)
    x = keras.layers.RepeatVector(config.output_length)(x)
    for units in arch.decoder:
        x = keras.layers.LSTM(units, return_sequences=True)(x)
    outputs = keras.layers.TimeDistributed(keras.layers.Dense(vocab, activation="softmax"))(x)
    return keras.Model(inputs, outputs, name="adder")
