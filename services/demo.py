"""Synthetic demo data: the demo hierarchy and a few hundred residents, imported the real way."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity import id_last4_matches, make_id_number
from services.models import Account, Resident
from services.regions import ensure_demo_regions, get_region
from services.registry import import_registry

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰文辉建国建华淑珍德明志强慧敏海燕"
HEADER = ["姓名", "手机", "身份证号", "性别", "小区", "楼号", "单元", "室", "户号", "独居", "户籍", "残疾等级",
          "月收入"]


def synthetic_rows(n: int, *, seed: int = 7, phone_prefix: str = "1390000", compounds=("丁香苑", "迎春小区"),
                   today: date | None = None) -> Iterator[tuple[int, list[Any]]]:
    """A header and ``n`` plausible registry rows; about 30% are over 70, a share of them alone."""
    rng = random.Random(seed)
    today = today or date(2026, 11, 28)
    yield 1, HEADER
    line = 1
    household = 0
    while line <= n:
        household += 1
        compound = rng.choice(compounds)
        building, unit, room = rng.randint(1, 12), rng.randint(1, 4), rng.randint(1, 6) * 100 + rng.randint(1, 4)
        elderly = rng.random() < 0.3
        size = 1 if elderly and rng.random() < 0.45 else rng.randint(1, 4)
        for _ in range(min(size, n - line + 1)):
            line += 1
            age = rng.randint(70, 97) if elderly else rng.randint(1, 69)
            birth = date(today.year - age, rng.randint(1, 12), rng.randint(1, 28))
            gender = rng.choice("MF")
            # (area code, sequence) is unique per line, so no two synthetic people share an ID number.
            id_number = make_id_number(f"3{(line // 500) % 100000:05d}", birth, (line % 500) * 2, gender)
            phone = phone_prefix + str(line).zfill(11 - len(phone_prefix)) if age >= 16 else ""
            yield line, [
                rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, rng.randint(1, 2))), phone, id_number,
                "男" if gender == "M" else "女", compound, str(building), str(unit), str(room),
                f"{compound}-{building}-{unit}-{room}", "是" if size == 1 and elderly else "否",
                "本市" if rng.random() < 0.8 else "外省市", str(rng.choice([0] * 12 + [1, 2, 3, 4])),
                str(rng.choice([0, 800, 1200, 1800, 2600, 4000, 6500, 9000])),
            ]


async def seed_demo(session: AsyncSession, *, secret_key: str, now: datetime, residents: int = 300) -> bool:
    """Create the demo hierarchy and residents if the database has no residents yet; idempotent."""
    from services.tags import ensure_default_tags

    await ensure_demo_regions(session)
    await ensure_default_tags(session)
    await session.commit()
    if await session.scalar(select(func.count()).select_from(Resident)):
        return False
    for code, n, prefix, compounds in (("DXYC", residents, "1390000", ("丁香苑", "迎春小区")),
                                       ("FLSQ", max(20, residents // 6), "1390001", ("枫林小区",))):
        committee = await get_region(session, code)
        if committee is None:  # ensure_demo_regions made it just above
            raise RuntimeError(f"demo committee {code} is missing")
        await import_registry(session, committee, synthetic_rows(n, phone_prefix=prefix, compounds=compounds),
                              secret_key=secret_key, now=now, flag_missing=False)
    return True


async def demo_resident(session: AsyncSession, secret_key: str) -> tuple[str, str, str] | None:
    """Phone, name and ID last four of an unlinked demo resident (synthetic data only).

    Only a keyed hash of the last four is stored; for the demo hint they are found again by trying
    the 11,000 possible values with the key (which is why the key never lives in the database)."""
    linked = select(Account.resident_id).where(Account.resident_id.is_not(None))
    r = await session.scalar(select(Resident).where(Resident.phone.is_not(None), Resident.id_last4_hash.is_not(None),
                                                    Resident.id.not_in(linked)).order_by(Resident.id).limit(1))
    if r is None or r.phone is None:  # the query asked for a phone; the column may hold none
        return None
    for candidate in (f"{n:03d}{c}" for n in range(1000) for c in "0123456789X"):
        if id_last4_matches(candidate, r.id_hash, r.id_last4_hash, secret_key):
            return r.phone, r.name, candidate
    return None
