"""One error tree, grouped by what the caller should do.

::

    EhrBridgeError                 every error we raise; ``safe_message`` is PHI-free
    ├── ConfigError                fix the configuration, then restart (fatal at start-up)
    ├── MappingError               this record cannot be mapped: quarantine it, go on
    ├── RecordValidationError      this record breaks a clinical/FHIR rule: quarantine it, go on
    ├── TransientError             retry later (network, 5xx, 429); may carry ``retry_after``
    │   ├── UnreachableError       no connection to the other side (DNS, refused, TLS, reset)
    │   ├── CallDeadlineError      one outbound call passed its whole-request deadline
    │   └── AbandonedError         given up on our side: not retried in this run
    │       ├── StoppedError       the process is stopping (SIGTERM, SIGINT)
    │       └── FlowDeadlineError  the flow run passed its per-cycle deadline
    ├── TerminalError              the other side refused this item for good: dead-letter it
    │   └── ConflictError          the other side already holds this item (idempotent success)
    └── ConnectionStopError        the connection itself is unusable (auth, 404 base URL): stop it
        └── CredentialsRefusedError  the other side answered 401 or 403 to our credentials

Retry and quarantine logic reads the *category*, never a concrete adapter's class.
Messages name records by internal ids and fields by path; they never carry field values,
so an exception can be logged or shown to an operator without leaking patient data.
"""

from __future__ import annotations


class EhrBridgeError(Exception):
    """Base of every error ehr-bridge raises on purpose."""

    #: short machine-readable reason code, stored with quarantine and dead-letter rows
    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def safe_message(self) -> str:
        """Text that may be logged or printed: built only from ids, paths and codes."""
        return str(self)


class ConfigError(EhrBridgeError):
    """The configuration (file, environment, mapping, adapter options) is wrong."""

    code = "config"

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class RecordError(EhrBridgeError):
    """A single record is bad; it is quarantined and the run carries on."""

    code = "record"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        record: str | None = None,
        code: str | None = None,
    ) -> None:
        self.field = field
        self.record = record
        self.reason = message
        parts = []
        if record:
            parts.append(f"record {record}")
        if field:
            parts.append(f"field {field}")
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message, code=code)


class MappingError(RecordError):
    """A mapping rule could not produce its target from the source record."""

    code = "mapping"

    def __init__(
        self,
        message: str,
        *,
        mapping: str | None = None,
        rule: str | None = None,
        source_path: str | None = None,
        field: str | None = None,
        record: str | None = None,
        code: str | None = None,
    ) -> None:
        self.mapping = mapping
        self.rule = rule
        self.source_path = source_path
        where = []
        if mapping:
            where.append(f"mapping {mapping}")
        if rule:
            where.append(f"rule {rule}")
        if source_path:
            where.append(f"source path {source_path}")
        detail = f"{message} ({', '.join(where)})" if where else message
        super().__init__(detail, field=field or rule, record=record, code=code)


class RecordValidationError(RecordError):
    """A record mapped, but breaks a FHIR or clinical rule (Modulus 11, score range, item sum)."""

    code = "validation"


class TransientError(EhrBridgeError):
    """Worth retrying later; ``retry_after`` (seconds) comes from the other side when it says."""

    code = "transient"

    def __init__(
        self, message: str, *, retry_after: float | None = None, ambiguous: bool = False
    ) -> None:
        self.retry_after = retry_after
        #: True when a write may have been committed before the failure (read before re-write)
        self.ambiguous = ambiguous
        super().__init__(message)


class UnreachableError(TransientError):
    """No connection to the other side: name resolution, refusal, TLS or a reset.

    The message names the host and the config key that sets it (``base_url``), never the
    library's text, which can quote what the server sent.
    """

    code = "unreachable"


class CallDeadlineError(TransientError):
    """One outbound call did not finish within its whole-request deadline.

    A peer that answers one byte a second, or accepts and never answers, ends here at the
    configured ``timeout_seconds`` whatever its socket does. Retried like any transient
    failure; ``ambiguous`` for a write, which may have landed.
    """

    code = "deadline"


class AbandonedError(TransientError):
    """Work given up on our side, not the peer's failure: never retried within the run.

    The next run carries on from what is committed (a cursor, an outbox row); an abandoned
    write is ``ambiguous`` when it may have reached the peer, so the next attempt reads
    before it writes.
    """

    code = "abandoned"


class StoppedError(AbandonedError):
    """The process is stopping (SIGTERM or SIGINT): a call in flight or a backoff ended."""

    code = "stopped"


class FlowDeadlineError(AbandonedError):
    """The flow run passed its per-cycle deadline (``[connection.schedule]``)."""

    code = "flow_deadline"


class TerminalError(EhrBridgeError):
    """The other side rejected this item for good; retrying the same payload cannot help."""

    code = "terminal"


class ConflictError(TerminalError):
    """The other side already holds an item with our client reference."""

    code = "conflict"

    def __init__(self, message: str, *, existing_id: str | None = None) -> None:
        self.existing_id = existing_id
        super().__init__(message)


class ConnectionStopError(EhrBridgeError):
    """The connection cannot work at all (credentials refused, endpoint missing)."""

    code = "connection"


class CredentialsRefusedError(ConnectionStopError):
    """The other side answered 401 or 403: our token or client credentials are refused.

    The message names the config key that holds them (``token_env``, ``token_file`` or the
    ``oauth2`` table), never the credential.
    """

    code = "auth_refused"
