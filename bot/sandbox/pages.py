"""The sandbox's own web pages, rendered in the language of the person looking at them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).parent / "templates"

# An object with ``gettext`` and ``ngettext`` (a ``gettext.NullTranslations``, for instance).
Translations = Any


def create_jinja_env(translate: Translations | None = None) -> jinja2.Environment:
    """Jinja2 environment for the chat pages; ``translate`` has ``gettext`` and ``ngettext``."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
    )
    if translate is not None:
        env.install_gettext_callables(  # type: ignore[attr-defined]
            gettext=translate.gettext, ngettext=translate.ngettext, newstyle=True
        )
    else:
        env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    return env


class Pages:
    """One Jinja2 environment per set of translations.

    ``translate`` serves every page; ``translations_for``, when given, maps a Telegram
    ``language_code`` (``en``, ``zh-hans``) to the translations of that language, so that a chat
    page speaks the language of its simulated user.
    """

    def __init__(
        self,
        translate: Translations | None = None,
        translations_for: Callable[[str], Translations] | None = None,
    ) -> None:
        self._default = create_jinja_env(translate)
        self._translations_for = translations_for
        self._envs: dict[int, tuple[Translations, jinja2.Environment]] = {}

    def env(self, language_code: str | None) -> jinja2.Environment:
        if self._translations_for is None or not language_code:
            return self._default
        translations = self._translations_for(language_code)
        # Keyed by the translations object, so that arbitrary language codes share a few entries.
        known = self._envs.get(id(translations))
        if known is None or known[0] is not translations:
            known = (translations, create_jinja_env(translations))
            self._envs[id(translations)] = known
        return known[1]

    def render(self, template: str, language_code: str | None, **context: Any) -> str:
        return self.env(language_code).get_template(template).render(lang=language_code or "zh-hans", **context)
