"""Unit tests of the project's Ansible plugins: they load the plugin files directly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def load_plugin(kind: str, name: str) -> ModuleType:
    """plugins/<kind>/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(
        f"plugin_{kind}_{name}", PLUGINS / kind / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
