"""Recipes as files: the shipped ones by name (train/recipes/*.toml), a user's .toml, or the
resolved recipe inside a model's .json record. TOML holds only what differs from the defaults."""

from __future__ import annotations

import json
from pathlib import Path

import tomllib

from adder.train.recipe import Recipe

RECIPE_FOLDER = Path(__file__).resolve().parent / "recipes"
MAX_RECIPE_BYTES = 1_000_000


def recipe_names() -> list[str]:
    return sorted(path.stem for path in RECIPE_FOLDER.glob("*.toml"))


MAX_RECIPE_BYTES = 1_000_000


def load_recipe(name_or_path: str) -> tuple[str, Recipe]:
    """A shipped recipe by name, or a recipe file (.toml, or .json such as a model's record);
    returns the name it goes by and the recipe."""
    path = Path(name_or_path)
    if name_or_path in recipe_names():
        path = RECIPE_FOLDER / f"{name_or_path}.toml"
    elif path.suffix not in (".toml", ".json"):
        raise ValueError(f"recipe must be one of {', '.join(recipe_names())} or a .toml file, got {name_or_path!r}")
    try:
        if not path.is_file():
            raise ValueError(f"recipe {path}: no such file")
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise ValueError(f"recipe {path}: larger than {MAX_RECIPE_BYTES:,} bytes; refused")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"recipe {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    name = path.stem if path.parent == RECIPE_FOLDER else str(path)
    if path.suffix == ".json":
        return name, recipe_from_json(text, path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"recipe {path}: not valid TOML ({exc})") from None
    return name, Recipe.from_mapping(data, f"recipe {path}")


def recipe_from_json(text: str, path: Path) -> Recipe:
    """A JSON recipe: its fields, or a model record's resolved recipe (model.json)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"recipe {path}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("training"), dict) and "recipe" in data["training"]:
        data = data["training"]["recipe"]
    if not isinstance(data, dict):
        raise ValueError(f"recipe {path}: a JSON recipe is an object of settings")
    return Recipe.from_mapping({k: v for k, v in data.items() if k not in ("name", "source")}, f"recipe {path}")
