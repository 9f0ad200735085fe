"""The package's shape: one import name, and runtime modules that import one way."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def runtime_imports() -> dict[str, set[str]]:
    """Module -> the runtime modules it imports, anywhere in its body (lazy imports included)."""
    modules = {path.stem: path for path in (REPO / "runtime").glob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:
                    found.add(node.module.split(".")[0])
                elif node.level == 1:
                    found |= {alias.name for alias in node.names if alias.name in modules}
                elif node.module and node.module.startswith("adder."):
                    found.add(node.module.split(".")[1])
                assert node.module not in ("runtime", "train", "export"), f"{name} imports an old name"
        graph[name] = found & set(modules) - {name}
    return graph


def test_no_two_runtime_modules_import_each_other_directly_or_through_others():
    graph = runtime_imports()

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    circles = [name for name in graph if name in reachable(name)]
    assert circles == [], f"import circles through {circles}"
    assert graph["grammar"] == set(), "grammar is the ground floor: it imports nothing of ours"
    assert "codec" not in reachable("config")


def test_the_package_answers_from_a_folder_holding_files_named_like_its_parts(tmp_path):
    for name in ("train", "runtime", "export", "codec", "grammar"):
        (tmp_path / f"{name}.py").write_text("raise SystemExit('the user file ran')\n")
    run = subprocess.run(
        [sys.executable, "-c", "from adder import Adder, QueryError, ModelError; print(Adder()('3+10'))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert (run.returncode, run.stdout.strip()) == (0, "13"), run.stderr
    run = subprocess.run([sys.executable, "-m", "adder", "3+10"], cwd=tmp_path, capture_output=True, text=True)
    assert (run.returncode, run.stdout.strip()) == (0, "13"), run.stderr


def test_pyproject_installs_one_top_level_name():
    import tomllib

    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {name.split(".")[0] for name in setup["packages"]} == {"adder"}
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert all(target.startswith("adder.") for target in scripts.values())


# The rooms, lowest first: each may import only those before it (and itself).
LAYERS = {"runtime": "adder", "eval": "adder.eval", "train": "adder.train", "export": "adder.export", "commands": "adder.commands"}
ORDER = list(LAYERS)
HEAVY = {"tensorflow", "keras", "tf2onnx", "onnx", "jax", "torch", "matplotlib", "typer"}


def room_of(module: str) -> str | None:
    """The room an ``adder...`` import lands in."""
    parts = module.split(".")
    if parts[0] != "adder":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS and parts[1] != "runtime" else "runtime"


def imports_of(folder: str) -> dict[str, set[str]]:
    """Each module of a room -> every module it imports anywhere in its body, lazy imports included."""
    found = {}
    for path in sorted((REPO / folder).glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
        found[f"{folder}/{path.name}"] = names
    return found


def test_the_package_graph_runs_one_way_runtime_eval_train_export_commands():
    upward = []
    for folder in ORDER:
        allowed = set(ORDER[: ORDER.index(folder) + 1])
        for module, names in imports_of(folder).items():
            rooms = {room_of(name) for name in names} - {None}
            upward += [f"{module} imports adder.{room}" for room in sorted(rooms - allowed)]
    assert upward == []


def test_evaluation_needs_only_numpy_and_the_runtime_and_training_never_reaches_export():
    for module, names in imports_of("eval").items():
        heavy = {name.split(".")[0] for name in names} & HEAVY
        assert not heavy, f"{module} imports {heavy}"
    for module, names in imports_of("train").items():
        assert not any(name.startswith(("adder.export", "adder.commands")) for name in names), module
    for module, names in imports_of("export").items():
        assert not any(name.startswith("adder.commands") for name in names), module


def test_no_module_of_the_training_side_is_long():
    long = [
        f"{path.relative_to(REPO)}: {n} lines"
        for folder in ("eval", "train", "export", "commands")
        for path in (REPO / folder).glob("*.py")
        if (n := len(path.read_text().splitlines())) > 420
    ]
    assert long == []


def test_every_command_is_a_thin_function_over_a_library_entry_point():
    """The typer apps live in adder.commands; no library room defines one."""
    for folder in ("eval", "train", "export"):
        for module, names in imports_of(folder).items():
            assert "typer" not in {name.split(".")[0] for name in names}, f"{module} imports typer"
