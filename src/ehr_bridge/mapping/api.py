"""The optional ``api:`` section: how a JSON REST record system is called, as data.

Field names, date formats and code lists live in the rules; *where* the records are (the
endpoints, the query parameters, the pagination style, the auth header, the write endpoint
of each kind and where the answers keep ids) lives here. The generic ``rest`` adapter reads
nothing else, so connecting a new JSON API is a mapping file and a config entry, no Python.
The read-back endpoints are optional: ``referral`` (one referral by the trust's id, for
``quarantine retry``) and, per write kind, ``list`` (its items on a referral, for
``reconcile``) and ``update`` (for ``reconcile --repair --force``). What the adapter can do
for support staff follows from which of them the file gives (``RestClient.capabilities``).

Everything is checked when the mapping loads: JMESPath syntax, template placeholders (a
closed list per place, e.g. ``{trust_referral_id}`` never in the referral listing and
``{trust_id}`` only in an update's path), time zones, the ``updated_since`` format, and that
``list`` is given for every write kind or for none. The pydantic models are part of
``MappingSpec`` and so of the published JSON Schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as ReadOnlyMap
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jmespath
import jmespath.exceptions
from pydantic import BaseModel, ConfigDict, Field

from ehr_bridge.errors import ConfigError

#: placeholders a referral listing may use in its path and query values
LISTING_PLACEHOLDERS = frozenset({"provider_code"})
#: placeholders a write or find may use in its path and query values
WRITE_PLACEHOLDERS = frozenset({"provider_code", "trust_referral_id", "client_reference"})
#: placeholders a read-back (one referral, a kind's items) may use in its path and query
READ_PLACEHOLDERS = frozenset({"provider_code", "trust_referral_id"})
#: placeholders an update may use in its path: a write's, and the trust's id of the item
UPDATE_PLACEHOLDERS = WRITE_PLACEHOLDERS | {"trust_id"}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthSpec(_Spec):
    """The header the token goes in: ``<header>: <scheme> <token>``."""

    header: str = Field(default="Authorization", description="Header name, e.g. X-API-Key")
    scheme: str = Field(default="Bearer", description='Prefix before the token; "" for none')


class ErrorSpec(_Spec):
    """Where an error answer keeps its code and field (named in errors; never values)."""

    code: str | None = Field(default=None, description="JMESPath to the error code")
    field: str | None = Field(default=None, description="JMESPath to the field it names")


class UpdatedSinceSpec(_Spec):
    """The query parameter that asks for records changed at or after the cursor."""

    param: str = Field(description="Query parameter name, e.g. modifiedSince")
    format: str = Field(
        default="%Y-%m-%dT%H:%M:%S.%fZ", description="strftime pattern the API reads"
    )
    timezone: str = Field(default="UTC", description="Zone the time is written in (IANA name)")


class PageSizeSpec(_Spec):
    """The query parameter that sets the page size, and the size to ask for."""

    param: str = Field(description="Query parameter name, e.g. pageSize")
    value: int = Field(default=50, ge=1, le=1000, description="Records per page")


class TokenPaging(_Spec):
    """The answer carries an opaque token; send it back in ``param`` for the next page."""

    style: Literal["token"]
    param: str = Field(description="Query parameter that takes the token")
    next: str = Field(description="JMESPath to the token in the answer (null on the last page)")


class PageNumberPaging(_Spec):
    """Pages are numbered; the walk stops at a short page or at ``total_pages``."""

    style: Literal["page_number"]
    param: str = Field(description="Query parameter that takes the page number")
    first: int = Field(default=1, ge=0, description="Number of the first page (0 or 1)")
    total_pages: str | None = Field(default=None, description="JMESPath to the page count")
    requery_from_last_change: bool = Field(
        default=False,
        description=(
            "Ask again from the last record's change time instead of for the next page number, "
            "so a record changed mid-walk cannot shift another one past us. Needs an API that "
            "sorts by change time and filters updated_since inclusively."
        ),
    )


class LinkHeaderPaging(_Spec):
    """The answer's ``Link: <url>; rel="next"`` header (RFC 8288) is the next page."""

    style: Literal["link_header"]


class NextUrlPaging(_Spec):
    """The answer's body names the next page's URL (e.g. a FHIR Bundle link)."""

    style: Literal["next_url"]
    next: str = Field(description="JMESPath to the next page's URL (null on the last page)")


class NoPaging(_Spec):
    """The listing answers everything at once."""

    style: Literal["none"]


Pagination = Annotated[
    TokenPaging | PageNumberPaging | LinkHeaderPaging | NextUrlPaging | NoPaging,
    Field(discriminator="style"),
]


class ReferralsSpec(_Spec):
    """The listing of referrals referred on to the provider."""

    path: str = Field(description="Path after the base URL, e.g. /referrals")
    query: dict[str, str] = Field(
        default_factory=dict, description="Fixed query parameters; values may use {provider_code}"
    )
    records: str = Field(description="JMESPath to the list of records in the answer")
    updated_since: UpdatedSinceSpec
    page_size: PageSizeSpec | None = None
    pagination: Pagination = Field(default_factory=lambda: NoPaging(style="none"))


class CreateSpec(_Spec):
    """How one item is created."""

    method: Literal["POST", "PUT", "PATCH"] = "POST"
    path: str = Field(description="Path; may use {trust_referral_id} and {client_reference}")
    id: str = Field(description="JMESPath to the new item's id in the answer")
    existing_id: str | None = Field(
        default=None, description="JMESPath to the existing item's id in a 409 answer"
    )


class FindSpec(_Spec):
    """How an item is found again by our client reference (read before re-write)."""

    path: str = Field(description="Path; may use {trust_referral_id} and {client_reference}")
    query: dict[str, str] = Field(
        default_factory=dict,
        description="Query parameters, e.g. {externalRef: '{client_reference}'}",
    )
    records: str = Field(description="JMESPath to the list of items in the answer")
    id: str = Field(description="JMESPath to an item's id")
    reference: str | None = Field(
        default=None,
        description="JMESPath to an item's client reference (default: the payload field "
        "the outbound rules write context.client_reference to)",
    )


class ListSpec(_Spec):
    """How every item of one kind on a referral is read back (``reconcile``).

    One answer holds all of them. Each listed item is turned back into the shape of the
    payload the outbound rules write (``fields``), so reconcile can compare the two field by
    field; only the fields our payload has are compared.
    """

    path: str = Field(description="Path; may use {trust_referral_id} and {provider_code}")
    query: dict[str, str] = Field(
        default_factory=dict, description="Fixed query parameters (same placeholders)"
    )
    records: str = Field(description="JMESPath to the list of items in the answer")
    id: str = Field(description="JMESPath to an item's id")
    reference: str | None = Field(
        default=None,
        description="JMESPath to an item's client reference (default: find.reference, else "
        "the payload field the outbound rules write context.client_reference to)",
    )
    fields: str | None = Field(
        default=None,
        description="JMESPath from a listed item to the payload shape, e.g. a multiselect "
        "hash {Body: text, NoteDate: date} (default: the item as listed)",
    )
    version: str | None = Field(default=None, description="JMESPath to an item's version")


class UpdateSpec(_Spec):
    """How one item is overwritten with our payload (``reconcile --repair --force``)."""

    method: Literal["PUT", "PATCH", "POST"] = "PUT"
    path: str = Field(
        description="Path; may use {trust_id} (the item's id) as well as {trust_referral_id}, "
        "{client_reference} and {provider_code}"
    )
    id: str | None = Field(
        default=None, description="JMESPath to the item's id in the answer (default: unchanged)"
    )


class WriteSpec(_Spec):
    """The endpoints of one write-back kind; ``list`` and ``update`` are optional."""

    create: CreateSpec
    find: FindSpec
    list: ListSpec | None = Field(
        default=None,
        description="Read the kind back for reconcile (give it for every kind or for none)",
    )
    update: UpdateSpec | None = Field(
        default=None, description="Overwrite an item for reconcile --repair --force"
    )


class WritesSpec(_Spec):
    """One entry per outbound kind the record system takes."""

    care_contact: WriteSpec | None = None
    clinical_note: WriteSpec | None = None
    assessment: WriteSpec | None = None
    referral_status: WriteSpec | None = None
    risk_alert: WriteSpec | None = None


class ReferralSpec(_Spec):
    """How one referral is fetched by the trust's id (``quarantine retry``); 404 is "none"."""

    path: str = Field(description="Path; may use {trust_referral_id} and {provider_code}")
    query: dict[str, str] = Field(
        default_factory=dict, description="Fixed query parameters (same placeholders)"
    )
    record: str | None = Field(
        default=None,
        description="JMESPath to the record in the answer (default: the whole answer); "
        "null means the trust has no such referral",
    )


class ApiSpec(_Spec):
    """How the generic ``rest`` adapter calls this record system."""

    auth: AuthSpec = Field(default_factory=AuthSpec)
    headers: dict[str, str] = Field(default_factory=dict, description="Extra fixed headers")
    errors: ErrorSpec = Field(default_factory=ErrorSpec)
    referrals: ReferralsSpec
    referral: ReferralSpec | None = Field(
        default=None, description="One referral by the trust's id, for quarantine retry"
    )
    writes: WritesSpec = Field(default_factory=WritesSpec)


def placeholders(template: str) -> list[str]:
    """The ``{name}`` placeholders in a template, in order."""
    return _PLACEHOLDER.findall(template)


def render(template: str, values: ReadOnlyMap[str, str]) -> str:
    """Fill a checked template; values are inserted as given (the caller quotes them)."""
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


@dataclass(frozen=True)
class Api:
    """A checked ``api:`` section with its JMESPath expressions compiled once."""

    spec: ApiSpec
    expressions: ReadOnlyMap[str, Any]
    zone: ZoneInfo

    def search(self, location: str, document: Any) -> Any:
        """The value the expression at ``location`` (e.g. ``referrals.records``) finds, or None."""
        expression = self.expressions.get(location)
        if expression is None:
            return None
        try:
            return expression.search(document)
        except jmespath.exceptions.JMESPathError:
            return None

    def format_since(self, moment: datetime) -> str:
        """The cursor as the API wants it in ``updated_since``."""
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return aware.astimezone(self.zone).strftime(self.spec.referrals.updated_since.format)

    def write(self, kind: str) -> WriteSpec | None:
        """The endpoints for a write-back kind, if the API takes it."""
        found: WriteSpec | None = getattr(self.spec.writes, kind, None)
        return found

    def written_kinds(self) -> list[str]:
        """The kinds that have write endpoints, in the schema's order."""
        return [kind for kind in type(self.spec.writes).model_fields if self.write(kind)]

    def reads_items(self) -> bool:
        """True if every written kind can be listed back (``compile_api`` allows all or none)."""
        kinds = self.written_kinds()
        return bool(kinds) and all(self._spec(kind).list is not None for kind in kinds)

    def updates_items(self) -> bool:
        """True if some kind can be overwritten (the others answer ``not_updatable``)."""
        return any(self._spec(kind).update is not None for kind in self.written_kinds())

    def _spec(self, kind: str) -> WriteSpec:
        found = self.write(kind)
        assert found is not None  # only called for written kinds
        return found


def compile_api(spec: ApiSpec, key: str) -> Api:
    """Check templates, zone and format, compile every JMESPath; errors name ``key.<field>``."""
    _check_templates(spec, key)
    _check_reads(spec, key)
    zone = _zone(spec.referrals.updated_since, f"{key}.referrals.updated_since")
    expressions = {
        location: _compile(text, f"{key}.{location}")
        for location, text in _expression_fields(spec).items()
    }
    return Api(spec=spec, expressions=expressions, zone=zone)


def _expression_fields(spec: ApiSpec) -> dict[str, str]:
    found = {
        "errors.code": spec.errors.code,
        "errors.field": spec.errors.field,
        "referrals.records": spec.referrals.records,
        "referrals.pagination.next": getattr(spec.referrals.pagination, "next", None),
        "referrals.pagination.total_pages": getattr(spec.referrals.pagination, "total_pages", None),
        "referral.record": spec.referral.record if spec.referral else None,
    }
    for kind in type(spec.writes).model_fields:
        write: WriteSpec | None = getattr(spec.writes, kind)
        if write is None:
            continue
        base = f"writes.{kind}"
        found[f"{base}.create.id"] = write.create.id
        found[f"{base}.create.existing_id"] = write.create.existing_id
        found[f"{base}.find.records"] = write.find.records
        found[f"{base}.find.id"] = write.find.id
        found[f"{base}.find.reference"] = write.find.reference
        if write.list is not None:
            for name in ("records", "id", "reference", "fields", "version"):
                found[f"{base}.list.{name}"] = getattr(write.list, name)
        if write.update is not None:
            found[f"{base}.update.id"] = write.update.id
    return {location: text for location, text in found.items() if text is not None}


def _compile(text: str, key: str) -> Any:
    try:
        return jmespath.compile(text)
    except jmespath.exceptions.JMESPathError:
        raise ConfigError(f"invalid JMESPath expression {text!r}", key=key) from None


def _check_templates(spec: ApiSpec, key: str) -> None:
    listing = spec.referrals
    _check_template(listing.path, LISTING_PLACEHOLDERS, f"{key}.referrals.path")
    for name, value in listing.query.items():
        _check_template(value, LISTING_PLACEHOLDERS, f"{key}.referrals.query.{name}")
    if spec.referral is not None:
        referral = spec.referral
        _check_endpoint(referral.path, referral.query, READ_PLACEHOLDERS, f"{key}.referral")
    for kind in type(spec.writes).model_fields:
        write: WriteSpec | None = getattr(spec.writes, kind)
        if write is None:
            continue
        base = f"{key}.writes.{kind}"
        _check_template(write.create.path, WRITE_PLACEHOLDERS, f"{base}.create.path")
        _check_endpoint(write.find.path, write.find.query, WRITE_PLACEHOLDERS, f"{base}.find")
        if write.list is not None:
            _check_endpoint(write.list.path, write.list.query, READ_PLACEHOLDERS, f"{base}.list")
        if write.update is not None:
            _check_template(write.update.path, UPDATE_PLACEHOLDERS, f"{base}.update.path")


def _check_endpoint(path: str, query: dict[str, str], allowed: frozenset[str], key: str) -> None:
    _check_template(path, allowed, f"{key}.path")
    for name, value in query.items():
        _check_template(value, allowed, f"{key}.query.{name}")


def _check_reads(spec: ApiSpec, key: str) -> None:
    """Read-back is all or nothing: reconcile lists every kind, so one gap fails every run."""
    writes = {kind: getattr(spec.writes, kind) for kind in type(spec.writes).model_fields}
    written = {kind: write for kind, write in writes.items() if write is not None}
    listed = sorted(kind for kind, write in written.items() if write.list is not None)
    unlisted = sorted(kind for kind, write in written.items() if write.list is None)
    if listed and unlisted:
        raise ConfigError(
            f"list is given for {', '.join(listed)} but not for {unlisted[0]}: reconcile reads "
            "every kind back, so give list for every write kind or for none",
            key=f"{key}.writes.{unlisted[0]}.list",
        )
    for kind, write in written.items():
        if write.update is not None and write.list is None:
            raise ConfigError(
                "update is only used by reconcile, which needs list for every write kind",
                key=f"{key}.writes.{kind}.update",
            )


def _check_template(template: str, allowed: frozenset[str], key: str) -> None:
    for name in placeholders(template):
        if name not in allowed:
            choices = ", ".join("{" + a + "}" for a in sorted(allowed))
            raise ConfigError(f"unknown placeholder {{{name}}}; allowed here: {choices}", key=key)
    rest = _PLACEHOLDER.sub("", template)
    if "{" in rest or "}" in rest:
        raise ConfigError("unbalanced { or } in template", key=key)


def _zone(spec: UpdatedSinceSpec, key: str) -> ZoneInfo:
    try:
        zone = ZoneInfo(spec.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {spec.timezone!r}", key=f"{key}.timezone") from None
    probe = datetime(2026, 7, 1, 9, 30, 15, 123000, tzinfo=UTC).astimezone(zone)
    if probe.strftime(spec.format) == spec.format or "%" not in spec.format:
        raise ConfigError(
            "format must be a strftime pattern, e.g. %Y-%m-%dT%H:%M:%S", key=f"{key}.format"
        )
    return zone
