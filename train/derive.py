"""A recipe derived from a domain that no shipped recipe names.

Changing one domain setting of the default recipe keeps its 24/24 layers, its data and
its checks, which fit two terms in 0..999 and little else. Here the other settings
follow from what the domain asks of the model, by a rule fitted on measured runs
(docs/training.md, "Training your own domain"):

- the layers grow with the digits the encoder must hold (terms x operand digits), and
  more for ``-``, ``*``, brackets and three or more terms, whose answers mix digits;
- larger layers take a lower learning rate; domains of many queries draw more per epoch;
- checks cover every query up to 2,000,000, a 1,000,000-query sample up to 50,000,000,
  and the fixed suites beyond (two-term sums only);
- a range of term counts starts with the fewest (a curriculum) and then draws the longer
  ones more, where most queries are; several terms or ``*`` over-draw the largest operand,
  and long operands over-draw carry chains;
- ``grow`` is on: a cycle whose wrong share does not halve widens the layers
  (adder.train.growth) rather than spending the budget at one size.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace

from adder.config import ModelConfig
from adder.train.recipe import DOMAIN, Recipe

MAX_DERIVED_UNITS = 256
EXHAUSTIVE_CHECKS = 2_000_000  # at most this many queries: every check is over every query


def units_for(config: ModelConfig) -> int:
    """LSTM units per layer: a multiple of 8 from the digits held and how hard they mix."""
    held = config.max_terms * config.operand_width
    hard = 1.0 + 0.5 * ("-" in config.operators) + 3.0 * ("*" in config.operators)
    hard += 0.5 * config.brackets + 0.75 * max(0, config.max_terms - 2)
    raw = (3 * held + 0.2 * held * held) * hard
    return int(min(MAX_DERIVED_UNITS, max(16, 8 * math.ceil(raw / 8))))


def derive(domain: Recipe) -> Recipe:
    """The default recipe with ``domain``'s domain fields and every other setting derived from them."""
    from adder.eval import suites

    base = Recipe(**{name: getattr(domain, name) for name in DOMAIN})
    config = base.model_config()
    units = units_for(config)
    size = config.domain_size
    settings = {
        "arch": f"{units}/{units}",
        "learning_rate": 6e-3 if units <= 64 else 3e-3,
        "samples": 50_000 if size <= 1_000_000 else 100_000,
        "batch_size": 512 if units <= 64 else 256,
        "cycle_epochs": 120 if units <= 64 else 200,
        "max_epochs": 400 if units <= 64 else 1000,
        "grow": True,
    }
    if size <= EXHAUSTIVE_CHECKS:
        settings |= {"check_every": 5, "check_sample": 0}
    elif not suites.judged_by_suites(config):
        settings |= {"check_every": 10, "check_sample": 1_000_000}
    else:
        # Judged by the suites and fresh draws, as wide is: a wrong share near one in a
        # million is left after the first cycles, which wide's finishing (mining unsure
        # answers, a held low rate, the mean of the weights) takes to none.
        settings |= {
            "check_every": 10,
            "check_sample": 200_000,
            "mine_margin": 0.95,
            "mine_sample": 400_000,
            "hold_rate": 1e-5,
            "confirm_further": 10_000_000,
            "confirm_beyond": 50_000_000,
            "average_weights": True,
            "max_epochs": 1000,
        }
    if config.min_terms < config.max_terms:
        counts = config.max_terms - config.min_terms + 1
        settings |= {"curriculum": 8, "term_mix": ":".join(str(3**k) for k in range(counts))}
    if config.max_terms >= 3 or "*" in config.operators:
        settings["large_operands"] = 0.05
    if config.operand_width >= 4 and config.operators == "+":
        settings["carry_chains"] = 0.2
    return replace(base, **settings)


def matches_domain(a: Recipe, b: Recipe) -> bool:
    return all(getattr(a, name) == getattr(b, name) for name in DOMAIN)


def derived_changes(recipe: Recipe) -> str:
    """The settings a derived recipe sets apart from the defaults, in words, for the run's first line."""
    defaults = Recipe()
    changed = [f.name for f in fields(recipe) if f.name not in DOMAIN and getattr(recipe, f.name) != getattr(defaults, f.name)]
    return ", ".join(f"{name} {getattr(recipe, name)}" for name in changed)


def expected_epochs(recipe: Recipe) -> int:
    """Epochs a derived run is expected to need, from the measured grid (docs/training.md)."""
    config = recipe.model_config()
    held = config.max_terms * config.operand_width
    hard = ("-" in config.operators) + 2 * ("*" in config.operators) + config.brackets + (config.max_terms > 2)
    epochs = (10 + 8 * held) * (1 + 0.25 * hard)
    if recipe.confirm_further:  # judged by the suites: the last errors in a million take the longest
        epochs *= 6
    return int(min(recipe.max_epochs, round(epochs)))


def seconds_per_epoch(recipe: Recipe) -> float:
    """A cost model of one epoch on this kind of 2-core CPU, fitted on measured epochs: the
    gradient steps grow with the queries drawn, the steps of each sequence and the layers' width."""
    config = recipe.model_config()
    arch = recipe.architecture()
    width = max(*arch.encoder, *arch.decoder)
    steps = config.input_length + config.output_length
    return recipe.samples * steps * (2.0e-6 + 4.0e-9 * width * width)


def estimate(recipe: Recipe) -> str:
    """The run's expected length in words, stated before it starts."""
    epochs = expected_epochs(recipe)
    minutes = epochs * seconds_per_epoch(recipe) / 60
    return f"expect about {epochs} epochs, about {max(1, round(minutes))} min on a 2-core CPU (budget {recipe.max_epochs} epochs)"
