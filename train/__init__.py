"""Training: Keras 3 model, data, loop, evaluation (needs the train extra)."""
