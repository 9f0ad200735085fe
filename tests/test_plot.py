"""Training curves are a real PNG, drawn from any record."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")

RECORD = {
    "command": "adder-train --largest 9",
    "history": [
        {"epoch": 0, "full_check_wrong": 40, "replay_pool": 40},
        {"epoch": 1, "loss": 1.5, "probe_exact_match": 0.2, "replay_pool": 60},
        {"epoch": 2, "loss": 0.5, "probe_exact_match": 0.9, "replay_pool": 70, "full_check_wrong": 3},
        {"epoch": 3, "loss": 0.1, "probe_exact_match": 1.0, "replay_pool": 3},
    ],
    "evaluation": {"wrong": 0, "total": 100},
}


def test_curves_are_a_png_matplotlib_reads_back(tmp_path):
    import matplotlib.image

    from adder.train.plot import draw_curves

    draw_curves(RECORD, tmp_path / "m.png")
    data = (tmp_path / "m.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(tmp_path / "m.png").shape
    assert width >= 600 and height >= 400
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]  # no temp file left


def test_adder_plot_redraws_from_a_record_and_refuses_an_empty_one(tmp_path):
    config = {"min_terms": 2, "max_terms": 2, "max_operand": 9, "training": RECORD}
    (tmp_path / "m.json").write_text(json.dumps(config))
    command = [sys.executable, "-c", "from adder.commands.plot import main; main()"]
    result = subprocess.run([*command, str(tmp_path / "m.json")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "e.json").write_text(json.dumps({"training": {}}))
    result = subprocess.run([*command, str(tmp_path / "e.json")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "no training history" in result.stderr


@pytest.mark.parametrize("name", ["a$b.keras", "$$.keras", "cost $5 {x}^2.keras"])
def test_a_dollar_in_a_file_name_is_drawn_as_itself_not_as_mathtext(tmp_path, name):
    from adder.train.plot import draw_curves

    draw_curves(RECORD | {"command": f"adder-train --out {name}"}, tmp_path / "m.png", title=f"{name}: 2 terms")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
