from sqlalchemy import func, select

from services.models import Region, RegionLevel


async def test_region_roundtrip(session):
    session.add(Region(code="310000", name="上海市", level=RegionLevel.city, path="/310000/"))
    await session.commit()
    assert await session.scalar(select(func.count()).select_from(Region)) == 1
