"""Shared test configuration."""

from __future__ import annotations

import logging
import os

from hypothesis import settings

# librdkafka's log lines of the tests' own clients (tests/support/brokers.py): only
# errors reach a failing test's captured log; LEADSCORE_TEST_KAFKA_LOG=info shows all.
logging.getLogger("tests.librdkafka").setLevel(
    os.environ.get("LEADSCORE_TEST_KAFKA_LOG", "error").upper()
)

# CI runs more examples of each scoring law; local runs stay quick.
settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
