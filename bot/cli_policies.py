"""CLI commands of policy matching: load the catalogue, list it, match, push, import outcomes."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot.cli import cli_session, print_rejected, region_admin


async def cmd_policies(args: argparse.Namespace) -> int:
    from bot.app import app_config, policy_config
    from services import policies as pol
    from services.regions import get_region
    from services.tags import local_today

    now = datetime.now(UTC)
    today = local_today(now, app_config(args.settings).tz)
    cfg = policy_config(args.settings)
    async with cli_session(args.settings) as session:
        if args.action == "load":
            try:
                result = await pol.load_catalogue(session, Path(args.dir), now)
            except pol.CatalogueError as err:
                await session.rollback()
                for problem in err.problems:
                    print(problem, file=sys.stderr)
                print(f"nothing loaded: {len(err.problems)} problem(s)", file=sys.stderr)
                return 1
            await session.commit()
            print(f"loaded {result.files} file(s): {len(result.created)} new, {len(result.updated)} updated "
                  f"policies, {len(result.fields)} questionnaire field(s)")
            return 0
        if args.action == "list":
            rows = await pol.catalogue_rows(session, today)
            items = [{
                "code": p.code, "title": v.title_zh if v else "", "title_en": v.title_en if v else "",
                "rule": v.rule if v else "", "active": p.active, "sample": p.sample,
                "valid_from": v.valid_from.isoformat() if v else None,
                "valid_to": v.valid_to.isoformat() if v and v.valid_to else None,
                "in_force": bool(v and v.valid_from <= today and (v.valid_to is None or v.valid_to >= today)),
            } for p, v in rows]
            if args.json:
                print(json.dumps(items, ensure_ascii=False))
            else:
                for i in items:
                    flag = "active" if i["active"] else "inactive"
                    print(f"{i['code']}\t{flag}\t{i['title']}\t{i['rule']}")
            return 0
        if args.action == "followups":
            sent = await pol.send_followups(session, cfg, now=now)
            await session.commit()
            print(f"follow-ups queued: {sent}")
            return 0
        region = await get_region(session, args.committee)
        if region is None:
            print(f"error: no region with code {args.committee!r}", file=sys.stderr)
            return 2
        actor = region_admin(region)
        try:
            if args.action == "match":
                match = await pol.match_policy(session, actor, args.code, today=today, now=now,
                                               push_interval=cfg.push_interval)
                if args.json:
                    print(json.dumps(match.as_json(), ensure_ascii=False))
                else:
                    for key, value in match.as_json().items():
                        print(f"{key}\t{value}")
                return 0
            if args.action == "push":
                pushed = await pol.push_policy(session, actor, args.code, cfg, today=today, now=now)
                await session.commit()
                m = pushed.match
                print(f"pushed {pushed.pushed}; eligible {m.eligible}, unknown {m.unknown} (never pushed), "
                      f"told within {cfg.push_interval.days} days {m.eligible_notified_recently}, "
                      f"not on the bot {m.eligible_not_on_bot}")
                return 0
            # enrolments import
            path = Path(args.file)
            if not path.is_file():
                print(f"error: no such file {args.file}", file=sys.stderr)
                return 2
            result = await pol.import_enrolments(session, actor, pol.read_rows(path.name, path.read_bytes()),
                                                 now=now)
            await session.commit()
            print_rejected(result.errors)
            print(f"recorded {result.changed}, unchanged {result.unchanged}, rejected {len(result.errors)}")
            return 0 if not result.errors else 1
        except pol.PolicyNotFound as err:
            print(f"error: {err}", file=sys.stderr)
            return 2


def add_commands(sub) -> None:
    p = sub.add_parser("policies", help="policy matching (政策找人)",
                       description="`policies load DIR`: check and load the catalogue (all or nothing); "
                                   "`policies list [--json]`; `policies match CODE --committee C [--json]`; "
                                   "`policies push CODE --committee C`; `policies enrolments import --committee C "
                                   "FILE` (CSV or XLSX: policy, resident or name + room, status, reason); "
                                   "`policies followups`: queue the follow-ups that are due.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    load = actions.add_parser("load", help="policies load DIR")
    load.add_argument("dir")
    listing = actions.add_parser("list", help="policies list [--json]")
    listing.add_argument("--json", action="store_true")
    match = actions.add_parser("match", help="policies match CODE --committee C [--json]")
    match.add_argument("code")
    match.add_argument("--committee", required=True, help="region code whose residents to match")
    match.add_argument("--json", action="store_true")
    push = actions.add_parser("push", help="policies push CODE --committee C")
    push.add_argument("code")
    push.add_argument("--committee", required=True)
    enrol = actions.add_parser("enrolments", help="policies enrolments import --committee C FILE")
    enrol.add_argument("what", choices=["import"])
    enrol.add_argument("--committee", required=True)
    enrol.add_argument("file")
    actions.add_parser("followups", help="queue the follow-ups that are due now")
    p.set_defaults(func=cmd_policies)
