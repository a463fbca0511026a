"""The exact versions of the libraries ``faust_ext`` subclasses, and the start-up guard.

Every class in ``faust_ext`` overrides methods whose bodies it relies on (it calls
them through ``super()`` and reads the attributes they keep). Upstream changes
exactly these methods from release to release, so a worker refuses to start on
any version it was not tested with, and pyproject.toml pins the same ones.
Moving a pin means running the fault tier (``make test-faults``) under both
guarantees on the new version and changing it here and in pyproject.toml.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from leadscore.errors import UntestedVersions

#: Distribution name -> the version the fault tier passed on.
TESTED = {
    "faust-streaming": "0.15.3",
    "mode-streaming": "0.7.1",
    "aiokafka": "0.14.0",
}


def installed(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def check_versions(tested: dict[str, str] = TESTED) -> None:
    """Raise ``UntestedVersions`` naming each library not at its tested version."""
    wrong = [
        f"{name} {installed(name) or 'not installed'} (tested: {want})"
        for name, want in tested.items()
        if installed(name) != want
    ]
    if wrong:
        raise UntestedVersions(
            "the worker customises these libraries and was not tested with the installed "
            f"versions: {'; '.join(wrong)}. Install the tested ones "
            "(pip install -e . does), or test the new ones with the fault tier and move "
            "the pins in leadscore/stream/faust_ext/versions.py and pyproject.toml"
        )
