"""``FolderProvider``: the provider port over a folder shared with the therapy platform."""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from ehr_bridge.adapters.base import JsonDict, KeptFile, ProviderSubmission
from ehr_bridge.adapters.folder._files import (
    TEMP_SUFFIX,
    UnreadableFileError,
    atomic_write_bytes,
    is_plain_name,
    is_safe_id,
    no_link_out,
    read_regular_file,
)
from ehr_bridge.errors import ConfigError, ConnectionStopError, TerminalError, TransientError
from ehr_bridge.security.files import private_dir

#: key of the placeholder bundle offered for a file that cannot be read as a JSON object
UNREADABLE_KEY = "_unreadable"

DEFAULT_MAX_FILE_BYTES = 5 * 1024 * 1024

#: session files listed per scan of ``sessions/`` (memory is one page, not the backlog)
LISTING_PAGE = 5000


class FolderProvider:
    """Hands referrals to the platform and collects its session bundles through a folder.

    Layout under ``root`` (created at construction)::

        referrals/<service_request_id>.json   written by us, replaced on redelivery
        sessions/<name>.json                  written by the platform, offered to collect
        sessions/processed/<name>             moved here by ``acknowledge``
        sessions/rejected/<name>              moved here by ``reject`` (unreadable files)

    A file moved to ``processed/`` or ``rejected/`` is dated by the move, and
    ``retention purge`` deletes it ``retention_days`` later (``kept_files``).
    """

    def __init__(
        self,
        root: Path,
        *,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        listing_page: int = LISTING_PAGE,
    ) -> None:
        if max_file_bytes < 1:
            raise ConfigError("must be a positive number of bytes", key="max_file_bytes")
        if listing_page < 1:
            raise ConfigError("must be a positive number of files", key="listing_page")
        self.root = Path(root)
        self.max_file_bytes = max_file_bytes
        self.listing_page = listing_page
        self.referrals_dir = self.root / "referrals"
        self.sessions_dir = self.root / "sessions"
        self.processed_dir = self.sessions_dir / "processed"
        self.rejected_dir = self.sessions_dir / "rejected"
        self._create_folders()

    def __repr__(self) -> str:
        return f"FolderProvider(root={str(self.root)!r}, max_file_bytes={self.max_file_bytes})"

    def _create_folders(self) -> None:
        """Fail at start-up when the root cannot hold the layout, not on the first delivery."""
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError("is not a directory", key="root")
        folders = (self.referrals_dir, self.sessions_dir, self.processed_dir, self.rejected_dir)
        try:
            for folder in folders:
                private_dir(folder)
        except OSError as exc:
            raise ConfigError("cannot create the folder layout under it", key="root") from exc
        try:
            self._check_layout()
        except ConnectionStopError as exc:
            raise ConfigError(exc.safe_message, key="root") from None

    def _check_layout(self) -> None:
        """Refuse to read or write through a folder that was replaced by a link out."""
        folders = (self.referrals_dir, self.sessions_dir, self.processed_dir, self.rejected_dir)
        for folder in folders:
            if not no_link_out(folder, self.root):
                name = folder.relative_to(self.root)
                raise ConnectionStopError(f"provider folder {name} is a link or missing: refused")

    def deliver_referral(self, service_request_id: str, bundle: JsonDict) -> None:
        """Write the referral bundle whole, so the platform never reads half a referral.

        Redelivery replaces the file: the platform always sees the latest version.

        Raises:
            TerminalError: the id could build a path outside the folder, or the bundle is
                not JSON; retrying the same call cannot succeed.
            TransientError: the disk refused the write (full, permissions flapping).
        """
        if not is_safe_id(service_request_id):
            raise TerminalError(
                "service request id is not a safe file name (letters, digits, dot and dash, "
                "1 to 64 characters, not starting with a dot)",
                code="unsafe_id",
            )
        data = _encode(bundle)
        self._check_layout()
        try:
            atomic_write_bytes(self.referrals_dir / f"{service_request_id}.json", data)
        except OSError as exc:
            raise TransientError("could not write the referral file") from exc

    def pending_submissions(self) -> Iterator[ProviderSubmission]:
        """Session files not yet acknowledged, oldest first by (mtime, name).

        A file that cannot be offered as a JSON object is still yielded, with the
        placeholder bundle ``{"_unreadable": <reason>}``, so one bad file never hides
        the others and the engine can quarantine it by handle.
        """
        self._check_layout()
        after: tuple[int, str] | None = None
        while True:
            page = self._pending_page(after)
            for _, name in page:
                if not _is_text_name(name):
                    yield self._set_aside_badly_named(name)
                    continue
                try:
                    bundle = self._load(self.sessions_dir / name)
                except FileNotFoundError:
                    continue  # acknowledged or renamed since the listing
                yield ProviderSubmission(handle=name, bundle=bundle)
            if len(page) < self.listing_page:
                return
            after = page[-1]

    def _set_aside_badly_named(self, name: str) -> ProviderSubmission:
        """A file whose name is not text (bytes that are not UTF-8, control characters).

        Such a name cannot be stored, printed or logged as it is, so the file is moved to
        ``rejected/`` at once under a safe form of its name (its bytes percent-encoded)
        and offered as unreadable under that name: collect quarantines it, and support
        staff find it in ``rejected/`` by the name the quarantine entry shows.
        """
        safe = safe_file_name(name)
        try:
            os.replace(self.sessions_dir / name, self.rejected_dir / safe)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise TransientError("could not move the session file") from exc
        else:
            _stamp_now(self.rejected_dir / safe)
        return ProviderSubmission(handle=safe, bundle={UNREADABLE_KEY: "file_name_not_text"})

    def acknowledge(self, handle: str) -> None:
        """Move a collected file to ``processed/``; a repeat or a missing file is a no-op."""
        self._move(handle, self.processed_dir)

    def reject(self, handle: str) -> None:
        """Move an unusable file to ``rejected/`` so operators can tell it from stored ones."""
        self._move(handle, self.rejected_dir)

    def _pending_page(self, after: tuple[int, str] | None) -> list[tuple[int, str]]:
        """The oldest ``listing_page`` candidates after ``after``, as (mtime_ns, name).

        A backlog of 100,000 files is never held as one list: each page is a fresh scan
        that keeps only the smallest keys (``heapq.nsmallest``), so memory stays one page
        deep. Starting after the last key offered means a file left in place (not
        acknowledged) is offered once per call, not again on every page; a file that
        appears with an older key meanwhile waits for the next call.
        """
        return heapq.nsmallest(self.listing_page, self._candidates(after))

    def _candidates(self, after: tuple[int, str] | None) -> Iterator[tuple[int, str]]:
        with os.scandir(self.sessions_dir) as entries:
            for entry in entries:
                if not _is_candidate(entry.name):
                    continue
                try:
                    key = (entry.stat(follow_symlinks=False).st_mtime_ns, entry.name)
                except FileNotFoundError:
                    continue  # moved away between listing and stat
                if after is None or key > after:
                    yield key

    def _load(self, path: Path) -> JsonDict:
        """The file's JSON object, or the unreadable placeholder saying why it is not one."""
        try:
            data = read_regular_file(path, max_bytes=self.max_file_bytes)
        except UnreadableFileError as exc:
            return {UNREADABLE_KEY: exc.reason}
        try:
            parsed = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
        except UnicodeDecodeError:
            return {UNREADABLE_KEY: "not_utf8"}
        except (ValueError, RecursionError):
            return {UNREADABLE_KEY: "not_json"}
        if not isinstance(parsed, dict):
            return {UNREADABLE_KEY: "not_object"}
        return parsed

    def _move(self, handle: str, folder: Path) -> None:
        """Move ``sessions/<handle>`` into ``folder``; the handle must be a plain file name."""
        if not _is_candidate(handle):
            raise TerminalError("handle is not a session file name", code="unsafe_handle")
        self._check_layout()
        try:
            os.replace(self.sessions_dir / handle, folder / handle)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise TransientError("could not move the session file") from exc
        _stamp_now(folder / handle)

    # --- retention (KeepsFiles) ----------------------------------------------------------
    def kept_files(self, before: datetime) -> Iterator[KeptFile]:
        """Files in ``processed/`` and ``rejected/`` moved there before ``before``.

        A rejected file is the only copy of an unreadable submission, so it names the
        quarantine entry (its ``record_ref`` is the file's name) it must outlive.
        """
        self._check_layout()
        limit = before.timestamp()
        for label, folder in self._kept_folders().items():
            with os.scandir(folder) as entries:
                for entry in entries:
                    if not is_plain_name(entry.name):
                        continue
                    info = entry.stat(follow_symlinks=False)
                    if info.st_mtime < limit and not stat.S_ISDIR(info.st_mode):
                        moved = datetime.fromtimestamp(info.st_mtime, UTC)
                        ref = entry.name if folder == self.rejected_dir else None
                        yield KeptFile(label, entry.name, moved, quarantine_ref=ref)

    def remove_kept(self, kept: KeptFile) -> bool:
        """Delete one kept file (a link is removed, never followed)."""
        folder = self._kept_folders().get(kept.folder)
        if folder is None or not is_plain_name(kept.name):
            raise TerminalError("not a file this folder keeps", code="unsafe_handle")
        self._check_layout()
        try:
            os.unlink(folder / kept.name)
        except FileNotFoundError:
            return False
        return True

    def _kept_folders(self) -> dict[str, Path]:
        return {"sessions/processed": self.processed_dir, "sessions/rejected": self.rejected_dir}


def _stamp_now(path: Path) -> None:
    """Date a file moved aside by when it was moved, the time retention counts from.

    A file the platform owns and did not let us write keeps its own time (an earlier one).
    """
    with contextlib.suppress(OSError):
        os.utime(path, follow_symlinks=False)


def _is_text_name(name: str) -> bool:
    """Whether a file name is text we may store and print (UTF-8, no control characters)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept by the OS as surrogates
        return False
    return not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name)


def safe_file_name(name: str) -> str:
    """``name`` with every byte outside printable ASCII percent-encoded (``s%E9ance.json``)."""
    raw = os.fsencode(name)
    return "".join(chr(b) if 32 < b < 127 and b != 37 else f"%{b:02X}" for b in raw)


def _is_candidate(name: str) -> bool:
    """Whether a ``sessions/`` entry is a finished submission (not a temp or hidden file)."""
    return is_plain_name(name) and name.endswith(".json") and not name.endswith(TEMP_SUFFIX)


def _refuse_constant(name: str) -> None:
    """Refuse NaN and Infinity: JSON has no such numbers and FHIR would reject them later."""
    raise ValueError("non-standard JSON constant")


def _encode(bundle: JsonDict) -> bytes:
    """Stable UTF-8 JSON, so an unchanged redelivery writes identical bytes."""
    if not isinstance(bundle, dict):
        raise TerminalError("referral bundle is not a JSON object", code="not_json")
    try:
        text = json.dumps(bundle, ensure_ascii=False, sort_keys=True, indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TerminalError("referral bundle is not JSON-serialisable", code="not_json") from exc
    return (text + "\n").encode("utf-8")
