"""Fixtures of the scenarios that run these shared tests (default, debian13)."""

from __future__ import annotations

# Imported here so that pytest finds the fixtures.
from stack_testing import container, http_port, site

__all__ = ["container", "http_port", "site"]
