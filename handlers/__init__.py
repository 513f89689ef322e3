"""aiogram routers, one module per feature. ``routers()`` gives them in dispatch order."""

from __future__ import annotations

from aiogram import Router


def routers() -> list[Router]:
    """Fresh routers (a second Dispatcher in the same process gets its own)."""
    from handlers import (
        checkins,
        common,
        console,
        discussions,
        errors,
        fallback,
        notices,
        policies,
        polls,
        privacy,
        staff,
        tags,
        verification,
    )

    # checkins before verification: it claims /start fam_<code> (family invites), verification the rest.
    return [errors.router(), checkins.router(), verification.router(), common.router(), privacy.router(),
            staff.router(), tags.router(), notices.router(), policies.router(), polls.router(),
            discussions.router(), console.router(), fallback.router()]
