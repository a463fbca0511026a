"""Every table's RocksDB store is bounded by the settings, not Faust's defaults."""

from __future__ import annotations

from pathlib import Path

from leadscore.config import Settings
from leadscore.scoring import load_rules
from leadscore.stream.app import build_app


def test_every_store_uses_the_configured_memory_bounds(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        web_enabled=False,
        rocksdb_write_buffer_bytes=1 << 20,
        rocksdb_block_cache_bytes=3 << 20,
    )
    app = build_app(settings, load_rules(), partitions=2)
    names = set(app.tables.keys())
    assert names == {"leads", "accounts"}  # timers, census and history: derived from records
    for name in names:
        options = app.tables[name].data.rocksdb_options
        assert options.write_buffer_size == 1 << 20, name
        assert options.max_write_buffer_number == 2, name
        assert options.block_cache_size == 3 << 20, name
