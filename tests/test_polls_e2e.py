"""Polls through the real dispatcher and the sandbox: an elevator vote for building 3 counted as the
Civil Code counts it (owners by head and by area), with every refusal answered and changing nothing,
the production tick announcing and closing it, the results message and chart; and /poll_new, the staff
guided flow with its preview."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from bot.poll_jobs import polls_tick
from services import polls
from services.models import Household, Poll, PollStatus, PollVote
from services.regions import ensure_demo_regions, get_region
from tests.harness import running_stack
from tests.helpers import PacedClock, answer_to, body, dxyc_member

PINNED = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


async def _people(stack) -> dict[str, int]:
    """Building 3: owner households A (two members, 100 m²), B (60.5 m²), C (80 m²) and a renter;
    building 5: an owner. Returns household ids by key."""
    async with stack.session() as s:
        await ensure_demo_regions(s)
        dxyc = await get_region(s, "DXYC")
        ids = {}
        for key, building, owner, area in [("A", "3", True, "100"), ("B", "3", True, "60.5"), ("C", "3", True, "80"),
                                           ("R", "3", False, "70"), ("E", "5", True, "90")]:
            hh = Household(committee_id=dxyc.id, code=f"DX-{key}", building=building, owner=owner,
                           floor_area=Decimal(area))
            s.add(hh)
            await s.flush()
            ids[key] = hh.id
        await s.commit()
    return ids


def _button(message: dict, text: str) -> str:
    for row in message["reply_markup"]["inline_keyboard"]:
        for b in row:
            if b["text"].removeprefix("✓ ") == text:
                return b["callback_data"]
    raise AssertionError((text, message["reply_markup"]))


async def _votes(stack) -> list[tuple[str, list]]:
    async with stack.session() as s:
        return [(k, c) for k, c in (await s.execute(select(PollVote.unit_key, PollVote.choices)
                                                   .order_by(PollVote.unit_key))).all()]


async def test_elevator_vote_for_building_3_counted_by_the_civil_code(tmp_path):
    clock = PacedClock(PINNED)
    async with running_stack(tmp_path, clock=clock) as stack:
        hh = await _people(stack)
        a1, a2 = await dxyc_member(stack, "a1", household=hh["A"]), await dxyc_member(stack, "a2", household=hh["A"])
        b, c = await dxyc_member(stack, "b", household=hh["B"]), await dxyc_member(stack, "c", household=hh["C"])
        renter = await dxyc_member(stack, "renter", household=hh["R"])
        e = await dxyc_member(stack, "e", household=hh["E"], building="5")
        staff = await dxyc_member(stack, "staff", staff=True)
        cfg: polls.PollConfig = stack.dp["poll_config"]
        async with stack.session() as s:
            from tests.helpers import staff_actor

            dxyc = await get_region(s, "DXYC")
            poll = await polls.create_poll(s, await staff_actor(s, "DXYC"), dxyc, polls.PollDraft(
                question="3号楼加装电梯？", options=["同意", "反对", "弃权"], eligible='building == "3"', unit="owner",
                rule="civil-code-major", closes_at=clock() + timedelta(days=7)), now=clock(), cfg=cfg)
            await s.commit()
            poll_id = poll.id
        report = await polls_tick(stack.runtime, clock())
        assert report.announced == 1
        cards = {}
        for name, user in [("a1", a1), ("a2", a2), ("b", b), ("c", c)]:
            cards[name] = await user.wait_for_message(lambda m: "3号楼加装电梯？" in body(m))
            assert f"New poll #{poll_id}" in body(cards[name]) and "Civil Code art. 278" in body(cards[name])
        # A: the first member's vote is the household's; the second is told so, nothing recorded.
        assert await answer_to(stack, a1, cards["a1"], _button(cards["a1"], "反对")) == "Vote recorded: 反对"
        assert await answer_to(stack, a2, cards["a2"], _button(cards["a2"], "同意")) == \
            "Your household has already voted in this poll."
        # B agrees; the same press delivered again counts once.
        yes = _button(cards["b"], "同意")
        assert await answer_to(stack, b, cards["b"], yes) == "Vote recorded: 同意"
        assert await answer_to(stack, b, cards["b"], yes) == "Your vote stands: 同意"
        assert await answer_to(stack, c, cards["c"], _button(cards["c"], "同意")) == "Vote recorded: 同意"
        # Renters and building 5 were not told, and a ballot button they forge is refused.
        for outsider in (renter, e):
            await outsider.send("/polls")
            assert "There are no open polls for you right now." in body(await outsider.last_message())
        place = await renter.last_message()
        assert "registry does not list yours" in await answer_to(stack, renter, place, yes)
        place = await e.last_message()
        assert "you are not among them" in await answer_to(stack, e, place, yes)
        # Forged buttons: another poll, another option.
        assert "does not exist" in await answer_to(stack, c, cards["c"], f"pv:{poll_id + 1}:0:1")
        assert await answer_to(stack, c, cards["c"], f"pv:{poll_id}:9:1") == "That button is no longer valid."
        h = {k: f"h:{v}" for k, v in hh.items()}
        assert await _votes(stack) == sorted([(h["A"], [1]), (h["B"], [0]), (h["C"], [0])])
        # After the deadline a vote is refused; the tick closes the poll and tells voters and staff.
        clock.advance(timedelta(days=7, minutes=1))
        assert await answer_to(stack, c, cards["c"], _button(cards["c"], "反对")) == "This poll is closed."
        report = await polls_tick(stack.runtime, clock())
        assert report.closed == 1
        assert (await polls_tick(stack.runtime, clock())).closed == 0
        for user in (a1, a2, b, c, staff):
            result = await user.wait_for_message(lambda m: f"Results of poll #{poll_id}" in body(m))
            assert result["photo"], "the results come with the bar chart"
            text = body(result)
            # By hand: 2 of 3 owners (< 3/4) and 140.5 of 240.5 m² (< 3/4) agree; all took part.
            assert "同意: 2 votes, 140.5 m²" in text and "反对: 1 vote, 100 m²" in text
            assert "Took part: 3 of 3 owner households" in text and "Participation met" in text
            assert "Not passed." in text
        async with stack.session() as s:
            closed = await s.get(Poll, poll_id)
            assert closed.status == PollStatus.closed
            data = (await polls.poll_results(s, None, poll_id, now=clock(), cfg=cfg)).to_json()
        assert json.loads(json.dumps(data))["options"] == [{"text": "同意", "votes": 2, "area": 140.5},
                                                           {"text": "反对", "votes": 1, "area": 100.0},
                                                           {"text": "弃权", "votes": 0, "area": 0.0}]
        assert (data["passed"], data["quorum_met"], data["eligible_area"]) == (False, True, 240.5)


async def test_staff_make_a_poll_with_the_guided_flow_and_a_preview(tmp_path):
    clock = PacedClock(PINNED)
    async with running_stack(tmp_path, clock=clock) as stack:
        hh = await _people(stack)
        resident = await dxyc_member(stack, "b", household=hh["B"])
        staff = await dxyc_member(stack, "staff", staff=True)
        await staff.send("/poll_new")
        assert "Send the question" in body(await staff.last_message())
        await staff.send("Paint the gate <b>green</b>?")
        await staff.send("Yes\nNo")
        await staff.press("Each household")
        await staff.press("More agree than reject")
        await staff.send('building == ')
        assert "not valid" in body(await staff.last_message())
        await staff.send('building == "3"')
        await staff.press("In 7 days")
        preview = await staff.last_message()
        assert "Preview — who may vote: building == \"3\"" in body(preview)
        assert "Paint the gate <b>green</b>?" in body(preview)  # shown as typed
        async with stack.session() as s:
            assert await s.scalar(select(func.count()).select_from(Poll)) == 0  # nothing before publishing
        await staff.press("Publish")
        assert "is published" in body(await staff.last_message())
        await polls_tick(stack.runtime, clock())
        card = await resident.wait_for_message(lambda m: "Paint the gate" in body(m))
        assert await answer_to(stack, resident, card, _button(card, "Yes")) == "Vote recorded: Yes"
        await staff.send("/polls")
        assert "Paint the gate" in body(await staff.last_message())
