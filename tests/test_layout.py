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
