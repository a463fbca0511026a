"""The worker's check that events are on their contact's murmur2 partition."""

from __future__ import annotations

import logging

import pytest

from leadscore.stream.partitioning import PartitionCheck, key_partition

# Kafka's own test vectors for Utils.murmur2 (clients/.../utils/UtilsTest.java).
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "hashed"), JAVA_MURMUR2.items())
def test_a_key_goes_where_a_java_producer_puts_it(key: bytes, hashed: int) -> None:
    # Java: Utils.toPositive(Utils.murmur2(key)) % numPartitions
    for partitions in (1, 3, 12, 100):
        assert key_partition(key, partitions) == (hashed & 0x7FFFFFFF) % partitions


def test_off_partition_events_are_counted_and_said_once_a_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    check = PartitionCheck(3, every=60.0, clock=lambda: now[0])
    home = key_partition(b"alice@example.com", 3)
    away = (home + 1) % 3
    with caplog.at_level(logging.WARNING, "leadscore.stream.partitioning"):
        assert check.on_partition(b"alice@example.com", home)
        assert not check.on_partition(b"alice@example.com", away)  # said at once
        assert not check.on_partition(b"alice@example.com", away)  # counted, not said
        now[0] = 61.0
        assert not check.on_partition(b"alice@example.com", away)  # said, with both
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2
    assert f"1 on partition {away}" in said[0]
    assert f"2 on partition {away}" in said[1]
    assert all("alice" not in line for line in said)  # no contact ids (PII) in logs
