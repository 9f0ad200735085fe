"""Named training recipes: the one place a training setting lives.

A recipe is the domain, the layer sizes and every training setting of a shipped
model, so ``adder-train --recipe arith --out arith.keras`` rebuilds it and
``adder-train`` with no options rebuilds the shipped default. Any field can be
overridden on the command line; the model's record keeps the recipe it ran with,
overrides applied, and the one command that rebuilds it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

DEFAULT_RECIPE = "default"


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


@dataclass(frozen=True)
class Recipe:
    """A recipe; the field defaults are the shipped default's (``RECIPES["default"]``)."""

    # the domain (see adder.config.ModelConfig): two terms in 0..999, +
    terms: str = "2"  # N, or MIN-MAX
    smallest: int = 0
    largest: int = 999
    ops: str = "+"
    brackets: bool = False
    reverse: bool = True
    reverse_output: bool = True
    encoding: str = "onehot"
    # the model: LSTM 24/24, 8,556 parameters
    arch: str = "24/24"
    # the first learning-rate cycle, then the self-driving policy (adder.train.policy)
    epochs: int = 120  # length of the first cosine cycle
    samples: int = 50_000
    batch_size: int = 512
    learning_rate: float = 6e-3
    schedule: str = "cosine"
    curriculum: int = 0
    small_operands: float = 0.25
    large_operands: float = 0.0
    carry_chains: float = 0.0
    sparse_operands: float = 0.0
    # finishing: replay fresh queries answered unsurely (adder.train.mining), hold a constant rate
    mine_margin: float = 0.0
    mine_sample: int = 0
    hold_rate: float = 0.0
    confirm_further: int = 0  # more pairs of a clean fresh draw that must be right too (adder.train.fit)
    confirm_beyond: int = 0  # more again, once the further pairs are right (adder.train.fit.confirmed_beyond)
    average_weights: bool = False  # once going beyond, judge the mean of the weights since (adder.train.averaging)
    replay_share: float = 0.25
    check_every: int = 5
    term_mix: str = ""
    check_sample: int = 0
    # budget: the run stops exact, or when one of these runs out (0: no limit on time)
    max_epochs: int = 400
    max_minutes: float = 0.0
    seed: int = 0

    def with_overrides(self, **overrides) -> Recipe:
        """This recipe with every override that is not None."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


RECIPES: dict[str, Recipe] = {
    # Two terms in 0..999: the shipped default, exact on all 1,000,000 queries.
    "default": Recipe(),
    # 2-3 terms in 0..99 with + - and brackets, LSTM 44/44 (26,899 parameters).
    "arith": Recipe(
        terms="2-3",
        largest=99,
        ops="+-",
        brackets=True,
        arch="44/44",
        epochs=150,
        samples=100_000,
        batch_size=512,
        learning_rate=6e-3,
        curriculum=8,
        large_operands=0.05,
        term_mix="1:9",
        check_every=10,
        check_sample=2_000_000,
        max_epochs=450,
    ),
    # Two terms in 0..99 with + - * and brackets (60,000 queries): products up to 9,801.
    "calc": Recipe(
        terms="2",
        largest=99,
        ops="+-*",
        brackets=True,
        arch="64/64",
        epochs=150,
        samples=50_000,
        batch_size=256,
        learning_rate=5e-3,
        check_every=5,
        max_epochs=600,
    ),
    # Two terms in 0..9,999,999,999 with +: 10^20 queries, judged by the fixed suites of
    # adder.train.suites and pairs drawn afresh; checks and training over-draw long carry
    # chains. Once the suites are clean, only a few fresh pairs in ten million are wrong:
    # mining unsure answers and a held rate finish it, where restarting cycles trade
    # one wrong pair for another. Once a fresh draw is clean, 10,000,000 more of it and
    # runs of 9s with no carry into them must be too (adder.train.fit.confirmed_further),
    # then nine-dense pairs and 50,000,000 more (confirmed_beyond); from there on the run
    # judges, mines with and writes the mean of its weights (adder.train.averaging).
    "wide": Recipe(
        largest=9_999_999_999,
        arch="128/128",
        epochs=200,
        samples=100_000,
        batch_size=256,
        learning_rate=3e-3,
        small_operands=0.5,
        carry_chains=0.2,
        sparse_operands=0.3,
        check_every=10,
        check_sample=200_000,
        mine_margin=0.95,
        mine_sample=400_000,
        hold_rate=1e-5,
        confirm_further=10_000_000,
        confirm_beyond=50_000_000,
        average_weights=True,
        max_epochs=1000,
    ),
}


def recipe_named(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"--recipe must be one of {', '.join(RECIPES)}, got {name!r}") from None
