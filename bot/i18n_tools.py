"""Catalogue maintenance: extract messages, update both catalogues, compile, list what is missing.

``communitybot i18n update`` re-extracts ``locale/messages.pot`` and merges it into
``locale/{zh_Hans,en}/LC_MESSAGES/messages.po`` (English entries are filled with their msgid,
since the source strings are English); ``communitybot i18n compile`` writes the ``.mo`` files;
``communitybot i18n missing`` lists untranslated or fuzzy entries.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from services.i18n import DOMAIN, LOCALE_DIR, LOCALES

ROOT = LOCALE_DIR.parent


def po_path(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def _read(path: Path, locale: str) -> Catalog:
    with path.open("rb") as fh:
        return read_po(fh, locale=locale.replace("_Hans", ""))


def _write(path: Path, catalog: Catalog) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        write_po(fh, catalog, omit_header=False, sort_output=True, width=100, include_previous=False,
                 no_location=True)


def extract() -> Catalog:
    pot = LOCALE_DIR / "messages.pot"
    # t()/tn() are notifications.render's escaping forms of _()/ngettext().
    keywords = ["-k", "N_", "-k", "t", "-k", "tn:1,2"]
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", str(ROOT / "babel.cfg"),
                    *keywords, "--no-location", "--sort-output", "--width=100", "-o", str(pot), str(ROOT)],
                   check=True, cwd=ROOT, capture_output=True)
    with pot.open("rb") as fh:
        return read_po(fh)


def update() -> None:
    template = extract()
    for locale in LOCALES:
        path = po_path(locale)
        catalog = _read(path, locale) if path.exists() else Catalog(locale=locale.replace("_Hans", ""),
                                                                   domain=DOMAIN)
        catalog.update(template, no_fuzzy_matching=True)
        for message in catalog:
            if not message.id:
                continue
            if locale == "en":
                message.string = message.id
                message.flags.discard("fuzzy")
        catalog.obsolete.clear()
        _write(path, catalog)


def compile_all() -> list[Path]:
    written = []
    for locale in LOCALES:
        catalog = _read(po_path(locale), locale)
        mo = po_path(locale).with_suffix(".mo")
        with mo.open("wb") as fh:
            write_mo(fh, catalog)
        written.append(mo)
    return written


def problems(locale: str) -> list[str]:
    """Untranslated or fuzzy msgids of a catalogue."""
    out = []
    for message in _read(po_path(locale), locale):
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            out.append(message.id if isinstance(message.id, str) else message.id[0])
    return out


def apply(locale: str, translations: dict[str, str | list[str]]) -> int:
    """Fill entries from a msgid → translation mapping; returns how many changed. A plural entry is
    keyed by its singular msgid; one string fills every plural form (Chinese has one), a list gives
    each form."""
    path = po_path(locale)
    catalog = _read(path, locale)
    n = 0
    for message in catalog:
        key = message.id if isinstance(message.id, str) else (message.id[0] if message.id else None)
        if not key or key not in translations:
            continue
        value = translations[key]
        if isinstance(message.id, str):
            message.string = value
        else:
            forms = [value] * catalog.num_plurals if isinstance(value, str) else list(value)
            message.string = tuple(forms)
        message.flags.discard("fuzzy")
        n += 1
    _write(path, catalog)
    return n


def main(action: str) -> int:
    if action == "update":
        update()
        print("catalogues updated; untranslated:", {loc: len(problems(loc)) for loc in LOCALES})
    elif action == "compile":
        for path in compile_all():
            print(f"wrote {path.relative_to(ROOT)}")
    elif action == "missing":
        bad = {loc: problems(loc) for loc in LOCALES}
        for loc, ids in bad.items():
            for msgid in ids:
                print(f"{loc}\t{msgid!r}")
        return 1 if any(bad.values()) else 0
    return 0
