"""The folder provider adapter: atomic delivery, ordered collection, safe names, bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehr_bridge.adapters.base import ProviderPort
from ehr_bridge.adapters.folder import UNREADABLE_KEY, FolderProvider
from ehr_bridge.domain.validate import parse_session_bundle
from ehr_bridge.errors import ConfigError, RecordValidationError, TerminalError, TransientError

BUNDLE = {"resourceType": "Bundle", "id": "sr-1", "type": "collection", "entry": []}


def _write_session(provider: FolderProvider, name: str, body: object, mtime: int) -> Path:
    path = provider.sessions_dir / name
    path.write_text(json.dumps(body), encoding="utf-8")
    os.utime(path, ns=(mtime, mtime))
    return path


def _pending(provider: FolderProvider) -> list[tuple[str, dict[str, object]]]:
    return [(s.handle, s.bundle) for s in provider.pending_submissions()]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- construction -----------------------------------------------------------------------


def test_folder_creates_layout_and_satisfies_the_port(tmp_path: Path) -> None:
    provider = FolderProvider(tmp_path / "share")
    for sub in ("referrals", "sessions", "sessions/processed", "sessions/rejected"):
        assert (tmp_path / "share" / sub).is_dir()
    assert isinstance(provider, ProviderPort)


def test_folder_root_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.write_text("x")
    with pytest.raises(ConfigError) as caught:
        FolderProvider(root)
    assert caught.value.key == "root"


def test_folder_root_under_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError):
        FolderProvider(tmp_path / "file" / "below")


def test_folder_max_file_bytes_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        FolderProvider(tmp_path, max_file_bytes=0)
    assert caught.value.key == "max_file_bytes"


# --- delivery ---------------------------------------------------------------------------


def test_folder_delivery_writes_the_bundle_and_redelivery_replaces_it(tmp_path: Path) -> None:
    provider = FolderProvider(tmp_path)
    provider.deliver_referral("sr-1", BUNDLE)
    provider.deliver_referral("sr-1", {**BUNDLE, "entry": [{"resource": {"id": "p"}}]})
    target = provider.referrals_dir / "sr-1.json"
    assert json.loads(target.read_text(encoding="utf-8"))["entry"] == [{"resource": {"id": "p"}}]
    assert sorted(p.name for p in provider.referrals_dir.iterdir()) == ["sr-1.json"]


def test_folder_same_bundle_delivered_twice_gives_identical_bytes(tmp_path: Path) -> None:
    provider = FolderProvider(tmp_path)
    provider.deliver_referral("sr-1", BUNDLE)
    first = (provider.referrals_dir / "sr-1.json").read_bytes()
    provider.deliver_referral("sr-1", dict(reversed(list(BUNDLE.items()))))
    assert (provider.referrals_dir / "sr-1.json").read_bytes() == first


def test_folder_failed_rename_keeps_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = FolderProvider(tmp_path)
    provider.deliver_referral("sr-1", BUNDLE)
    before = (provider.referrals_dir / "sr-1.json").read_bytes()

    def disk_full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(TransientError):
        provider.deliver_referral("sr-1", {**BUNDLE, "id": "changed"})
    assert (provider.referrals_dir / "sr-1.json").read_bytes() == before
    assert _leftovers(provider.referrals_dir) == []


def test_folder_unserialisable_bundle_is_terminal_and_writes_nothing(tmp_path: Path) -> None:
    provider = FolderProvider(tmp_path)
    with pytest.raises(TerminalError):
        provider.deliver_referral("sr-1", {"when": object()})
    with pytest.raises(TerminalError):
        provider.deliver_referral("sr-1", {"score": float("nan")})
    assert list(provider.referrals_dir.iterdir()) == []


@pytest.mark.parametrize(
    "bad_id",
    ["", "../escape", "a/b", "..", ".hidden", "x" * 65, "a b", "a\0b", "/abs", "a\\b", "é"],
)
def test_folder_unsafe_ids_are_refused_without_echoing_them(tmp_path: Path, bad_id: str) -> None:
    provider = FolderProvider(tmp_path / "share")
    with pytest.raises(TerminalError) as caught:
        provider.deliver_referral(bad_id, BUNDLE)
    assert caught.value.code == "unsafe_id"
    if bad_id:
        assert bad_id not in str(caught.value)
    assert list(provider.referrals_dir.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["share"]


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(service_request_id=st.text(max_size=70))
def test_folder_any_id_either_lands_in_referrals_or_is_refused(
    tmp_path: Path, service_request_id: str
) -> None:
    provider = FolderProvider(tmp_path / "share")
    try:
        provider.deliver_referral(service_request_id, BUNDLE)
    except TerminalError:
        return
    written = (provider.referrals_dir / f"{service_request_id}.json").resolve()
    assert written.parent == provider.referrals_dir.resolve()
    written.unlink()


# --- collection -------------------------------------------------------------------------


def test_folder_pending_is_ordered_by_mtime_then_name(tmp_path: Path) -> None:
    provider = FolderProvider(tmp_path)
    _write_session(provider, "c.json", {"n": "c"}, 3_000)
    _write_session(provider, "b.json", {"n": "b"}, 1_000)
    _write_session(provider, "a.json", {"n": "a"}, 3_000)
    assert _pending(provider) == [
        ("b.json", {"n": "b"}),
        ("a.json", {"n": "a"}),
        ("c.json", {"n": "c"}),
    ]


def test_folder_temp_hidden_and_other_files_are_not_offered(tmp_path: Path) -> None:
    provider = FolderProvider(tmp_path)
    for name in ("s1.json.tmp", "s2.tmp", ".s3.json", "notes.txt", "s4.JSON.part"):
        _write_session(provider, name, {"n": name}, 1_000)
    _write_session(provider, "ok.json", {"n": "ok"}, 1_000)
    (provider.processed_dir / "old.json").write_text("{}")
    assert [handle for handle, _ in _pending(provider)] == ["ok.json"]


def test_folder_symlink_is_offered_as_unreadable_and_never_followed(tmp_path: Path) -> None:
    provider = FolderProvider(tmp_path / "share")
    outside = tmp_path / "secret.json"
    outside.write_text(json.dumps({"resourceType": "Bundle"}))
    (provider.sessions_dir / "link.json").symlink_to(outside)
    (provider.sessions_dir / "dangling.json").symlink_to(tmp_path / "missing.json")
    assert sorted(_pending(provider)) == [
        ("dangling.json", {UNREADABLE_KEY: "symlink"}),
        ("link.json", {UNREADABLE_KEY: "symlink"}),
    ]
    provider.reject("link.json")
    assert (provider.rejected_dir / "link.json").is_symlink()
    assert outside.read_text() == json.dumps({"resourceType": "Bundle"})


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "not_json"),
        (b"[1, 2]", "not_object"),
        (b'{"a": NaN}', "not_json"),
        (b"\xff\xfe{}", "not_utf8"),
        (b"[" * 100_000 + b"]" * 100_000, "too_large"),
    ],
)
def test_folder_bad_files_are_offered_with_a_reason(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    provider = FolderProvider(tmp_path, max_file_bytes=1_000)
    (provider.sessions_dir / "bad.json").write_bytes(content)
    _write_session(provider, "good.json", {"ok": True}, 0)
    assert dict(_pending(provider)) == {
        "bad.json": {UNREADABLE_KEY: reason},
        "good.json": {"ok": True},
    }


def test_folder_deeply_nested_json_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    provider = FolderProvider(tmp_path)
    (provider.sessions_dir / "deep.json").write_bytes(b"[" * 200_000 + b"]" * 200_000)
    assert _pending(provider) == [("deep.json", {UNREADABLE_KEY: "not_json"})]


def test_folder_file_exactly_at_the_limit_is_read(tmp_path: Path) -> None:
    body = b'{"a": "' + b"x" * 20 + b'"}'
    provider = FolderProvider(tmp_path, max_file_bytes=len(body))
    (provider.sessions_dir / "edge.json").write_bytes(body)
    assert _pending(provider) == [("edge.json", {"a": "x" * 20})]


def test_folder_directory_named_like_a_bundle_is_unreadable(tmp_path: Path) -> None:
    provider = FolderProvider(tmp_path)
    (provider.sessions_dir / "odd.json").mkdir()
    assert _pending(provider) == [("odd.json", {UNREADABLE_KEY: "not_regular_file"})]


def test_folder_file_gone_between_listing_and_read_is_skipped(tmp_path: Path) -> None:
    provider = FolderProvider(tmp_path)
    _write_session(provider, "a.json", {"n": "a"}, 1_000)
    _write_session(provider, "b.json", {"n": "b"}, 2_000)
    pending = provider.pending_submissions()
    assert next(pending).handle == "a.json"
    (provider.sessions_dir / "b.json").unlink()
    assert list(pending) == []


# --- acknowledge ------------------------------------------------------------------------


def test_folder_acknowledge_moves_to_processed_and_is_idempotent(tmp_path: Path) -> None:
    provider = FolderProvider(tmp_path)
    _write_session(provider, "a.json", {"n": "a"}, 1_000)
    _write_session(provider, "b.json", {"n": "b"}, 2_000)
    provider.acknowledge("a.json")
    provider.acknowledge("a.json")
    provider.acknowledge("never-existed.json")
    assert json.loads((provider.processed_dir / "a.json").read_text()) == {"n": "a"}
    assert [handle for handle, _ in _pending(provider)] == ["b.json"]


@pytest.mark.parametrize(
    "handle", ["../referrals/x.json", "processed", "a/b.json", ".hidden.json", "x.json.tmp", ""]
)
def test_folder_acknowledge_refuses_handles_that_are_not_session_names(
    tmp_path: Path, handle: str
) -> None:
    provider = FolderProvider(tmp_path)
    provider.deliver_referral("x", BUNDLE)
    with pytest.raises(TerminalError):
        provider.acknowledge(handle)
    assert (provider.referrals_dir / "x.json").exists()


def test_folder_repr_names_only_the_folder(tmp_path: Path) -> None:
    assert repr(FolderProvider(tmp_path)).startswith("FolderProvider(root=")


def test_folder_unreadable_placeholder_is_refused_by_collect_validation(tmp_path: Path) -> None:
    provider = FolderProvider(tmp_path, max_file_bytes=10)
    (provider.sessions_dir / "big.json").write_text(json.dumps({"resourceType": "Bundle"}))
    [submission] = list(provider.pending_submissions())
    with pytest.raises(RecordValidationError):
        parse_session_bundle(submission.bundle)
