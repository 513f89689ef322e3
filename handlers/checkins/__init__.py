"""Daily check-ins in the bot, one router per side of it:

- ``family``: /family, removing a contact, the ``/start fam_<code>`` deep link (first: it claims
  that deep link before verification sees /start);
- ``elder``: the elder's answer buttons and the /checkin menu;
- ``helper``: helpers who answer for elders: their list's buttons, /helping, hand-overs, the
  ``/start hlp_<code>`` link, and staff's /checkin_helper and /checkin_handover;
- ``alerts``: alert buttons and /alerts;
- ``staff``: /checkin_enrol, /checkin_stop, /checkin_family, /checkins, /checkins_week, /duty.

Handlers take ``checkin_config`` (built once by the composition root) and ``now`` (the middleware's
clock) as parameters; they parse, call ``services.checkins`` and render with
``notifications.messages.checkins``.
"""

from aiogram import Router

from handlers.checkins import alerts, elder, family, helper, staff
from handlers.checkins.alerts import show_alerts
from handlers.checkins.elder import checkin_menu
from handlers.checkins.family import family as family_command
from handlers.checkins.helper import helping
from handlers.checkins.staff import enrol, show_board

__all__ = ["checkin_menu", "enrol", "family_command", "helping", "router", "show_alerts", "show_board"]


def router() -> Router:
    """A fresh router of all check-in handlers (a second Dispatcher gets its own)."""
    r = Router(name="checkins")
    r.include_routers(family.router(), helper.router(), elder.router(), alerts.router(), staff.router())
    return r
