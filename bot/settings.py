"""Settings from the environment and an optional ``.env`` (pydantic-settings)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, PrivateAttr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
WEBHOOK_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_UNIT_SECONDS = {None: 1, "s": 1, "ms": 0.001, "m": 60, "min": 60, "h": 3600, "d": 86400}


def async_driver_url(url: str) -> str:
    """``postgres://…`` and ``postgresql://…`` (as hosts hand them out) with the asyncpg driver named."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def parse_duration(value: object) -> timedelta:
    """``90`` (seconds), ``"45s"``, ``"30m"``, ``"2h"``, ``"1d"`` → timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError("expected seconds or a number with a unit (45s, 30m, 2h)")
    return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    bot_token: str | None = None
    telegram_api_base: str | None = None
    data_dir: Path = Path("data")
    database_url: str | None = None
    redis_url: str | None = None
    timezone: str = "Asia/Shanghai"
    default_locale: str = "zh_Hans"
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=0, le=65535)
    public_url: str | None = None
    # Telegram echoes it in X-Telegram-Bot-Api-Secret-Token on every webhook request (bot.web).
    webhook_secret: str | None = None
    health_sender_lag: Duration = timedelta(minutes=5)  # /healthz: an alert, prompt or reply waiting longer
    health_tick_age: Duration = timedelta(minutes=5)  # /healthz: no tick finished for longer (≥ 3 TICK_INTERVAL)
    health_timeout: Duration = timedelta(seconds=2)  # /healthz: each check (database, Redis) must answer within
    secret_key: str | None = None
    data_key: str | None = None  # encrypts phone numbers at rest; else DATA_DIR/data_key (see README)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per line (bot.logs)
    fsm_ttl: Duration = timedelta(days=1)  # an abandoned conversation is forgotten this long after its last step

    outbox_rate: float = Field(default=25.0, gt=0)
    outbox_per_chat_rate: float = Field(default=1.0, gt=0)
    outbox_senders: int = Field(default=1, ge=1, le=64)  # sender processes sharing one bot token
    tick_interval: Duration = timedelta(seconds=30)
    checkin_reminder_after: Duration = timedelta(minutes=30)
    checkin_escalate_after: Duration = timedelta(minutes=90)
    alert_ack_timeout: Duration = timedelta(minutes=30)
    alert_resolve_timeout: Duration = timedelta(hours=4)
    invite_ttl: Duration = timedelta(days=30)
    policy_push_interval: Duration = timedelta(days=90)  # at most one push per policy and resident
    policy_followup_after: Duration = timedelta(days=14)  # the one follow-up when nobody applied
    outbox_pii_retention: Duration = timedelta(days=7)  # then sent messages lose their text (phones…)
    poll_reminder_before: Duration = timedelta(hours=24)  # one reminder to units that have not voted
    discussion_digest_interval: Duration = timedelta(minutes=30)  # at most one digest per topic and subscriber
    discussion_reports_to_hide: int = Field(default=3, ge=1, le=100)  # distinct reports that hide a comment
    console_session_idle: Duration = timedelta(hours=8)  # a console session ends after this long without a request

    _data_keys: object = PrivateAttr(default=None)

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"\d+:[\w-]+", value):
            raise ValueError("must look like 123456:ABC-DEF (from @BotFather)")
        return value or None

    @field_validator("telegram_api_base", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) URL such as http://127.0.0.1:8081")
        return value.rstrip("/") if value else None

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_shape(cls, value: str | None) -> str | None:
        if value and not WEBHOOK_SECRET_RE.fullmatch(value):
            raise ValueError("must be 1-256 characters A-Z, a-z, 0-9, _ or - (Telegram's secret_token)")
        return value or None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai)") from None
        return value

    @field_validator("default_locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        if value not in ("zh_Hans", "en"):
            raise ValueError("must be zh_Hans or en")
        return value

    @field_validator("data_key")
    @classmethod
    def _data_key_length(cls, value: str | None) -> str | None:
        from services.identity import MIN_DATA_KEY_LENGTH

        if value and len(value.strip()) < MIN_DATA_KEY_LENGTH:
            raise ValueError(f"must have at least {MIN_DATA_KEY_LENGTH} characters "
                             "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return value.strip() if value else None

    @field_validator("database_url")
    @classmethod
    def _db_driver(cls, value: str | None) -> str | None:
        if not value:
            return None
        value = async_driver_url(value)
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must be sqlite+aiosqlite:///path or postgresql://user@host/db")
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'communitybot.sqlite3'}"

    def ensure_data_dir(self) -> Path:
        """DATA_DIR, created owner-only (0700) and made so if it was not: it holds the keys."""
        make_private_dir(self.data_dir)
        return self.data_dir

    def _key_file(self, name: str) -> str:
        """A key kept in DATA_DIR/name (0600), generated there the first time."""
        path = self.ensure_data_dir() / name
        if path.exists():
            return path.read_text().strip()
        key = secrets.token_urlsafe(48)
        write_private_file(path, key)
        return key

    def ensure_secret_key(self) -> str:
        """The HMAC/session key: from SECRET_KEY, else generated once into the data folder."""
        if not self.secret_key:
            self.secret_key = self._key_file("secret_key")
        return self.secret_key

    def ensure_data_key(self) -> str:
        """The key phone numbers are encrypted with: from DATA_KEY, else generated once into
        DATA_DIR/data_key. Lose it and the encrypted numbers are lost: back it up apart from the
        database (README "Keys")."""
        if not self.data_key:
            self.data_key = self._key_file("data_key")
        return self.data_key

    def ensure_webhook_secret(self) -> str:
        """The webhook's secret token: from WEBHOOK_SECRET, else generated once into DATA_DIR/webhook_secret."""
        if not self.webhook_secret:
            self.webhook_secret = self._key_file("webhook_secret")
        return self.webhook_secret

    def data_keys(self):
        """The :class:`services.identity.DataKeys` of this deployment (made once per settings)."""
        if self._data_keys is None:
            from services.identity import DataKeys

            self._data_keys = DataKeys(self.ensure_data_key())
        return self._data_keys


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and leave it readable by its owner only (0700)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        with contextlib.suppress(PermissionError):  # not ours: leave it as its owner set it
            path.chmod(0o700)


def write_private_file(path: Path, text: str) -> None:
    """Write a new file that is never readable by others, not even for a moment (0600 from birth)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def load_settings(**overrides: object) -> Settings:
    """Build settings or stop with one clear line naming the bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]).upper() if err["loc"] else "settings"
        msg = err["msg"].removeprefix("Value error, ")
        print(f"configuration error: {name}: {msg}", file=sys.stderr)
        raise SystemExit(2) from None
