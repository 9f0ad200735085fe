"""The Keras seq2seq model: LSTM encoder -> RepeatVector -> LSTM decoder -> softmax per step."""

from __future__ import annotations

import keras

from adder.config import ModelConfig
from adder.train.recipe import Architecture


def build_model(config: ModelConfig, arch: Architecture) -> keras.Model:
    vocab = len(config.alphabet)
    if config.encoding == "index":
        inputs = keras.Input((config.input_length,), dtype="int32", name="query")
        x = keras.layers.Embedding(vocab, arch.embedding or vocab)(inputs)
    else:
        inputs = keras.Input((config.input_length, config.input_features), name="query")
        x = inputs
    for i, units in enumerate(arch.encoder):
        x = keras.layers.LSTM(units, return_sequences=i < len(arch.encoder) - 1)(x)
    x = keras.layers.RepeatVector(config.output_length)(x)
    for units in arch.decoder:
        x = keras.layers.LSTM(units, return_sequences=True)(x)
    outputs = keras.layers.TimeDistributed(keras.layers.Dense(vocab, activation="softmax"))(x)
    return keras.Model(inputs, outputs, name="adder")
