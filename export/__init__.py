"""Export: Keras -> validated, self-describing ONNX (needs the train extra)."""
