"""Recipe: the one place a training setting, its default and its help live.

A recipe is the domain, the layer sizes and every training setting of a run. The field
defaults are the shipped default's; the other shipped recipes are small TOML files in
``recipes/`` holding only what differs (as nanoGPT's config files do), and a user's own
file works the same way. The CLI, the library and the tests check a recipe with one
method, ``Recipe.problems()``; a run's record stores the resolved recipe, and
``Recipe.to_toml()`` writes it back out as a file that trains the same run.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, replace

from adder.config import ConfigError, ModelConfig

DEFAULT_RECIPE = "default"
MAX_SEED = 2**32 - 1  # numpy's legacy seeding, which Keras uses, takes no more
MAX_SAMPLES = 100_000_000  # an epoch's queries are built in memory: about 30 GB at this many
MAX_CONFIRM = 1_000_000_000  # checked in blocks, not held: about 17 h of a 2-core CPU at this many
MAX_UNITS = 4096
DOMAIN = ("terms", "smallest", "largest", "ops", "brackets")  # what a recipe is for; the rest is how
BUDGET = ("max_epochs", "max_minutes")  # not part of a run's identity: a rerun may raise them
# Fields renamed since models were shipped: a record's old name, read as the new one.
RENAMED = {"epochs": "cycle_epochs"}
SUITES_ONLY = ("mine_margin", "mine_sample", "hold_rate", "confirm_further", "confirm_beyond", "average_weights")


def setting(default, help: str, low=None, high=None, *, above=None, below=None, choices=None, group="training"):
    """A recipe field with its help and bounds beside it (read by the CLI and by ``problems``)."""
    bounds = {"low": low, "high": high, "above": above, "below": below, "choices": choices, "group": group}
    return field(default=default, metadata={"help": help, **bounds})


@dataclass(frozen=True)
class Architecture:
    """Layer sizes; stacked LSTMs when a tuple has more than one entry."""

    encoder: tuple[int, ...]
    decoder: tuple[int, ...]
    embedding: int = 0  # width of an Embedding layer when the config's encoding is "index"

    def to_dict(self) -> dict:
        return asdict(self)


ARCHITECTURES = {
    "seed": Architecture(encoder=(100,), decoder=(50,)),  # the Keras tutorial's model
    "wide": Architecture(encoder=(128,), decoder=(128,)),
}


def parse_arch(text: str) -> Architecture:
    """A named architecture, or layer sizes written ENCODER/DECODER (e.g. '64/64', '96,48/64')."""
    if text in ARCHITECTURES:
        return ARCHITECTURES[text]
    if re.fullmatch(r"[0-9]{1,5}", text) and 1 <= int(text) <= MAX_UNITS:  # one LSTM, no decoder (layout 'pairs')
        return Architecture(encoder=(int(text),), decoder=())
    encoder, slash, decoder = text.partition("/")
    sizes = []
    if slash and all(re.fullmatch(r"[0-9]{1,5}(,[0-9]{1,5})*", part) for part in (encoder, decoder)):
        sizes = [tuple(int(units) for units in part.split(",")) for part in (encoder, decoder)]
    if not sizes or any(units < 1 or units > MAX_UNITS for part in sizes for units in part):
        names = ", ".join(ARCHITECTURES)
        raise ValueError(f"arch must be one of {names} or layer sizes like 64/64 (1..{MAX_UNITS} units), got {text!r}")
    return Architecture(encoder=sizes[0], decoder=sizes[1])


def parse_terms(text: str) -> tuple[int, int]:
    """'2' -> (2, 2); '2-4' -> (2, 4)."""
    match = re.fullmatch(r"([0-9]{1,3})(?:-([0-9]{1,3}))?", text)
    if not match:
        raise ValueError(f"terms takes a number or a range like 2-4, got {text!r}")
    return int(match[1]), int(match[2] or match[1])


def parse_term_mix(text: str, counts: int) -> tuple[float, ...]:
    """'1:9' -> (1.0, 9.0): one non-negative weight per term count, not all zero; '' -> ()."""
    if not text:
        return ()
    parts = text.split(":")
    if not all(re.fullmatch(r"[0-9]+(\.[0-9]*)?", part) for part in parts):
        raise ValueError(f"term_mix takes non-negative weights like '1:9', got {text!r}")
    weights = tuple(float(part) for part in parts)
    if len(weights) != counts:
        raise ValueError(f"term_mix needs {counts} weight(s), one per term count of terms, got {text!r}")
    if not (0 < sum(weights) < math.inf):
        raise ValueError(f"term_mix weights must be finite and not all 0, got {text!r}")
    return weights


@dataclass(frozen=True)
class Recipe:
    """Every setting of a run; the defaults are the shipped default's."""

    # the domain (adder.config.ModelConfig)
    terms: str = setting("2", "Terms per query: N, or a range MIN-MAX.", group="domain")
    smallest: int = setting(0, "Smallest operand.", 0, 10**10 - 1, group="domain")
    largest: int = setting(999, "Largest operand.", 0, 10**10 - 1, group="domain")
    ops: str = setting("+", "Operators to learn, any of + - * (e.g. '+-').", group="domain")
    brackets: bool = setting(False, "Also learn round brackets around any sub-expression.", group="domain")
    digits: int = setting(
        0, "Operands of up to this many digits (sets largest to all nines); 0: largest decides.", 0, 4000, group="domain"
    )
    reverse: bool = setting(True, "Feed the query to the encoder reversed.", group="encoding")
    reverse_output: bool = setting(True, "Have the decoder write the answer's last digit first.", group="encoding")
    layout: str = setting(
        "text",
        "'text': the query's symbols one a step (encoder-decoder); 'pairs': aligned digit pairs one a step, "
        "one answer digit a step (a single LSTM; two terms, +).",
        choices=("text", "pairs"),
        group="encoding",
    )
    encoding: str = setting(
        "onehot",
        "'onehot' vectors, 'index' with an Embedding layer, or 'ordinal' (one number per symbol).",
        choices=("onehot", "index", "ordinal"),
        group="encoding",
    )
    arch: str = setting(
        "24/24",
        "Layer sizes ENCODER/DECODER in LSTM units (64/64; stacked: 64,64/64), or 'seed' (100/50), 'wide' (128/128); "
        "for layout 'pairs' one number, the LSTM's units.",
        group="model",
    )
    grow: bool = setting(False, "Widen the layers when a cycle's wrong share does not halve (adder.train.growth).", group="model")
    # the first learning-rate cycle; the policy (adder.train.policy) plans the ones after it
    cycle_epochs: int = setting(120, "Length of the first learning-rate cycle, in epochs.", 1, 100_000)
    samples: int = setting(50_000, "Queries drawn per epoch.", 1, MAX_SAMPLES)
    batch_size: int = setting(512, "Queries per gradient step.", 1, 1_000_000)
    learning_rate: float = setting(6e-3, "Adam's learning rate (the first cycle's peak).", above=0, below=math.inf)
    schedule: str = setting(
        "cosine", "Learning rate within a cycle: 'cosine' or 'constant'.", choices=("cosine", "constant")
    )
    curriculum: int = setting(
        0, "With a range of terms: epochs on each term count before the next is added.", 0, 100_000
    )
    term_mix: str = setting("", "Draws per term count, fewest first, as weights like '1:9'; '' draws each alike.")
    # what the epochs hold (adder.eval.draws)
    small_operands: float = setting(0.25, "Share of operands drawn with a uniform digit count.", 0, 1, group="data")
    large_operands: float = setting(0.0, "Share of operands drawn as the domain's largest.", 0, 1, group="data")
    carry_chains: float = setting(0.0, "Share of pairs drawn to carry through a long chain.", 0, 1, group="data")
    sparse_operands: float = setting(0.0, "Share of operands drawn with many zero digits.", 0, 1, group="data")
    settle: float = setting(
        0.0, "Pull of each LSTM output toward 0 or +-tanh(1) (layout 'pairs'), so states settle.", 0, 100, group="data"
    )
    recurrent_units: int = setting(
        0, "LSTM units the next step reads (layout 'pairs'; the rest of the state is not passed on); 0: all.",
        0, MAX_UNITS, group="model",
    )  # fmt: skip
    state_noise: float = setting(
        0.0, "Gaussian noise added in training to the state each step reads (layout 'pairs').", 0, 10, group="data"
    )
    settle_epochs: int = setting(
        1, "Epochs before settle acts, and then over which it rises to its weight (layout 'pairs').", 1, 100_000, group="data"
    )
    replay_share: float = setting(
        0.25, "Share of each epoch replayed from the queries checks found wrong.", 0, below=1, group="data"
    )
    # checks (adder.train.checks)
    check_every: int = setting(
        5, "Check the domain every N epochs; 0: whenever the probe is all right.", 0, 100_000, group="checks"
    )
    check_sample: int = setting(
        0,
        "Checks look at this many queries drawn uniformly, not all; 0 checks every query.",
        0,
        MAX_SAMPLES,
        group="checks",
    )
    # finishing where fixed suites judge the domain (two ten-digit terms: adder.eval.suites)
    mine_margin: float = setting(
        0.0, "Replay fresh answers whose weakest digit wins by less than this.", 0, below=1, group="finishing"
    )
    mine_sample: int = setting(
        0, "Fresh queries drawn every finishing epoch to mine.", 0, MAX_SAMPLES, group="finishing"
    )
    hold_rate: float = setting(
        0.0,
        "Once the suites were clean, finishing cycles hold this learning rate.",
        0,
        below=math.inf,
        group="finishing",
    )
    confirm_further: int = setting(
        0, "Pairs more of a clean fresh draw that must be right too.", 0, MAX_CONFIRM, group="finishing"
    )
    confirm_beyond: int = setting(
        0, "Pairs more again, once the further ones are right.", 0, MAX_CONFIRM, group="finishing"
    )
    average_weights: bool = setting(
        False, "Once going beyond, judge and write the mean of the weights since.", group="finishing"
    )
    # the run's own budget: a self-driving run that spends it inexact exits 1
    max_epochs: int = setting(400, "Epochs in all, over every cycle.", 1, 1_000_000, group="budget")
    max_minutes: float = setting(
        0.0, "Minutes of training and checks, over resumes too; 0: no limit.", 0, below=math.inf, group="budget"
    )
    seed: int = setting(0, "Seed for weights and data: same seed, same machine, same model.", 0, MAX_SEED, group="run")

    # -- reading and writing -------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def field(cls, name: str):
        return next(f for f in fields(cls) if f.name == name)

    def with_overrides(self, **overrides) -> Recipe:
        """This recipe with every override that is not None (unknown names are a ValueError)."""
        unknown = set(overrides) - set(self.field_names())
        if unknown:
            raise ValueError(f"no such setting: {', '.join(sorted(unknown))} (adder-train --list-settings lists them)")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)

    def changes(self) -> dict:
        """The fields that differ from the defaults: what a recipe file holds."""
        defaults = Recipe()
        return {k: v for k, v in self.to_dict().items() if v != getattr(defaults, k)}

    def to_toml(self, name: str = "") -> str:
        lines = [f"# adder-train recipe{f' {name}' if name else ''}: only what differs from the defaults"]
        lines += [f"{key} = {toml_value(value)}" for key, value in self.changes().items()]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_mapping(cls, data: dict, source: str) -> Recipe:
        """A recipe from a file's or a record's fields, each typed as its field is."""
        values = {}
        for key, value in data.items():
            key = RENAMED.get(key, key)
            if key not in cls.field_names():
                raise ValueError(f"{source}: no such setting {key!r} (adder-train --list-settings lists them)")
            values[key] = typed(cls.field(key), value, source)
        return cls(**values)

    @classmethod
    def from_record(cls, recipe: dict) -> tuple[str, Recipe]:
        """A model record's resolved recipe and its name (settings added later take their defaults)."""
        data = {k: v for k, v in recipe.items() if k not in ("name", "source")}
        return str(recipe.get("name", "")), cls.from_mapping(data, "record")

    # -- what the run is -----------------------------------------------------------------
    def model_config(self) -> ModelConfig:
        low, high = parse_terms(self.terms)
        return ModelConfig(
            min_terms=low,
            max_terms=high,
            min_operand=self.smallest,
            max_operand=10**self.digits - 1 if self.digits else self.largest,
            operators=self.ops,
            brackets=self.brackets,
            reverse_input=self.reverse,
            reverse_output=self.reverse_output,
            encoding=self.encoding,
            layout=self.layout,
        )

    def architecture(self) -> Architecture:
        return parse_arch(self.arch)

    @property
    def term_weights(self) -> tuple[float, ...]:
        low, high = parse_terms(self.terms)
        return parse_term_mix(self.term_mix, high - low + 1)

    def identity(self) -> dict:
        """What a checkpoint must match to be resumed: everything but the budget."""
        return {k: v for k, v in self.to_dict().items() if k not in BUDGET}

    def terms_at(self, config: ModelConfig, epoch: int) -> int:
        """Most terms drawn in an epoch: the fewest first, one more every ``curriculum`` epochs.

        Trained on arith's whole mix from the start, the answer's units digit stayed at
        chance for 23 epochs even on two-term queries; two-term queries alone learn it in
        about 8 epochs, and the model then goes on to three terms.
        """
        if not self.curriculum:
            return config.max_terms
        return min(config.max_terms, config.min_terms + epoch // self.curriculum)

    # -- checks --------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Every reason this recipe cannot be trained, one sentence each; [] when it can."""
        found = [p for f in fields(self) if (p := bound_problem(f, getattr(self, f.name)))]
        for check in (self.model_config, self.architecture, lambda: self.term_weights):
            try:
                check()
            except (ValueError, ConfigError) as exc:
                found.append(str(exc))
        if found:
            return list(dict.fromkeys(found))
        return self._combination_problems()

    def _combination_problems(self) -> list[str]:
        from adder.eval.suites import FURTHER_STEP, judged_by_suites

        found = []
        pairs, arch = self.layout == "pairs", self.architecture()
        if pairs and (arch.decoder or len(arch.encoder) != 1):
            found.append(f"layout 'pairs' trains one LSTM: give arch as its units, like 8, got {self.arch!r}")
        if not pairs and not arch.decoder:
            found.append(f"arch {self.arch!r} has no decoder; only layout 'pairs' trains one LSTM alone")
        if (self.settle or self.state_noise) and not pairs:
            found.append("settle and state_noise act only with layout 'pairs'")
        if self.mine_margin and not self.mine_sample:
            found.append(f"mine_margin {self.mine_margin:g} needs mine_sample of 1 or more queries to mine")
        if self.confirm_beyond and (not self.confirm_further or self.confirm_further % FURTHER_STEP):
            found.append(
                "confirm_beyond continues the draw of confirm_further, which must then be a positive multiple of "
                f"{FURTHER_STEP:,} pairs, got {self.confirm_further:,}"
            )
        if self.average_weights and not self.confirm_beyond:
            found.append("average_weights acts only once a run goes beyond, so it needs confirm_beyond too (or --no-average-weights)")
        config = self.model_config()
        if not judged_by_suites(config):
            defaults = Recipe()
            given = [name for name in SUITES_ONLY if getattr(self, name) != getattr(defaults, name)]
            if given:
                found.append(
                    f"{', '.join(given)} {'acts' if len(given) == 1 else 'act'} only where fixed suites judge the domain (two terms, +, more than "
                    f"50,000,000 queries); this one's {config.domain_size:,} queries are checked in full: unset them"
                )
        return found


def bound_problem(f, value) -> str | None:
    """Whether a field's value is outside its bounds or choices, in one sentence."""
    meta, name = f.metadata, f.name
    if meta.get("choices") and value not in meta["choices"]:
        return f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} must be a finite number, got {value}"
    low, high, above, below = meta.get("low"), meta.get("high"), meta.get("above"), meta.get("below")
    if low is not None and value < low:
        return f"{name} must be at least {low:,}, got {value:,}"
    if high is not None and value > high:
        return f"{name} must be at most {high:,}, got {value:,}"
    if above is not None and not value > above:
        return f"{name} must be above {above:g}, got {value:g}"
    if below is not None and not value < below:
        return f"{name} must be below {below:g}, got {value:g}"
    return None


def parse_number(text: str, kind: type, what: str) -> int | float:
    """The one way a number is read from text: ASCII digits only (``int`` takes other scripts'
    digits and ``str.isdigit`` superscripts, which ``int`` then refuses), finite for floats."""
    text = text.strip().replace("_", "")
    if kind is int:
        if not re.fullmatch(r"[+-]?[0-9]{1,30}", text):
            raise ValueError(f"{what} takes a whole number, got {text!r}")
        return int(text)
    if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?", text):
        raise ValueError(f"{what} takes a number, got {text!r}")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{what} takes a finite number, got {text!r}")
    return value


BOOLEAN_WORDS = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}


def typed(f, value, source: str):
    """``value`` (text from the command line, or a TOML/JSON value) as field ``f``'s type."""
    kind = type(f.default)
    what = source if source.startswith("--") else f"{source}: {f.name}"
    if isinstance(value, str) and kind is not str:
        if kind is bool:
            if value.strip().lower() not in BOOLEAN_WORDS:
                raise ValueError(f"{what} takes true or false, got {value!r}")
            return BOOLEAN_WORDS[value.strip().lower()]
        return parse_number(value, kind, what)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{what} takes a finite number, got {value}")
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    raise ValueError(f"{what} takes a {kind.__name__}, got {value!r}")


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
