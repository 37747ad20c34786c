"""Shared fixtures. Each section below is owned by one area; append, don't rewrite others' sections."""

from __future__ import annotations
