"""Shared pytest fixtures; this file's folder is on sys.path, so ``support`` imports work."""
