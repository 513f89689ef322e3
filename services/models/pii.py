"""Column types for personal data at rest: phone numbers encrypted, matched by a blind index.

The keys come from the engine, not from a module global: ``bot.db.create_engine(url,
data_keys=...)`` attaches a :class:`services.identity.DataKeys` to the engine's dialect (each
engine has its own), and these types read it when a value is bound or loaded. Two apps in one
process, each with its own engine and key, do not see each other's keys. An engine without keys
can do anything but read or write a phone number (:class:`DataKeyError` says what is missing).

- :class:`EncryptedPhone`: services read and write the clear E.164 number; the database holds
  ``v1:…`` AES-GCM tokens (a new random nonce each time, so equal numbers look different). It
  cannot be compared in SQL: comparing it raises at once instead of silently matching nothing.
- :class:`PhoneIndex`: the blind index of a phone column. It is *given the clear number* (in
  inserts, updates and comparisons alike) and stores and compares its keyed hash; reading it
  gives the hash. ``Resident.phone_index == "+8613800138000"`` finds that number.
"""

from __future__ import annotations

import operator

from sqlalchemy import String, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import operators

from services.identity import DataKeyError, DataKeys

_ATTRIBUTE = "communitybot_data_keys"
ENCRYPTED_PHONE_LENGTH = 100  # "v1:" + base64(12 nonce + ≤16 digits + 16 tag) is at most 63
PHONE_INDEX_LENGTH = 64

__all__ = ["DataKeyError", "EncryptedPhone", "PhoneIndex", "attach_data_keys", "data_keys_of"]


def attach_data_keys(engine: AsyncEngine, keys: DataKeys | None) -> None:
    """Give this engine (and only it) the keys its phone columns are encrypted with."""
    setattr(engine.sync_engine.dialect, _ATTRIBUTE, keys)


def data_keys_of(dialect: Dialect) -> DataKeys:
    keys = getattr(dialect, _ATTRIBUTE, None)
    if keys is None:
        raise DataKeyError("this database engine has no data key: create it with "
                           "bot.db.create_engine(url, data_keys=settings.data_keys())")
    return keys


_NOT_COMPARABLE = {operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge,
                   operators.in_op, operators.not_in_op, operators.like_op, operators.ilike_op,
                   operators.contains_op, operators.startswith_op, operators.endswith_op,
                   operators.between_op}


class EncryptedPhone(TypeDecorator[str]):
    """A phone number encrypted at rest; compare its :class:`PhoneIndex` column instead."""

    impl = String(ENCRYPTED_PHONE_LENGTH)
    cache_ok = True

    class comparator_factory(TypeDecorator.Comparator):  # SQLAlchemy looks for this name
        def operate(self, op, *other, **kwargs):
            if op in _NOT_COMPARABLE:
                raise TypeError("an encrypted phone column cannot be compared in SQL: compare its blind "
                                "index (e.g. Resident.phone_index == number)")
            return super().operate(op, *other, **kwargs)

    def process_bind_param(self, value: str | None, dialect) -> str | None:
        if value is None:
            return None
        return data_keys_of(dialect).encrypt(value, "phone")

    def process_result_value(self, value: str | None, dialect) -> str | None:
        if value is None:
            return None
        return data_keys_of(dialect).decrypt(value, "phone")


class PhoneIndex(TypeDecorator[str]):
    """The keyed hash (HMAC-SHA256) of a normalised phone number; bound from the clear number."""

    impl = String(PHONE_INDEX_LENGTH)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect) -> str | None:
        if value is None:
            return None
        return data_keys_of(dialect).phone_index(value)
