"""Pagination styles of the referral listing, chosen by the mapping's ``api`` section.

The engine hands the adapter an opaque page token and gets the next one back; each style
decides what the token holds:

- ``token``: the API's own token, sent back in a query parameter.
- ``page_number``: the page index. With ``requery_from_last_change`` it also holds an
  anchor: the next request asks again from the last record's change time rather than for
  the next number, so a record changed mid-walk (which moves to the end and shifts every
  later record one place up) cannot push an unread record onto a page already read. The
  token remembers which records at the anchor were already served, so none is served twice.
- ``link_header`` and ``next_url``: the next page's URL, followed only on the configured
  host, since the token goes with every request.
- ``none``: one page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ehr_bridge.adapters.rest.http import Answer, Http, JsonDict
from ehr_bridge.errors import ConnectionStopError, TransientError
from ehr_bridge.mapping import Mapping
from ehr_bridge.mapping.api import (
    Api,
    LinkHeaderPaging,
    NextUrlPaging,
    PageNumberPaging,
    TokenPaging,
    render,
)


@dataclass(frozen=True)
class Call:
    """A listing request: the URL, and the query (None when the URL already has it)."""

    url: str
    params: dict[str, str] | None


@dataclass(frozen=True)
class PagePosition:
    """A ``page_number`` token: page index, anchor (requery mode) and ids already served."""

    index: int = 0
    anchor: str | None = None
    served: tuple[str, ...] = field(default=())

    def encode(self) -> str:
        """The opaque token handed to the engine."""
        return json.dumps({"n": self.index, "a": self.anchor, "s": list(self.served)})

    @classmethod
    def decode(cls, token: str | None) -> PagePosition:
        """The position a token stands for (the first page for None or a foreign token)."""
        try:
            raw = json.loads(token) if token else {}
            return cls(int(raw.get("n", 0)), raw.get("a"), tuple(str(i) for i in raw.get("s", [])))
        except (ValueError, TypeError, AttributeError):
            return cls()


class Listing:
    """Builds listing requests and next-page tokens for one connection."""

    def __init__(
        self, api: Api, mapping: Mapping, http: Http, *, provider_code: str, page_size: int | None
    ) -> None:
        self.api = api
        self.spec = api.spec.referrals
        self.mapping = mapping
        self.http = http
        self.provider_code = provider_code
        size = self.spec.page_size
        self.page_size = page_size or (size.value if size else None)

    def call(self, since: datetime | None, token: str | None) -> Call:
        """The request for the page ``token`` names (the first page when None)."""
        paging = self.spec.pagination
        if token and isinstance(paging, LinkHeaderPaging | NextUrlPaging):
            if not self.http.same_origin(token):
                raise ConnectionStopError(
                    f"GET {self.spec.path}: next-page link points to another host; not followed"
                )
            return Call(token, None)
        params = self._params(since)
        if isinstance(paging, TokenPaging) and token:
            params[paging.param] = token
        elif isinstance(paging, PageNumberPaging):
            position = PagePosition.decode(token)
            if position.anchor is not None:
                params[self.spec.updated_since.param] = position.anchor
            params[paging.param] = str(paging.first + position.index)
        return Call(self.http.url(self.spec.path), params)

    def records(self, answer: Answer) -> list[Any]:
        """The records in a listing answer.

        Raises:
            TransientError: the answer has no list where the mapping says (a half-answer).
        """
        found = self.api.search("referrals.records", answer.body)
        if not isinstance(found, list):
            raise TransientError(f"GET {self.spec.path}: answer has no list of records")
        return found

    def unseen(self, records: list[Any], token: str | None) -> list[Any]:
        """The records minus those a requery served already (same anchor, same id)."""
        served = set(PagePosition.decode(token).served) if token else set()
        if not served or not isinstance(self.spec.pagination, PageNumberPaging):
            return records
        return [r for r in records if not (isinstance(r, dict) and self._id(r) in served)]

    def next_token(self, answer: Answer, records: list[Any], token: str | None) -> str | None:
        """The token of the page after this one, or None when this was the last."""
        paging = self.spec.pagination
        if isinstance(paging, TokenPaging | NextUrlPaging):
            found = self.api.search("referrals.pagination.next", answer.body)
            return str(found) if isinstance(found, str | int) and found != "" else None
        if isinstance(paging, LinkHeaderPaging):
            return answer.links.get("next") or None
        if isinstance(paging, PageNumberPaging):
            return self._next_number(paging, answer, records, token)
        return None

    def _params(self, since: datetime | None) -> dict[str, str]:
        values = {"provider_code": self.provider_code}
        params = {name: render(value, values) for name, value in self.spec.query.items()}
        if since is not None:
            params[self.spec.updated_since.param] = self.api.format_since(since)
        if self.spec.page_size is not None and self.page_size is not None:
            params[self.spec.page_size.param] = str(self.page_size)
        return params

    def _next_number(
        self, paging: PageNumberPaging, answer: Answer, records: list[Any], token: str | None
    ) -> str | None:
        here = PagePosition.decode(token)
        if self._last_page(answer, records, here.index):
            return None
        anchor = self._anchor(records[-1]) if paging.requery_from_last_change else None
        if anchor is None or anchor == here.anchor:
            return PagePosition(here.index + 1, here.anchor).encode()
        at_anchor = [r for r in records if isinstance(r, dict) and self._anchor(r) == anchor]
        return PagePosition(0, anchor, tuple(self._id(r) for r in at_anchor)).encode()

    def _anchor(self, record: Any) -> str | None:
        """A record's change time written as the API reads ``updated_since``."""
        moment = self.mapping.record_updated_at(record) if isinstance(record, dict) else None
        return self.api.format_since(moment) if moment is not None else None

    def _id(self, record: JsonDict) -> str:
        return self.mapping.record_id(record) or ""

    def _last_page(self, answer: Answer, records: list[Any], index: int) -> bool:
        if not records or (self.page_size is not None and len(records) < self.page_size):
            return True
        total = self.api.search("referrals.pagination.total_pages", answer.body)
        return isinstance(total, int) and not isinstance(total, bool) and index + 1 >= total
