"""Evaluation: a model's domain, its fixed suites and drawn families, and the verdicts over them.

Needs only numpy and the runtime, so a model is judged the same way whether it was
trained with TensorFlow, JAX or not here at all.
"""
