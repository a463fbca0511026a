"""The state directory is claimed for one cluster and app; foreign state is cleared."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadscore.errors import ConfigError
from leadscore.stream.state_dir import begin_run, claim_state_dir, end_run


def test_own_state_is_kept_and_foreign_state_is_cleared(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert claim_state_dir(state, "cluster-a", "leadscore", "events") is False
    (state / "v1" / "tables" / "leads-0.db").mkdir(parents=True)
    assert claim_state_dir(state, "cluster-a", "leadscore", "events") is False
    assert (state / "v1" / "tables" / "leads-0.db").exists()
    assert claim_state_dir(state, "cluster-b", "leadscore", "events") is True
    assert not (state / "v1").exists()


def test_unmarked_state_is_not_trusted(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "v1").mkdir(parents=True)
    assert claim_state_dir(state, "cluster-a", "leadscore", "events") is True
    assert not (state / "v1").exists()


def test_a_directory_with_other_files_is_refused_not_emptied(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match=r"thesis\.tex"):
        claim_state_dir(tmp_path, "cluster-a", "leadscore", "events")
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_state_of_a_run_that_did_not_stop_cleanly_is_discarded(tmp_path: Path) -> None:
    state = tmp_path / "state"
    claim_state_dir(state, "cluster-a", "leadscore", "events")
    assert begin_run(state) is False
    (state / "v1" / "tables").mkdir(parents=True)
    end_run(state)  # a clean stop
    assert begin_run(state) is False
    assert (state / "v1" / "tables").exists()
    # killed: no end_run, so the next start finds the marker and discards the tables
    assert begin_run(state) is True
    assert not (state / "v1").exists()
    assert claim_state_dir(state, "cluster-a", "leadscore", "events") is False
