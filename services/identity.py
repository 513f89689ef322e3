"""Phone numbers and resident ID numbers: normalising, validating, hashing, masking, encrypting.

ID numbers are never stored in clear: only an HMAC-SHA256 keyed with SECRET_KEY (so a leaked
database cannot be reversed by enumerating the small ID space), and for the knowledge check a keyed
hash of the last four characters (their clear value plus the birth date and the district's area code
would give the whole number back).

Phone numbers are stored encrypted (AES-256-GCM) with a blind index for matching (HMAC-SHA256 of
the E.164 number), both keyed by :class:`DataKeys`: a key that lives outside the database (DATA_KEY
or ``DATA_DIR/data_key``). The engine carries the keys (``bot.db.create_engine(data_keys=...)``) and
the column types use them (``services.models.base``), so services read and write clear numbers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from datetime import date

import phonenumbers
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
MAX_PHONE_INPUT = 40  # characters; anything longer is not a phone number
PHONE_REGION = "CN"  # numbers written without a country code are Chinese (021-…, 138…)
_MOBILE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)


class InvalidIdNumber(ValueError):
    """Carries a short machine reason: ``length``, ``characters``, ``checksum``, ``birth_date``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalize_phone(raw: str | None, *, international: bool = False) -> str | None:
    """A valid phone number, mobile or landline, in E.164 (``+8613800138000``, ``+862164321234``).

    Written as people write them: ``138 0013 8000``, ``+86-138…``, ``0086138…``, ``86138…``,
    ``021-6432 1234``; without a country code a number is Chinese. ``international``: the text is
    in international form even without its ``+`` (a Telegram contact's ``447700…``). Returns None
    when it is not a valid number.
    """
    if raw is None:
        return None
    text = str(raw).strip()
    if not text or len(text) > MAX_PHONE_INPUT:
        return None
    candidates = [text]
    if international and not text.startswith("+") and re.fullmatch(r"[\d\s\-().]+", text):
        candidates.append("+" + text)
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, PHONE_REGION)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def is_mobile(e164: str) -> bool:
    """Whether a normalised number can be a mobile (what a Telegram account's own number is)."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.number_type(number) in _MOBILE_TYPES


def quoted_cell(value: str) -> str:
    """A cell of an uploaded file as a refusal quotes it. A value of seven digits or more may be a phone
    or an ID number in the wrong column: it is not repeated (refusals are kept in an import's report,
    shown, exported, or sent back into a chat), where the registry holds IDs only as keyed hashes and
    phones encrypted."""
    return "…" if sum(ch.isdigit() for ch in value) >= 7 else value


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


def hash_id_last4(last4_chars: str, id_hash: str, secret_key: str) -> str:
    """The keyed hash the knowledge check compares: HMAC-SHA256 (SECRET_KEY) of the last four
    characters, salted with the row's ID hash so that equal last fours look different."""
    message = f"id-last4:{id_hash}:{last4_chars.upper()}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def id_last4_matches(given: str, id_hash: str | None, stored: str | None, secret_key: str) -> bool:
    """Whether ``given`` is the last four of the ID number behind ``id_hash`` (constant time)."""
    if not (stored and id_hash and len(given) == 4):
        return False
    return hmac.compare_digest(hash_id_last4(given, id_hash, secret_key), stored)


def make_id_number(region6: str, birth: date, seq3: int, gender: str) -> str:
    """A checksum-valid synthetic ID number (demo data and tests only)."""
    seq = seq3 % 1000
    if (seq % 2 == 1) != (gender == "M"):
        seq = (seq + 1) % 1000
    first17 = f"{region6}{birth:%Y%m%d}{seq:03d}"
    return first17 + id_checksum_char(first17)


# --- personal data at rest -------------------------------------------------------------------

MIN_DATA_KEY_LENGTH = 32
_TOKEN_VERSION = "v1"


class DataKeyError(RuntimeError):
    """No data key, or a stored value that this key cannot decrypt (wrong or lost DATA_KEY)."""


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master)


class DataKeys:
    """AES-256-GCM for phone numbers and HMAC-SHA256 for their blind index, both derived (HKDF) from
    one key kept outside the database. Thread- and task-safe; holds no state but the keys."""

    __slots__ = ("_aead", "_index_key")

    def __init__(self, key: str) -> None:
        if len(key) < MIN_DATA_KEY_LENGTH:
            raise ValueError(f"the data key must have at least {MIN_DATA_KEY_LENGTH} characters")
        master = key.encode()
        self._aead = AESGCM(_derive(master, b"communitybot/phone-encryption/v1"))
        self._index_key = _derive(master, b"communitybot/phone-index/v1")

    def __repr__(self) -> str:
        return "DataKeys(<hidden>)"

    def encrypt(self, text: str, purpose: str = "phone") -> str:
        """``v1:`` + base64(nonce + ciphertext + tag); ``purpose`` is bound as associated data."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, text.encode(), purpose.encode())
        return f"{_TOKEN_VERSION}:" + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, token: str, purpose: str = "phone") -> str:
        version, _, body = token.partition(":")
        if version != _TOKEN_VERSION:
            raise DataKeyError("a stored value is not encrypted (run the migrations)")
        try:
            raw = base64.urlsafe_b64decode(body.encode())
            return self._aead.decrypt(raw[:12], raw[12:], purpose.encode()).decode()
        except (InvalidTag, ValueError):
            raise DataKeyError("a stored value cannot be decrypted with this DATA_KEY") from None

    def phone_index(self, e164: str) -> str:
        """The blind index of a normalised number: equal numbers, equal index; no way back."""
        if not e164.startswith("+"):
            raise ValueError("the blind index takes a normalised (E.164) number")
        return hmac.new(self._index_key, b"phone:" + e164.encode(), hashlib.sha256).hexdigest()
