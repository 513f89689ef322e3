"""How a poll is decided: the rules, exact fractions, and the verdict from counts (no database here).

For ``fraction`` and ``civil-code-*`` rules (and ``majority``) the first option is the proposal
("agree") and the second its rejection; further options ("abstain") count for participation only.
Counting uses :class:`fractions.Fraction` throughout: a building vote decided by 2/3 must not be
decided by a float's rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from services.polls.common import PollError

RULE_NAMES = ("majority", "plurality", "fraction", "civil-code-ordinary", "civil-code-major")
TWO_THIRDS = Fraction(2, 3)
THREE_QUARTERS = Fraction(3, 4)
HALF = Fraction(1, 2)


def parse_fraction(text: str | Fraction | None) -> Fraction:
    """``2/3``, ``0.5`` or ``50%`` as an exact fraction in (0, 1]; ``PollError("bad_fraction")`` otherwise."""
    if isinstance(text, Fraction):
        value = text
    else:
        raw = (text or "").strip().replace(" ", "")
        try:
            if raw.endswith("%"):
                value = Fraction(Decimal(raw[:-1])) / 100
            elif "/" in raw:
                num, _sep, den = raw.partition("/")
                if not (num.isascii() and num.isdigit() and den.isascii() and den.isdigit()) or len(raw) > 16:
                    raise ValueError(raw)
                value = Fraction(int(num), int(den))
            else:
                if len(raw) > 16:
                    raise ValueError(raw)
                value = Fraction(Decimal(raw))
        except (ValueError, ZeroDivisionError, InvalidOperation, ArithmeticError):
            raise PollError("bad_fraction", value=str(text)[:32]) from None
    if not 0 < value <= 1:
        raise PollError("bad_fraction", value=str(text)[:32])
    return value


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str  # one of RULE_NAMES
    fraction: Fraction | None = None  # for "fraction"

    @property
    def text(self) -> str:
        return f"fraction:{self.fraction}" if self.kind == "fraction" else self.kind

    @property
    def civil_code(self) -> bool:
        return self.kind.startswith("civil-code-")

    @property
    def has_proposal(self) -> bool:
        """Whether option 0 is "agree" and option 1 "reject" (every rule but plurality)."""
        return self.kind != "plurality"


def parse_rule(text: str | None) -> Rule:
    """A rule as typed (``majority``, ``plurality``, ``fraction:2/3``, ``civil-code-ordinary``,
    ``civil-code-major``); ``PollError("bad_rule")`` otherwise."""
    raw = (text or "majority").strip().lower()
    if raw.startswith("fraction:"):
        return Rule("fraction", parse_fraction(raw.removeprefix("fraction:")))
    if raw in RULE_NAMES and raw != "fraction":
        return Rule(raw)
    raise PollError("bad_rule", value=raw[:32])


@dataclass(frozen=True, slots=True)
class OptionCount:
    votes: int
    area: Fraction = Fraction(0)


@dataclass(frozen=True, slots=True)
class Counts:
    """What the verdict needs: per-option ballots (and area), who took part, who could have."""

    options: tuple[OptionCount, ...]
    voted_units: int
    voted_area: Fraction
    eligible_units: int
    eligible_area: Fraction


@dataclass(frozen=True, slots=True)
class Verdict:
    quorum_met: bool
    passed: bool | None  # None: the rule decides nothing (plurality)


def verdict(counts: Counts, rule: Rule, quorum: Fraction | None) -> Verdict:
    """The outcome of ``counts`` under ``rule``; pure and exact.

    - ``majority``: quorum met and more "agree" than "reject" among the votes cast;
    - ``fraction:F``: quorum met and "agree" from at least F of the eligible units;
    - ``civil-code-*`` (Civil Code art. 278): owners with ≥ 2/3 of the exclusive area and ≥ 2/3 of
      the owners by head take part; then an ordinary matter needs more than half of the
      participating area and owners, a major one at least 3/4 of both;
    - ``plurality``: only the quorum.
    """
    agree = counts.options[0] if counts.options else OptionCount(0)
    reject = counts.options[1] if len(counts.options) > 1 else OptionCount(0)
    if rule.civil_code:
        quorum_met = (counts.eligible_units > 0 and counts.eligible_area > 0
                      and counts.voted_units >= TWO_THIRDS * counts.eligible_units
                      and counts.voted_area >= TWO_THIRDS * counts.eligible_area)
        if not quorum_met:
            return Verdict(False, False)
        if rule.kind == "civil-code-major":
            passed = (agree.votes >= THREE_QUARTERS * counts.voted_units
                      and agree.area >= THREE_QUARTERS * counts.voted_area)
        else:
            passed = agree.votes > HALF * counts.voted_units and agree.area > HALF * counts.voted_area
        return Verdict(True, passed)
    quorum_met = quorum is None or (counts.eligible_units > 0
                                    and counts.voted_units >= quorum * counts.eligible_units)
    if rule.kind == "plurality":
        return Verdict(quorum_met, None)
    if rule.kind == "fraction":
        assert rule.fraction is not None
        return Verdict(quorum_met, quorum_met and counts.eligible_units > 0
                       and agree.votes >= rule.fraction * counts.eligible_units)
    return Verdict(quorum_met, quorum_met and agree.votes > reject.votes)
