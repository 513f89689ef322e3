"""CLI commands of daily check-ins: enrol residents or a segment, list a committee's plans."""

from __future__ import annotations

import argparse
import sys


async def cmd_checkins(args: argparse.Namespace) -> int:
    from bot.checkin_jobs import checkin_config
    from bot.cli import cli_session, region_admin
    from notifications.messages.checkins import format_days
    from services import checkins as cs
    from services.clock import system_clock
    from services.expressions import ExpressionError
    from services.i18n import use_locale
    from services.models import RegionLevel, Resident
    from services.regions import get_region

    settings = args.settings
    cfg = checkin_config(settings)
    async with cli_session(settings) as session, session.begin():
        committee = await get_region(session, args.committee)
        if committee is None or committee.level != RegionLevel.committee:
            print(f"error: no committee with code {args.committee!r} (see `communitybot regions import`)",
                  file=sys.stderr)
            return 2
        if args.action == "list":
            print("resident_id\tname\troom\ttime\tdays\tpaused_until\ton_bot\tmode\thelper")
            with use_locale("en"):
                for line in await cs.list_plans(session, committee.id):
                    p = line.plan
                    print(f"{line.resident.id}\t{line.resident.name}\t{cs.room_of(line.resident)}\t"
                          f"{cs.format_minute(p.minute_of_day)}\t{format_days(p.days)}\t"
                          f"{p.paused_until.isoformat() if p.paused_until else '-'}\t"
                          f"{'yes' if line.on_bot else 'no'}\t{p.mode.value}\t"
                          f"{line.helper or ('-' if p.mode == 'self' else 'on-duty staff')}")
            return 0
        minute = cs.parse_time(args.time) if args.time else None
        days = cs.parse_days(args.days) if args.days else None
        if (args.time and minute is None) or (args.days and days is None):
            print("error: --time must look like 09:00 and --days like 1-5, 1,3,5 or weekdays", file=sys.stderr)
            return 2
        now = system_clock()
        if args.segment:
            try:
                result = await cs.enrol_segment(session, committee, args.segment, now=now, cfg=cfg,
                                                minute=minute, days=days)
            except ExpressionError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"{result.matched} residents match; {result.enrolled} newly enrolled, "
                  f"{result.already} already enrolled")
            return 0
        resident = await session.get(Resident, args.resident)
        if resident is None or resident.committee_id != committee.id:
            print(f"error: no resident {args.resident} in committee {committee.code}", file=sys.stderr)
            return 2
        helper_id = await _helper_account(session, args)
        if helper_id is False:
            return 2
        try:
            plan, created = await cs.enrol_resident(session, resident, now=now, cfg=cfg, minute=minute, days=days)
            if args.mode in cs.HELPER_MODES:
                assigned = await cs.assign_helper(session, region_admin(committee), resident, helper_id, args.mode,
                                                  now=now, cfg=cfg)
                plan = assigned.plan
            elif args.mode == "self":
                await cs.answer_alone(session, region_admin(committee), resident, now=now)
            if args.note is not None:
                plan = await cs.set_note(session, resident, args.note, now=now)
        except cs.CheckinError as exc:
            print(f"error: {exc.reason}", file=sys.stderr)
            return 2
        with use_locale("en"):
            verb = "enrolled" if created else "updated"
            print(f"{verb} {resident.name}: {cs.format_minute(plan.minute_of_day)}, "
                  f"{format_days(plan.days)}, from {plan.starts_on.isoformat()}, answered by "
                  f"{_answered_by(plan, assigned.helper if args.mode in cs.HELPER_MODES else None)}")
        return 0


def _answered_by(plan, helper) -> str:
    from services.checkins.common import account_name

    if plan.mode == "self":
        return "the elder"
    who = account_name(helper) if helper is not None else "on-duty staff"
    return f"{who} (every day)" if plan.mode == "proxy" else f"the elder, then {who}"


async def _helper_account(session, args: argparse.Namespace) -> int | bool | None:
    """The account of ``--helper`` (a resident's registry id: their account on the bot) or
    ``--helper-account``; False (after printing why) when it cannot be one."""
    from sqlalchemy import select

    from services.models import Account, Resident

    if args.mode not in ("proxy", "self_then_helper"):
        if args.helper is not None or args.helper_account is not None:
            print("error: --helper needs --mode proxy or --mode self_then_helper", file=sys.stderr)
            return False
        return None
    if args.helper_account is not None:
        return args.helper_account
    if args.helper is None:
        print("error: --mode proxy and self_then_helper need --helper ID (or --helper-account ID)", file=sys.stderr)
        return False
    resident = await session.get(Resident, args.helper)
    account_id = await session.scalar(select(Account.id).where(Account.resident_id == args.helper)) \
        if resident is not None else None
    if account_id is None:
        print(f"error: resident {args.helper} is not on the bot: a helper must have joined it", file=sys.stderr)
        return False
    return account_id


def add_commands(sub) -> None:
    p = sub.add_parser(
        "checkins", help="daily check-ins: enrol residents, list plans",
        description="`checkins enrol --committee CODE (--segment EXPR | --resident ID) [--time HH:MM] [--days 1-5]` "
                    "or `checkins list --committee CODE`. Times are local (TIMEZONE, default Asia/Shanghai). "
                    "For an elder without Telegram: `--resident ID --mode proxy --helper ID` (the helper's "
                    "registry id; they must be on the bot) — a helper answers every day after a visit or a "
                    "call; `--mode self_then_helper`: the elder first, the helper when they do not answer.")
    p.add_argument("action", choices=["enrol", "list"])
    p.add_argument("--committee", required=True, help="committee region code")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--segment", help='segment expression, e.g. \'has_tag("living_alone") and age >= 70\'')
    who.add_argument("--resident", type=int, help="registry id of one resident")
    p.add_argument("--time", help="local time of the daily check-in (default 09:00)")
    p.add_argument("--days", help="days: daily (default), weekdays, 1-5 or 1,3,5 (1 = Monday)")
    p.add_argument("--mode", choices=["self", "proxy", "self_then_helper"],
                   help="who answers (with --resident): the elder (self), a helper every day (proxy), or the "
                        "elder first and the helper when they do not answer (self_then_helper)")
    helper = p.add_mutually_exclusive_group()
    helper.add_argument("--helper", type=int, metavar="ID",
                        help="registry id of the resident who answers for the elder (on the bot, verified)")
    helper.add_argument("--helper-account", type=int, metavar="ID",
                        help="account id of the helper instead (a staff member or a family contact)")
    p.add_argument("--note", help="the elder's note for whoever looks in, e.g. 'hard of hearing, knock loudly'")
    p.set_defaults(func=_run)


async def _run(args: argparse.Namespace) -> int:
    if args.action == "enrol" and not (args.segment or args.resident):
        print("checkins enrol: one of --segment or --resident is required", file=sys.stderr)
        return 2
    if args.segment and (args.mode or args.helper or args.helper_account or args.note is not None):
        print("checkins enrol: --mode, --helper and --note go with --resident (one elder)", file=sys.stderr)
        return 2
    return await cmd_checkins(args)
