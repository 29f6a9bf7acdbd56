"""The generic REST adapter: any JSON record system the mapping's ``api:`` section describes.

Nothing in here knows a particular system. The listing endpoint, its query, the cursor
parameter and its format, the pagination style, the auth header, and each write kind's
create and find endpoints all come from the mapping file; the payloads come from the
mapping's outbound rules. Connecting another JSON API is a mapping file and a config entry.

The support commands' read-back comes from the mapping too, where it gives the endpoints:
``referral`` fetches one referral (``quarantine retry``), each kind's ``list`` reads its
items back and turns each into the payload's shape (``reconcile``), and ``update``
overwrites one (``reconcile --repair --force``). ``capabilities`` reports which of
``fetch_referral``, ``read_items`` and ``update_items`` this mapping gives, and only those
reach the connection (``registry.capabilities_of``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from pydantic import ConfigDict, Field, ValidationError

from ehr_bridge.adapters._advice import Advice, advice_for
from ehr_bridge.adapters.base import JsonDict, SourcePage, TrustItem, WriteItem, WriteReceipt
from ehr_bridge.adapters.rest.http import Answer, Http
from ehr_bridge.adapters.rest.paging import Listing
from ehr_bridge.config import Secret, read_secret, validation_error
from ehr_bridge.errors import ConfigError, ConflictError, TerminalError, TransientError
from ehr_bridge.mapping import OUTBOUND_KINDS, Mapping, load_mapping
from ehr_bridge.mapping.api import Api, ListSpec, WriteSpec, render
from ehr_bridge.mapping.schema import OPTIONAL_KINDS
from ehr_bridge.mapping.shipped import shipped_mapping
from ehr_bridge.retry import RetryPolicy, call_with_retries
from ehr_bridge.security.transport import TransportOptions, build_session


class RestOptions(TransportOptions):
    """Options of the ``rest`` adapter in a connection's ``[connection.trust]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    base_url: str = Field(pattern=r"^https?://")
    mapping: str | None = Field(
        default=None, description="The mapping file whose api: section describes the system"
    )
    token_env: str | None = None
    token_file: str | None = None
    page_size: int | None = Field(default=None, ge=1, le=1000)
    #: whole-request deadline: connect, send, answer and body (docs/operations.md)
    timeout_seconds: float = Field(default=15, gt=0)
    read_attempts: int = Field(default=4, ge=1, le=10)


class RestClient:
    """TrustSource and TrustWriter for a JSON API described by a mapping's ``api:`` section.

    Also TrustReader and TrustUpdater, as far as the section gives read endpoints (see
    ``capabilities``); a call the mapping gives no endpoint for is a ``TerminalError``.

    Thread safe for writes: each thread sends through its own HTTP session (``Http``), and
    the mapping and listing state are only read while writing.
    """

    #: push may call ``write`` and ``find`` from several threads at once
    concurrent_writes = True

    def __init__(
        self,
        options: RestOptions,
        mapping: Mapping,
        token: Secret | None,
        provider_code: str,
        session: requests.Session | None = None,
        advice: Advice | None = None,
    ) -> None:
        if mapping.api is None:  # create() checks this with the config key; keep mypy honest
            raise ConfigError("the mapping has no api: section", key="mapping")
        self.options = options
        self.mapping = mapping
        self._api: Api = mapping.api
        self._provider_code = provider_code
        self._http = Http(
            options.base_url,
            mapping.api,
            token,
            timeout=options.timeout_seconds,
            session=session,
            advice=advice or advice_for(options.model_dump(), "trust", options.base_url),
        )
        self._listing = Listing(
            mapping.api,
            mapping,
            self._http,
            provider_code=provider_code,
            page_size=options.page_size,
        )
        self._read_policy = RetryPolicy(options.read_attempts, base_delay=0.5, max_delay=5)

    def __repr__(self) -> str:
        return f"RestClient(mapping={self.mapping.name!r}, http={self._http!r})"

    # --- TrustSource -----------------------------------------------------------------
    def fetch_referrals(self, *, updated_since: datetime | None, page: str | None) -> SourcePage:
        """One page of the listing the mapping describes, and the token of the next."""
        call = self._listing.call(updated_since, page)
        label = f"GET {self._api.spec.referrals.path}"
        answer = call_with_retries(
            self._read_policy,
            lambda: self._http.call("GET", call.url, label=label, params=call.params),
        )
        records = self._listing.records(answer)
        next_page = self._listing.next_token(answer, records, page)
        return SourcePage(records=self._listing.unseen(records, page), next_page=next_page)

    # --- TrustWriter -----------------------------------------------------------------
    def write(self, item: WriteItem) -> WriteReceipt:
        """Create the item; a 409 for our client reference means it is already there."""
        spec = self._write_spec(item)
        location = f"writes.{item.kind}.create"
        label = f"{spec.create.method} {spec.create.path}"
        try:
            answer = self._http.call(
                spec.create.method,
                self._url(spec.create.path, item),
                label=label,
                body=item.payload,
                conflict_id=f"{location}.existing_id",
            )
        except ConflictError as exc:
            if exc.existing_id:
                return WriteReceipt(trust_id=exc.existing_id, already_present=True)
            found = self.find(item)
            if found is None:
                raise
            return found
        trust_id = _text(self._api.search(f"{location}.id", answer.body))
        if trust_id is None:
            raise TerminalError(f"{label}: answer has no id where the mapping says", code="no_id")
        return WriteReceipt(trust_id=trust_id)

    def find(self, item: WriteItem) -> WriteReceipt | None:
        """Look the item up by our client reference (read before re-write)."""
        spec = self._write_spec(item)
        values = self._values(item)
        params = {name: render(value, values) for name, value in spec.find.query.items()}
        label = f"GET {spec.find.path}"
        answer = call_with_retries(
            self._read_policy,
            lambda: self._http.call(
                "GET", self._url(spec.find.path, item), label=label, params=params
            ),
        )
        location = f"writes.{item.kind}.find"
        found = self._api.search(f"{location}.records", answer.body)
        for candidate in found if isinstance(found, list) else []:
            if self._reference(item.kind, candidate) == item.client_reference:
                trust_id = _text(self._api.search(f"{location}.id", candidate))
                if trust_id is not None:
                    return WriteReceipt(trust_id=trust_id, already_present=True)
        return None

    # --- what the mapping lets it do for support staff -------------------------------
    @property
    def capabilities(self) -> frozenset[str]:
        """The read-back capabilities this mapping's ``api:`` section gives (may be none)."""
        given = {
            "fetch_referral": self._api.spec.referral is not None,
            "read_items": self._api.reads_items(),
            "update_items": self._api.updates_items(),
        }
        return frozenset(name for name, present in given.items() if present)

    # --- TrustReader -----------------------------------------------------------------
    def list_items(self, trust_referral_id: str, kind: str) -> list[TrustItem]:
        """Every item of ``kind`` on the referral, in the shape of the payload we write."""
        spec = self._list_spec(kind)
        label = f"GET {spec.path}"
        answer = self._get(spec.path, spec.query, self._read_values(trust_referral_id), label)
        found = self._api.search(f"writes.{kind}.list.records", answer.body)
        if not isinstance(found, list):
            raise TransientError(f"{label}: answer has no list of items where the mapping says")
        return [self._trust_item(kind, label, c) for c in found if isinstance(c, dict)]

    def fetch_referral(self, trust_referral_id: str) -> JsonDict | None:
        """The referral the trust holds under this id; None when it answers 404 or nothing."""
        spec = self._api.spec.referral
        if spec is None:
            raise TerminalError("the mapping's api has no referral endpoint", code="no_endpoint")
        label = f"GET {spec.path}"
        try:
            answer = self._get(spec.path, spec.query, self._read_values(trust_referral_id), label)
        except TerminalError as exc:
            if exc.code == "http_404":
                return None
            raise
        record = self._api.search("referral.record", answer.body) if spec.record else answer.body
        if record is None:
            return None
        if not isinstance(record, dict) or self.mapping.record_id(record) != trust_referral_id:
            raise TerminalError(f"{label}: answer is not the referral asked for", code="no_record")
        return record

    # --- TrustUpdater ----------------------------------------------------------------
    def update(self, item: WriteItem, trust_id: str) -> WriteReceipt:
        """Put our payload over the trust's item ``trust_id`` with the kind's ``update``."""
        spec = self._write_spec(item).update
        if spec is None:
            raise TerminalError(
                f"the mapping's api cannot update {item.kind} items", code="not_updatable"
            )
        label = f"{spec.method} {spec.path}"
        url = self._url(spec.path, item, trust_id=trust_id)
        answer = self._http.call(spec.method, url, label=label, body=item.payload)
        answered = _text(self._api.search(f"writes.{item.kind}.update.id", answer.body))
        return WriteReceipt(trust_id=answered or trust_id, already_present=True)

    # --- helpers ---------------------------------------------------------------------
    def _list_spec(self, kind: str) -> ListSpec:
        write = self._api.write(kind)
        if write is None or write.list is None:
            raise TerminalError(f"the mapping's api cannot list {kind} items", code="no_endpoint")
        return write.list

    def _trust_item(self, kind: str, label: str, candidate: JsonDict) -> TrustItem:
        location = f"writes.{kind}.list"
        trust_id = _text(self._api.search(f"{location}.id", candidate))
        if trust_id is None:
            raise TerminalError(f"{label}: an item has no id where the mapping says", code="no_id")
        fields = candidate
        if f"{location}.fields" in self._api.expressions:
            fields = self._api.search(f"{location}.fields", candidate)
        return TrustItem(
            trust_id=trust_id,
            client_reference=self._reference(kind, candidate, "list"),
            fields=fields if isinstance(fields, dict) else {},
            version=_text(self._api.search(f"{location}.version", candidate)),
        )

    def _get(self, path: str, query: dict[str, str], values: dict[str, str], label: str) -> Answer:
        params = {name: render(value, values) for name, value in query.items()}
        quoted = {name: quote(value, safe="") for name, value in values.items()}
        url = self._http.url(render(path, quoted))
        return call_with_retries(
            self._read_policy, lambda: self._http.call("GET", url, label=label, params=params)
        )

    def _read_values(self, trust_referral_id: str) -> dict[str, str]:
        return {"provider_code": self._provider_code, "trust_referral_id": trust_referral_id}

    def _reference(self, kind: str, candidate: Any, endpoint: str = "find") -> str | None:
        """An item's client reference: the endpoint's own path, the find's, or the payload's."""
        for location in (f"writes.{kind}.{endpoint}.reference", f"writes.{kind}.find.reference"):
            if location in self._api.expressions:
                return _text(self._api.search(location, candidate))
        field = self.mapping.reference_target(kind)
        node = candidate
        for part in (field or "").split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return _text(node)

    def _write_spec(self, item: WriteItem) -> WriteSpec:
        spec = self._api.write(item.kind)
        if spec is None:
            raise TerminalError(f"the mapping's api has no write endpoint for {item.kind}")
        return spec

    def _values(self, item: WriteItem) -> dict[str, str]:
        return {
            "provider_code": self._provider_code,
            "trust_referral_id": item.trust_referral_id,
            "client_reference": item.client_reference,
        }

    def _url(self, template: str, item: WriteItem, *, trust_id: str | None = None) -> str:
        values = self._values(item) | ({} if trust_id is None else {"trust_id": trust_id})
        quoted = {name: quote(value, safe="") for name, value in values.items()}
        return self._http.url(render(template, quoted))


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


def create(
    options: dict[str, Any],
    *,
    base_dir: Path,
    key: str,
    provider_code: str,
    mapping: Mapping | None = None,
    session: requests.Session | None = None,
) -> RestClient:
    """Build the adapter, validating options and the mapping's ``api:`` section at start-up.

    ``mapping`` is the connection's loaded mapping when the engine passes it; otherwise the
    ``mapping`` option names the file (relative to the config file's folder). ``session``
    lets tests and embedding applications supply the HTTP session.
    """
    try:
        parsed = RestOptions.model_validate(options)
    except ValidationError as exc:
        raise validation_error(exc, RestOptions, key) from None
    mapping = mapping or _load(parsed, base_dir, key)
    _check_api(mapping, key)
    if session is None:
        session = build_session(
            parsed, options, base_url=parsed.base_url, base_dir=base_dir, key=key
        )
    token = None if parsed.oauth2 else read_secret(options, "token", base_dir=base_dir, key=key)
    advice = advice_for(options, key, parsed.base_url)
    return RestClient(parsed, mapping, token, provider_code, session, advice)


def _load(options: RestOptions, base_dir: Path, key: str) -> Mapping:
    if not options.mapping:
        raise ConfigError(
            "set mapping to the mapping file whose api: section describes the system",
            key=f"{key}.mapping",
        )
    path = Path(options.mapping)
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        path = shipped_mapping(options.mapping) or path  # a bare name: a shipped mapping
    if not path.is_file():
        raise ConfigError(f"mapping file not found: {path}", key=f"{key}.mapping")
    return load_mapping(path)


def _check_api(mapping: Mapping, key: str) -> None:
    """The rest adapter declares every write kind, so the mapping must serve them all.

    An optional kind (``risk_alert``) may be left out altogether, and is then never
    queued; but outbound rules for it without an endpoint to send them to are refused.
    """
    if mapping.api is None:
        raise ConfigError(
            f"mapping {mapping.name} has no api: section; the rest adapter needs one "
            "(see docs/adding-an-ehr.md)",
            key=f"{key}.mapping",
        )
    missing = sorted(
        kind
        for kind in OUTBOUND_KINDS
        if (mapping.api.write(kind) is None or kind not in mapping.outbound_kinds())
        and (kind not in OPTIONAL_KINDS or kind in mapping.outbound_kinds())
    )
    if missing:
        raise ConfigError(
            f"mapping {mapping.name} must define outbound rules and api.writes for "
            f"{', '.join(missing)}",
            key=f"{key}.mapping",
        )
