"""IAPTUS-style REST adapter: the trust side (pull referrals, write artefacts back)."""

from ehr_bridge.adapters.iaptus.client import IaptusClient, IaptusOptions, create

__all__ = ["IaptusClient", "IaptusOptions", "create"]
