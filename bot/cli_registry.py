"""CLI commands of the registry, household invites and staff enrolment."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot.cli import cli_session, print_rejected


async def _committee(session, code: str):
    from services.models import RegionLevel
    from services.regions import get_region

    region = await get_region(session, code)
    if region is None or region.level != RegionLevel.committee:
        print(f"error: no committee with code {code!r} (see `communitybot regions import`)", file=sys.stderr)
        return None
    return region


async def cmd_registry(args: argparse.Namespace) -> int:
    from services.registry import RowError, export_registry_xlsx, import_registry, read_rows

    settings = args.settings
    async with cli_session(settings) as session:
        committee = await _committee(session, args.committee)
        if committee is None:
            return 2
        if args.action == "export":
            out = Path(args.file or f"registry-{committee.code}.xlsx")
            out.write_bytes(await export_registry_xlsx(session, committee))
            print(f"wrote {out}")
            return 0
        if not args.file or not Path(args.file).exists():
            print("error: registry import needs an existing FILE (.csv or .xlsx)", file=sys.stderr)
            return 2

        def progress(n: int) -> None:
            print(f"\r  {n:,} rows read", end="", file=sys.stderr, flush=True)

        try:
            report = await import_registry(session, committee, read_rows(Path(args.file)),
                                           secret_key=settings.ensure_secret_key(), now=datetime.now(UTC),
                                           progress=progress)
        except RowError as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            return 2
        print(file=sys.stderr)
        print_rejected([f"line {rej.line}: {rej.reason}" for rej in report.rejected])
        print(report.summary())
        return 0


async def cmd_invites(args: argparse.Namespace) -> int:
    from services.residents import committee_households
    from services.verification import create_household_invites, format_code

    settings = args.settings
    async with cli_session(settings) as session:
        committee = await _committee(session, args.committee)
        if committee is None:
            return 2
        households = await committee_households(session, committee.id, code=args.household)
        if not households:
            print("error: no such household in this committee", file=sys.stderr)
            return 2
        now = datetime.now(UTC)
        bot_name = args.bot_username
        print("household\tcode\tlink")
        for hh in households:
            codes = await create_household_invites(session, household=hh, count=args.count,
                                                   secret_key=settings.ensure_secret_key(),
                                                   ttl=settings.invite_ttl, now=now)
            for code in codes:
                print(f"{hh.code}\t{format_code(code)}\thttps://t.me/{bot_name}?start=inv_{code}")
        await session.commit()
        return 0


async def cmd_staff(args: argparse.Namespace) -> int:
    from services.models import StaffRole
    from services.regions import get_region
    from services.verification import create_staff_invite

    settings = args.settings
    async with cli_session(settings) as session:
        region = await get_region(session, args.region)
        if region is None:
            print(f"error: no region with code {args.region!r}", file=sys.stderr)
            return 2
        code = await create_staff_invite(session, region=region, role=StaffRole(args.role),
                                         secret_key=settings.ensure_secret_key(), ttl=settings.invite_ttl,
                                         now=datetime.now(UTC))
        await session.commit()
        print(f"staff invite for {args.role} of {region.name} ({region.code}):")
        print(f"  https://t.me/{args.bot_username}?start=staff_{code}")
        print(f"  or send to the bot: /start staff_{code}")
        return 0


def add_commands(sub) -> None:
    p = sub.add_parser("registry", help="import or export a committee's resident registry",
                       description="Import (CSV UTF-8 with or without BOM, or XLSX; English or Chinese headers) "
                                   "or export (XLSX, no ID numbers) a committee's registry.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    imp = actions.add_parser("import", help="registry import --committee CODE FILE")
    imp.add_argument("--committee", required=True, help="committee region code")
    imp.add_argument("file")
    exp = actions.add_parser("export", help="registry export --committee CODE [FILE]")
    exp.add_argument("--committee", required=True, help="committee region code")
    exp.add_argument("file", nargs="?")
    p.set_defaults(func=cmd_registry)

    p = sub.add_parser("invites", help="household invite codes",
                       description="`invites create --committee CODE [--household H] [--count N]`: print "
                                   "one-time codes with deep links (shown once; stored hashed).")
    p.add_argument("action", choices=["create"])
    p.add_argument("--committee", required=True)
    p.add_argument("--household")
    p.add_argument("--count", type=int, default=1, choices=range(1, 51), metavar="N")
    p.add_argument("--bot-username", default="community_cloud_bot")
    p.set_defaults(func=cmd_invites)

    p = sub.add_parser("staff", help="enrol staff", description="`staff invite --region CODE --role ROLE`: "
                                                               "a one-time staff enrolment link.")
    p.add_argument("action", choices=["invite"])
    p.add_argument("--region", required=True)
    p.add_argument("--role", required=True, choices=["committee", "street", "district", "admin"])
    p.add_argument("--bot-username", default="community_cloud_bot")
    p.set_defaults(func=cmd_staff)
