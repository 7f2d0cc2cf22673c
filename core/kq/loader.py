"""Finding the user's app from ``-A module:attribute`` (the worker, the CLI, process pools)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from .app import App
from .exceptions import ConfigurationError


def load_app(spec: str) -> App:
    """Import ``module:attribute`` (or ``module``, which must hold exactly one App)."""
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the app usually lives here
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"-A {spec}: cannot import {module_name!r}: {exc}") from None
    if attribute:
        app: Any = module
        for part in attribute.split("."):
            app = getattr(app, part, None)
        if not isinstance(app, App):
            raise ConfigurationError(f"-A {spec}: {attribute!r} in {module_name} is not a kq App")
        return app
    apps = [v for v in vars(module).values() if isinstance(v, App)]
    if len(apps) != 1:
        found = "none" if not apps else f"{len(apps)}"
        raise ConfigurationError(
            f"-A {spec}: expected one kq App in {module_name}, found {found}; name it as -A {module_name}:app"
        )
    return apps[0]
