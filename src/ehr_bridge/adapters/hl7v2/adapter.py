"""The ``hl7v2`` trust adapter: its options, validated at start-up, and the object built.

::

    [connection.trust]
    adapter = "hl7v2"
    drop_folder = "hl7/in"            # REF^I12 files arrive here (and via the listener)
    segments = ["MSH", "RF1", "PRD", "PID", "DG1"]   # decode only what the mapping reads

    [connection.trust.listen]         # optional MLLP listener (ehr-bridge-hl7 listen)
    port = 2575

    [connection.trust.send]           # ORU^R01 / MDM^T02 out: MLLP peer or a folder
    host = "interface-engine.trust.nhs.uk"
    port = 2576

Relative folders are relative to the config file. Every option error is a ``ConfigError``
naming its key, e.g. ``connection[0].trust.send.port``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from ehr_bridge.adapters.base import KeptFile, SourcePage, WriteItem, WriteReceipt
from ehr_bridge.adapters.hl7v2.build import Header, Version
from ehr_bridge.adapters.hl7v2.inbox import DEFAULT_MAX_FILE_BYTES, Inbox
from ehr_bridge.adapters.hl7v2.listener import MllpListener, Receiver
from ehr_bridge.adapters.hl7v2.mllp import DEFAULT_CONNECT_TIMEOUT, MAX_FRAME_BYTES, MllpClient
from ehr_bridge.adapters.hl7v2.source import DropFolderSource
from ehr_bridge.adapters.hl7v2.writer import FolderTransport, Hl7Writer, MllpTransport, Transport
from ehr_bridge.config import validation_error
from ehr_bridge.errors import ConfigError, TerminalError
from ehr_bridge.security.files import private_dir

_SEGMENT_ID = r"^[A-Z][A-Z0-9]{2}$"
MessageType = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{3}\^[A-Z0-9]{3}$")]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenOptions(_Options):
    """``[connection.trust.listen]``: the MLLP listener for REF^I12."""

    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    idle_timeout_seconds: float = Field(default=60, gt=0)
    max_message_bytes: int = Field(default=MAX_FRAME_BYTES, ge=1024)
    message_types: list[MessageType] = Field(default_factory=lambda: ["REF^I12"])


class SendOptions(_Options):
    """``[connection.trust.send]``: where ORU^R01 and MDM^T02 go."""

    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    folder: str | None = None
    #: the whole exchange: connect, send, a reconnect and resend, and the ACK
    timeout_seconds: float = Field(default=10, gt=0)
    #: the TCP handshake alone, within ``timeout_seconds``: a peer that never accepts
    connect_timeout_seconds: float = Field(default=DEFAULT_CONNECT_TIMEOUT, gt=0, le=300)
    keep_alive: bool = True
    version: Version = "2.5.1"
    sending_application: str = "EHR-BRIDGE"
    sending_facility: str | None = None  # default: the provider code
    receiving_application: str = ""
    receiving_facility: str = ""
    local_id_authority: str = ""

    @model_validator(mode="after")
    def _one_target(self) -> SendOptions:
        mllp = self.host is not None or self.port is not None
        if mllp == (self.folder is not None):
            raise ValueError("set either host and port (MLLP) or folder")
        if mllp and (self.host is None or self.port is None):
            raise ValueError("MLLP needs both host and port")
        return self


class Hl7v2Options(_Options):
    """Options of the ``hl7v2`` adapter in ``[connection.trust]``."""

    drop_folder: str = Field(min_length=1)
    received_folder: str | None = None  # default: <drop_folder>/received
    settle_seconds: float = Field(default=2.0, ge=0)
    max_file_bytes: int = Field(default=DEFAULT_MAX_FILE_BYTES, ge=1024)
    page_size: int = Field(default=200, ge=1, le=5000)
    segments: list[str] | None = None
    timezone: str = "Europe/London"
    listen: ListenOptions | None = None
    send: SendOptions | None = None

    @field_validator("segments")
    @classmethod
    def _segment_ids(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            if not re.fullmatch(_SEGMENT_ID, name):
                raise ValueError("segment ids are three capitals or digits, e.g. PID")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone (use an IANA name, e.g. Europe/London)") from None
        return value


class Hl7v2Adapter:
    """TrustSource (drop folder) and TrustWriter (MLLP or folder) for one connection."""

    def __init__(
        self,
        source: DropFolderSource,
        writer: Hl7Writer,
        listen: ListenOptions | None = None,
    ) -> None:
        self.source = source
        self.writer = writer
        self.listen = listen

    def __repr__(self) -> str:
        return f"Hl7v2Adapter(drop_folder={str(self.source.inbox.drop)!r})"

    def fetch_referrals(self, *, updated_since: datetime | None, page: str | None) -> SourcePage:
        """See ``DropFolderSource.fetch_referrals``."""
        return self.source.fetch_referrals(updated_since=updated_since, page=page)

    def write(self, item: WriteItem) -> WriteReceipt:
        """See ``Hl7Writer.write``."""
        return self.writer.write(item)

    def find(self, item: WriteItem) -> WriteReceipt | None:
        """Always None (no ``find_by_reference``)."""
        return self.writer.find(item)

    def kept_files(self, before: datetime) -> Iterator[KeptFile]:
        """Received files stamped before ``before`` (the engine bounds it by the cursor)."""
        for name, stamp in self.source.inbox.stamped_before(before):
            yield KeptFile("received", name, stamp)

    def remove_kept(self, kept: KeptFile) -> bool:
        """Delete one received file."""
        if kept.folder != "received":
            raise TerminalError("not a file this adapter keeps", code="unsafe_handle")
        try:
            return self.source.inbox.remove(kept.name)
        except ValueError:
            raise TerminalError("not a received file name", code="unsafe_handle") from None

    def listener(self, *, port: int | None = None) -> MllpListener:
        """The MLLP listener for this connection, bound but not yet serving."""
        if self.listen is None:
            raise ConfigError("set [connection.trust.listen] to run the listener", key="listen")
        receiver = Receiver(self.source.inbox, tuple(self.listen.message_types))
        address = (self.listen.host, self.listen.port if port is None else port)
        return MllpListener(
            address,
            receiver,
            idle_timeout=self.listen.idle_timeout_seconds,
            max_message_bytes=self.listen.max_message_bytes,
        )


def create(
    options: dict[str, Any], *, base_dir: Path, key: str, provider_code: str
) -> Hl7v2Adapter:
    """Build the adapter from a connection's options, validating them at start-up."""
    try:
        parsed = Hl7v2Options.model_validate(options)
    except ValidationError as exc:
        raise validation_error(exc, Hl7v2Options, key) from None
    drop = _path(base_dir, parsed.drop_folder)
    received = _path(base_dir, parsed.received_folder) if parsed.received_folder else None
    inbox = Inbox(
        drop,
        received or drop / "received",
        settle_seconds=parsed.settle_seconds,
        max_file_bytes=parsed.max_file_bytes,
    )
    try:
        inbox.ensure()
    except OSError as exc:
        reason = f"cannot create folder ({type(exc).__name__})"
        raise ConfigError(reason, key=f"{key}.drop_folder") from None
    source = DropFolderSource(
        inbox, zone=ZoneInfo(parsed.timezone), page_size=parsed.page_size, segments=parsed.segments
    )
    writer = _writer(parsed.send, base_dir, key, provider_code)
    return Hl7v2Adapter(source, writer, parsed.listen)


def _writer(send: SendOptions | None, base_dir: Path, key: str, provider_code: str) -> Hl7Writer:
    if send is None:
        return Hl7Writer(Header(sending_facility=provider_code), None)
    header = Header(
        sending_application=send.sending_application,
        sending_facility=send.sending_facility or provider_code,
        receiving_application=send.receiving_application,
        receiving_facility=send.receiving_facility,
        local_id_authority=send.local_id_authority,
        version=send.version,
    )
    transport: Transport
    if send.folder is not None:
        folder = _path(base_dir, send.folder)
        try:
            private_dir(folder)
        except OSError as exc:
            reason = f"cannot create folder ({type(exc).__name__})"
            raise ConfigError(reason, key=f"{key}.send.folder") from None
        transport = FolderTransport(folder)
    else:
        assert send.host is not None and send.port is not None  # checked by SendOptions
        client = MllpClient(
            send.host,
            send.port,
            timeout=send.timeout_seconds,
            connect_timeout=send.connect_timeout_seconds,
            keep_alive=send.keep_alive,
            key=f"{key}.send",
        )
        transport = MllpTransport(client)
    return Hl7Writer(header, transport)


def _path(base_dir: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else base_dir / path
