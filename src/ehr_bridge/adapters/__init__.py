"""Adapters: each side of a connection behind a small protocol (see ``base``)."""
