"""Block predictors over a model file: answers for one shape's terms, as the runtime gives them."""

from __future__ import annotations

import numpy as np

from adder.grammar import shape_text


def onnx_predictor(adder):
    """A block predictor answering through the public string API and its batch path, as `adder -` does."""

    def predict(shape, terms):
        template = shape_text(shape)
        results = list(adder.results(template.format(*row) for row in terms.tolist()))
        valid = np.array([isinstance(r, int) for r in results])
        return np.array([r if isinstance(r, int) else 0 for r in results], dtype=adder.codec.answer_dtype), valid

    predict.takes_blocks = True
    return predict
