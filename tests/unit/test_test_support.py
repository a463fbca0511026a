"""The test harness's own helpers that need no broker."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from tests.integration.kafka import retrying


def test_a_coordinator_still_loading_is_asked_again_and_other_errors_are_not() -> None:
    """A fresh-clone CI run failed on NOT_COORDINATOR right after a broker restart. The
    client raises it with retriable() False, so the harness names such codes itself."""
    answers = [KafkaException(KafkaError(KafkaError.NOT_COORDINATOR))] * 2 + ["offsets"]

    def committed() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert retrying(committed, timeout=10) == "offsets"

    def refused() -> None:
        raise KafkaException(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED))

    with pytest.raises(KafkaException):
        retrying(refused, timeout=10)
