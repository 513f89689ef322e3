"""Phone numbers and resident ID numbers: normalising, validating, hashing, masking.

ID numbers are never stored in clear: only an HMAC-SHA256 keyed with SECRET_KEY (so a leaked
database cannot be reversed by enumerating the small ID space) and the last four characters
for the knowledge check.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_MOBILE = re.compile(r"^1[3-9]\d{9}$")


class InvalidIdNumber(ValueError):
    """Carries a short machine reason: ``length``, ``characters``, ``checksum``, ``birth_date``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalize_phone(raw: str | None) -> str | None:
    """``138 0013 8000``, ``+86-138…``, ``0086138…``, ``86138…`` → ``+8613800138000``.

    Other international numbers keep their ``+`` form. Returns None when it is not a phone number.
    """
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    plus = text.startswith("+")
    digits = re.sub(r"[\s\-().]", "", text.lstrip("+"))
    if not digits.isdigit():
        return None
    if digits.startswith("0086"):
        digits, plus = digits[4:], True
    elif digits.startswith("86") and _MOBILE.match(digits[2:]):
        digits, plus = digits[2:], True
    elif plus and digits.startswith("86"):
        digits = digits[2:]
    elif plus:
        return "+" + digits if 8 <= len(digits) <= 15 else None
    if _MOBILE.match(digits):
        return "+86" + digits
    return None


def mask_phone(phone: str | None) -> str:
    if not phone:
        return ""
    return phone[:-8] + "****" + phone[-4:] if len(phone) > 8 else "****"


def id_checksum_char(first17: str) -> str:
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def parse_id_number(raw: str) -> tuple[str, date, str]:
    """Validate a mainland resident ID number; return (normalised, birth date, gender "M"/"F")."""
    value = str(raw).strip().upper().replace(" ", "")
    if len(value) != 18:
        raise InvalidIdNumber("length")
    if not value[:17].isdigit() or not (value[17].isdigit() or value[17] == "X"):
        raise InvalidIdNumber("characters")
    if id_checksum_char(value[:17]) != value[17]:
        raise InvalidIdNumber("checksum")
    try:
        birth = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise InvalidIdNumber("birth_date") from None
    if birth.year < 1880 or birth > date.today():
        raise InvalidIdNumber("birth_date")
    gender = "M" if int(value[16]) % 2 else "F"
    return value, birth, gender


def hash_id_number(normalized: str, secret_key: str) -> str:
    return hmac.new(secret_key.encode(), normalized.encode(), hashlib.sha256).hexdigest()


def last4(normalized: str) -> str:
    return normalized[-4:]


def make_id_number(region6: str, birth: date, seq3: int, gender: str) -> str:
    """A checksum-valid synthetic ID number (demo data and tests only)."""
    seq = seq3 % 1000
    if (seq % 2 == 1) != (gender == "M"):
        seq = (seq + 1) % 1000
    first17 = f"{region6}{birth:%Y%m%d}{seq:03d}"
    return first17 + id_checksum_char(first17)
