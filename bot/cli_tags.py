"""CLI commands of the tag dictionary: bulk tagging from a CSV, recomputing rule tags."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot.cli import cli_session, print_rejected, region_admin


async def cmd_tags(args: argparse.Namespace) -> int:
    from services.regions import get_region
    from services.tags import bulk_tag_csv, ensure_default_tags, recompute_rule_tags

    now = datetime.now(UTC)
    async with cli_session(args.settings) as session:
        await ensure_default_tags(session)
        if args.action == "recompute":
            counts = await recompute_rule_tags(session, now)
            await session.commit()
            for code, c in sorted(counts.items()):
                print(f"{code}\t+{c.added}\t-{c.removed}" + (f"\terror: {c.error}" if c.error else ""))
            return 0
        region = await get_region(session, args.region)
        if region is None:
            print(f"error: no region with code {args.region!r}", file=sys.stderr)
            return 2
        if not args.file or not Path(args.file).exists():
            print("error: tags bulk needs an existing CSV FILE", file=sys.stderr)
            return 2
        result = await bulk_tag_csv(session, region_admin(region), Path(args.file).read_text(encoding="utf-8-sig"), now)
        await session.commit()
        print_rejected(result.errors)
        print(f"tagged {result.tagged}, already tagged {result.already}, rejected {len(result.errors)}")
        return 0


def add_commands(sub) -> None:
    p = sub.add_parser("tags", help="bulk tagging and rule tags",
                       description="`tags bulk --region CODE FILE`: manual tags from a CSV (columns: resident "
                                   "id, or phone, or name + room; and tag); `tags recompute`: refresh every rule "
                                   "tag now (also done nightly and after each registry import).")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    bulk = actions.add_parser("bulk", help="tags bulk --region CODE FILE")
    bulk.add_argument("--region", required=True, help="region code whose residents the file may name")
    bulk.add_argument("file")
    actions.add_parser("recompute", help="recompute rule tags for everyone")
    p.set_defaults(func=cmd_tags)
