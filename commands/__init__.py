"""The training side's commands: thin typer layers over adder.train, adder.export and adder.eval.

Nothing heavy is imported at module level, so ``--help`` and the message asking for
the ``train`` extra work without TensorFlow installed.
"""
