"""The console's pages, one module each: ``routes`` (an aiohttp ``RouteTableDef``, paths below
/console) and ``NAV`` (its menu entries, ``core.NavItem``). A new page is added to ``PAGES``."""

from __future__ import annotations

from bot.console.pages import (
    audit,
    checkins,
    dashboard,
    notices,
    policies,
    polls,
    registry,
    residents,
    segments,
    tags,
    topics,
    verification,
)

PAGES = (dashboard, residents, tags, audit, segments, notices, polls, topics, verification, checkins,
         policies, registry)
