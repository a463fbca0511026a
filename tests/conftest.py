"""Shared test configuration."""

from __future__ import annotations

import os

from hypothesis import settings

# CI runs more examples of each scoring law; local runs stay quick.
settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
