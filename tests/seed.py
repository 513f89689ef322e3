"""Known registry rows for tests: two committees of the demo hierarchy, a few residents each."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from services.identity import make_id_number
from services.models import Household, Region, StaffRole
from services.regions import ensure_demo_regions, get_region
from services.registry import import_registry, read_text_rows
from services.verification import create_household_invites, create_staff_invite

SECRET = "test-secret-key"
ID_WANG = make_id_number("310104", date(1945, 3, 2), 11, "F")
ID_LI = make_id_number("310104", date(1950, 7, 9), 13, "M")
ID_ZHAO = make_id_number("310104", date(1938, 1, 30), 21, "F")
ID_FENG = make_id_number("310104", date(1960, 5, 5), 31, "M")

DXYC_CSV = f"""姓名,手机,身份证号,小区,楼号,单元,室,户号,独居
王秀英,138 0013 8001,{ID_WANG},丁香苑,3,2,201,DX-3-2-201,否
李建国,+86 13800138002,{ID_LI},丁香苑,3,2,201,DX-3-2-201,否
赵桂兰,13800138003,{ID_ZHAO},迎春小区,5,1,102,YC-5-1-102,是
孙一,13800138009,,迎春小区,6,1,101,YC-6-1-101,否
孙二,13800138009,,迎春小区,6,1,102,YC-6-1-102,否
"""
FLSQ_CSV = f"""name,phone,id_number,compound,building,unit,room,household
冯志强,13800138100,{ID_FENG},枫林小区,1,1,101,FL-1-1-101
"""


async def seed_registry(sessions, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    async with sessions() as session:
        await ensure_demo_regions(session)
        await session.commit()
        for code, text in (("DXYC", DXYC_CSV), ("FLSQ", FLSQ_CSV)):
            await import_registry(session, await get_region(session, code), read_text_rows(text),
                                  secret_key=SECRET, now=now)


async def staff_code(sessions, region_code: str = "DXYC", role: StaffRole = StaffRole.committee) -> str:
    async with sessions() as session:
        region = await get_region(session, region_code)
        code = await create_staff_invite(session, region=region, role=role, secret_key=SECRET,
                                         ttl=timedelta(days=30), now=datetime.now(UTC))
        await session.commit()
        return code


async def household_codes(sessions, household: str, count: int = 1, *, ttl=timedelta(days=30),
                          now: datetime | None = None) -> list[str]:
    async with sessions() as session:
        hh = await session.scalar(select(Household).where(Household.code == household))
        codes = await create_household_invites(session, household=hh, count=count, secret_key=SECRET, ttl=ttl,
                                               now=now or datetime.now(UTC))
        await session.commit()
        return codes


async def region_id(sessions, code: str) -> int:
    async with sessions() as session:
        return (await session.scalar(select(Region).where(Region.code == code))).id
