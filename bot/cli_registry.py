"""CLI commands of the registry, invites and staff (filled in by the registry feature)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    return None
