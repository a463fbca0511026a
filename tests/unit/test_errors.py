"""Every exception leadscore defines is a LeadscoreError, so one except clause catches them."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import leadscore
from leadscore.errors import LeadscoreError


def test_every_exception_class_in_leadscore_derives_from_leadscore_error() -> None:
    outside = []
    for module_info in pkgutil.walk_packages(leadscore.__path__, "leadscore."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not issubclass(value, LeadscoreError)
            ):
                outside.append(f"{module.__name__}.{name}")
    assert not outside, outside
