"""The hosts of a group in the running Molecule scenario's inventory (MOLECULE_INVENTORY_FILE).

Tests that run in more than one scenario (molecule/cluster and molecule/gateway tests, also run on
the platform scenario's hosts) name their hosts by group, not by container name."""

from __future__ import annotations

import os
from pathlib import Path

import yaml


def group(name: str) -> list[str]:
    inventory = yaml.safe_load(Path(os.environ["MOLECULE_INVENTORY_FILE"]).read_text())
    return sorted(inventory[name]["hosts"])
