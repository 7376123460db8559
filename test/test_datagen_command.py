"""`ellsa datagen` refuses bad input with the reason, before any simulation starts."""
from __future__ import annotations

import pytest

from ellsa_ros.cli import main


@pytest.mark.parametrize("argv, message", [
    (["--suites", "libero_90"], "no scripted expert for suite 'libero_90'"),
    (["--suites", "libero_spatial", "--tasks", "12"], "valid task ids: 0-9"),
    (["--suites", "libero_nowhere"], "unknown LIBERO suite"),
    (["--patterns", "shouting=1"], "unknown interaction pattern"),
    (["--voices", "festival"], "voice backend 'festival'"),
    (["--episodes-per-task", "0"], "episodes_per_task must be >= 1"),
    (["--frame-hz", "3"], "frame_hz=3 Hz does not land on the 20 Hz control ticks"),
    (["--frame-hz", "4", "--block-s", "0.3"], "frame_hz=4 Hz cannot serve 0.3 s blocks"),
    (["--frame-hz", "2", "--block-s", "0.25"], "rates that serve 0.25 s blocks: 4, 20 Hz"),
])
def test_bad_input_is_named(tmp_path, capsys, argv, message):
    code = main(["datagen", "--out", str(tmp_path / "d"), "--no-progress", *argv])
    assert code == 2
    assert message in capsys.readouterr().err


def test_without_out_or_inspect_it_says_what_to_give(capsys):
    assert main(["datagen"]) == 2
    assert "--out DIR" in capsys.readouterr().err


def test_inspecting_a_directory_without_a_dataset_names_the_missing_manifest(tmp_path, capsys):
    assert main(["datagen", "--inspect", str(tmp_path)]) == 2
    assert "manifest.json is missing" in capsys.readouterr().err
