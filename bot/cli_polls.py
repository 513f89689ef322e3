"""CLI commands of polls: create one (prints its id), close one now, print results (``--json``), list."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from bot.cli import cli_session, region_admin


def _refusal(err) -> str:
    from notifications.messages.polls import refusal

    return refusal(err).striptags()


async def cmd_polls(args: argparse.Namespace) -> int:
    from bot.app import poll_config
    from notifications.poll_chart import chart_writer
    from services import polls
    from services.regions import get_region

    now = datetime.now(UTC)
    cfg = poll_config(args.settings)
    async with cli_session(args.settings) as session:
        try:
            if args.action == "create":
                region = await get_region(session, args.committee)
                if region is None:
                    print(f"error: no region {args.committee}", file=sys.stderr)
                    return 2
                times = {}
                for name in ("opens", "closes"):
                    raw = getattr(args, name)
                    if raw is None:
                        continue
                    when = cfg.parse_local(raw)
                    if when is None:
                        print(f'error: --{name} is "YYYY-MM-DD HH:MM" (local time, {cfg.tz.key})', file=sys.stderr)
                        return 2
                    times[name] = when
                draft = polls.PollDraft(question=args.question, options=args.option or [], multiple=args.multiple,
                                        eligible=args.eligible, unit=args.unit, rule=args.rule, quorum=args.quorum,
                                        secret=args.secret, allow_change=not args.no_change,
                                        opens_at=times.get("opens"), closes_at=times.get("closes"))
                poll = await polls.create_poll(session, region_admin(region), region, draft, now=now, cfg=cfg)
                await session.commit()
                print(poll.id)
                return 0
            if args.action == "close":
                results = await polls.close_now(session, None, args.id, now=now, cfg=cfg,
                                                chart=chart_writer(cfg))
                await session.commit()
                print(json.dumps(results.to_json(), ensure_ascii=False) if args.json else f"closed poll {args.id}")
                return 0
            if args.action == "results":
                results = await polls.poll_results(session, None, args.id, now=now, cfg=cfg)
                if args.json:
                    print(json.dumps(results.to_json(), ensure_ascii=False))
                else:
                    from notifications.messages.polls import results_text

                    print(results_text(results).striptags())
                return 0
            if args.action == "list":
                from sqlalchemy import select

                from services.models import Poll

                rows = list(await session.scalars(select(Poll).order_by(Poll.id.desc()).limit(args.limit)))
                for p in rows:
                    print(f"{p.id}\t{p.status.value}\t{cfg.local(p.closes_at):%Y-%m-%d %H:%M}\t{p.question}")
                return 0
        except polls.PollError as err:
            await session.rollback()
            print(f"error: {_refusal(err)}", file=sys.stderr)
            return 2
    return 2


def add_commands(sub) -> None:
    p = sub.add_parser("polls", help="polls (投票)",
                       description="`polls create --committee CODE --question TEXT --option A --option B … "
                                   "--closes \"YYYY-MM-DD HH:MM\"` prints the new poll's id; `polls close ID`; "
                                   "`polls results ID [--json]`; `polls list`. Times are local (TIMEZONE).")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = actions.add_parser("create", help="create a poll and print its id")
    c.add_argument("--committee", required=True, help="committee region code")
    c.add_argument("--question", required=True)
    c.add_argument("--option", action="append", help="an option (repeat; the first is 'agree' for rules)")
    c.add_argument("--multiple", type=int, default=1, metavar="K", help="choose at most K options")
    c.add_argument("--eligible", metavar="EXPR", help='who may vote, e.g. \'building == "3"\'')
    c.add_argument("--unit", choices=["resident", "household", "owner"], default="resident")
    c.add_argument("--rule", default="majority",
                   help="majority, plurality, fraction:F (e.g. fraction:2/3), civil-code-ordinary, civil-code-major")
    c.add_argument("--quorum", metavar="F", help="fraction of eligible units that must vote, e.g. 1/2")
    c.add_argument("--secret", action="store_true", help="secret ballot (final; results after closing)")
    c.add_argument("--no-change", action="store_true", help="a vote cannot be changed")
    c.add_argument("--opens", metavar='"YYYY-MM-DD HH:MM"', help="default: now")
    c.add_argument("--closes", metavar='"YYYY-MM-DD HH:MM"', required=True)
    close = actions.add_parser("close", help="close a poll now and send its results")
    close.add_argument("id", type=int)
    close.add_argument("--json", action="store_true")
    res = actions.add_parser("results", help="a poll's results")
    res.add_argument("id", type=int)
    res.add_argument("--json", action="store_true")
    lst = actions.add_parser("list", help="the latest polls")
    lst.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_polls)
