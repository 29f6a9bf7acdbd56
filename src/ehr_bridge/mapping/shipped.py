"""The mappings shipped with ehr-bridge, and a config's bare ``mapping = "iaptus"``.

``[[connection]] mapping`` is a file path, relative to the config file's folder. A bare
name with no folder and no suffix (``iaptus``, ``pcmis``, ``fhir-r4``, ``hl7v2-ref-i12``)
that is not a file there names the mapping shipped in the repository's ``mappings/``
folder instead, so a config need not copy it.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve()
#: where shipped mappings are looked for: the repository's folder, then an installed copy
_FOLDERS = (_HERE.parents[3] / "mappings", _HERE.parents[1] / "_mappings")


def bundled_mapping(name: str) -> Path:
    """A mapping file shipped with ehr-bridge (``iaptus.yaml``); FileNotFoundError if none."""
    for folder in _FOLDERS:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"bundled mapping {name} not found")


def shipped_names() -> list[str]:
    """The names a config may give bare: each shipped ``*.yaml`` without its suffix."""
    names = {path.stem for folder in _FOLDERS if folder.is_dir() for path in folder.glob("*.yaml")}
    return sorted(names)


def is_bare_name(value: Path | str) -> bool:
    """True for ``iaptus`` (no folder, no suffix); False for ``iaptus.yaml`` or ``m/x``."""
    path = Path(value)
    return len(path.parts) == 1 and not path.suffix and str(value) not in ("", ".", "..")


def shipped_mapping(name: str) -> Path | None:
    """The shipped mapping a bare name stands for, or None."""
    if not is_bare_name(name):
        return None
    try:
        return bundled_mapping(f"{name}.yaml")
    except FileNotFoundError:
        return None
