"""Every shipped MTL combination (base.yaml, base.yaml + each overlay) parses through the real
entry point (`abaw mtl fit --print_config`), and an overlay's values win over the base's.

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


BASE = CONFIG_DIR / "base.yaml"
OVERLAYS = [p for p in CONFIGS if p != BASE]


def test_each_overlay_changes_the_base_and_names_its_own_run_folder() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"base", "vit_mae", "efficientnet_b0", "hybrid", "au_graph", "gpu"} <= names
    base = yaml.safe_load(BASE.read_text())
    for overlay in OVERLAYS:
        values = yaml.safe_load(overlay.read_text())
        changed = [(section, key) for section, keys in values.items() if isinstance(keys, dict)
                   for key, value in keys.items() if base.get(section, {}).get(key) != value]
        assert changed, f"{overlay.name} repeats the base"
        folder = values["trainer"]["default_root_dir"]
        assert folder == f"runs/mtl/{overlay.stem}", overlay.name  # runs never share a folder


@pytest.mark.parametrize("overlays", [[], *([o] for o in OVERLAYS)],
                         ids=["base", *(o.stem for o in OVERLAYS)])
def test_config_parses_through_abaw_mtl_fit(overlays: list[Path], capsys) -> None:
    stacked = [a for c in (BASE, *overlays) for a in ("--config", str(c))]
    assert main(["mtl", "fit", *stacked, "--print_config"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    # every file's values survive parsing (the overlay's over the base's), and the links
    # state a number once
    expected: dict[str, dict] = {"model": {}, "data": {}}
    for config in (BASE, *overlays):
        shipped = yaml.safe_load(config.read_text())
        for section in expected:
            expected[section].update(shipped.get(section, {}))
        assert "img_size" not in shipped.get("model", {})  # linked from data.img_size
    for section, values in expected.items():
        for key, value in values.items():
            assert resolved[section][key] == value, (section, key)
    assert resolved["checkpoint"]["monitor"] == "val/P_MTL"


def test_overlays_are_differences_not_copies() -> None:
    for overlay in OVERLAYS:
        assert len(overlay.read_text().splitlines()) < 30, overlay.name


def test_bare_lightning_commands_name_the_challenge(capsys) -> None:
    assert main(["fit", "--config", str(BASE)]) == 2
    assert "abaw mtl fit" in capsys.readouterr().err


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_key_is_commented(config: Path) -> None:
    for number, line in enumerate(config.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        assert "#" in line, f"{config.name}:{number}: key without a comment: {stripped}"
