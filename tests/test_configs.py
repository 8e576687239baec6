"""Every shipped MTL config parses through the real entry point (`abaw fit --print_config`).

Like litgpt's config-hub test: a stale key or a renamed argument fails here, not in a user's
run. Also checks that every config key carries a comment (self-documenting YAML).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from abaw.cli import main

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "mtl"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_the_expected_configs_are_shipped() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"default", "vit_mae", "efficientnet_b0", "hybrid", "au_graph"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_parses_through_abaw_fit(config: Path, capsys) -> None:
    assert main(["fit", "--config", str(config), "--print_config"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    shipped = yaml.safe_load(config.read_text())
    # the file's values survive parsing, and the links state a number once
    for section in ("model", "data"):
        for key, value in shipped[section].items():
            assert resolved[section][key] == value, (section, key)
    assert "img_size" not in shipped["model"]  # linked from data.img_size
    assert resolved["checkpoint"]["monitor"] == "val/P_MTL"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_key_is_commented(config: Path) -> None:
    for number, line in enumerate(config.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        assert "#" in line, f"{config.name}:{number}: key without a comment: {stripped}"
