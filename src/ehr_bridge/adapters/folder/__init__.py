"""The ``folder`` provider adapter: FHIR bundles exchanged through a shared directory.

The embedded default way to reach a therapy platform: we write one referral Bundle per
ServiceRequest into ``referrals/``; the platform writes session Bundles into ``sessions/``.
Both sides write atomically (temp file in the same folder, fsync, rename), so neither ever
reads half a file; names ending in ``.tmp`` and hidden names are never offered.

Unreadable files. ``pending_submissions`` never raises for one bad file, because that would
block every file behind it. A session file that is a symlink, not a regular file, larger
than ``max_file_bytes``, not UTF-8, not JSON or not a JSON object is yielded like any other,
with the placeholder bundle ``{"_unreadable": "<reason>"}`` (reasons: ``symlink``,
``not_regular_file``, ``too_large``, ``read_error``, ``not_utf8``, ``not_json``,
``not_object``). The placeholder is not a FHIR Bundle, so collect's validation quarantines
it by handle in any case; the engine may then ``reject(handle)`` (moves it to
``sessions/rejected/``) or ``acknowledge(handle)`` (moves it to ``sessions/processed/``).
The placeholder never contains file content.

Ids and handles become file names only after a whitelist check (``[A-Za-z0-9.-]``, 1..64
characters, not starting with a dot; handles must be plain ``*.json`` names), so no id can
reach outside the folder.
"""

from ehr_bridge.adapters.folder._provider import (
    DEFAULT_MAX_FILE_BYTES,
    UNREADABLE_KEY,
    FolderProvider,
)

__all__ = ["DEFAULT_MAX_FILE_BYTES", "UNREADABLE_KEY", "FolderProvider"]
