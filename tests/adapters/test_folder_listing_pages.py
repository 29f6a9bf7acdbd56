"""The folder adapter lists a large backlog page by page: memory one page, order kept."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.errors import ConfigError, ConnectionStopError


def _write(provider: FolderProvider, name: str, mtime: int) -> None:
    path = provider.sessions_dir / name
    path.write_text(json.dumps({"name": name}), encoding="utf-8")
    os.utime(path, ns=(mtime, mtime))


def test_every_file_is_offered_once_in_age_order_across_pages(tmp_path: Path) -> None:
    provider = FolderProvider(tmp_path, listing_page=3)
    names = [f"f{n:02d}.json" for n in range(10)]
    for age, name in enumerate(reversed(names)):  # f09 is the oldest
        _write(provider, name, 10**9 + age)
    _write(provider, "tie-b.json", 5)
    _write(provider, "tie-a.json", 5)  # same mtime: the name decides

    offered = [s.handle for s in provider.pending_submissions()]  # nothing acknowledged

    assert offered == ["tie-a.json", "tie-b.json", *reversed(names)]


def test_acknowledging_while_listing_still_offers_every_file_once(tmp_path: Path) -> None:
    provider = FolderProvider(tmp_path, listing_page=2)
    for n in range(7):
        _write(provider, f"f{n}.json", 10**9 + n)
    offered = []
    for submission in provider.pending_submissions():
        offered.append(submission.handle)
        provider.acknowledge(submission.handle)
    assert offered == [f"f{n}.json" for n in range(7)]
    assert sorted(os.listdir(provider.processed_dir)) == offered


def test_a_page_must_hold_at_least_one_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        FolderProvider(tmp_path, listing_page=0)
    assert caught.value.key == "listing_page"


def test_a_processed_folder_swapped_for_a_link_is_refused_on_acknowledge(tmp_path: Path) -> None:
    provider = FolderProvider(tmp_path / "share")
    _write(provider, "a.json", 1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    provider.processed_dir.rmdir()
    provider.processed_dir.symlink_to(elsewhere)
    with pytest.raises(ConnectionStopError):
        provider.acknowledge("a.json")
    assert os.listdir(elsewhere) == []


def test_a_root_reached_through_a_link_is_fine(tmp_path: Path) -> None:
    real = tmp_path / "real"
    FolderProvider(real)
    (tmp_path / "link").symlink_to(real)
    provider = FolderProvider(tmp_path / "link")
    _write(provider, "a.json", 1)
    provider.acknowledge("a.json")
    assert os.listdir(real / "sessions" / "processed") == ["a.json"]
