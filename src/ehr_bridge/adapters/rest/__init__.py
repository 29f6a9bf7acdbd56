"""Generic JSON REST adapter: the trust side of any API a mapping's ``api:`` section describes."""

from ehr_bridge.adapters.rest.client import RestClient, RestOptions, create

__all__ = ["RestClient", "RestOptions", "create"]
