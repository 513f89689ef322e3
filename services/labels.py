"""Human labels of registry and account fields: plain words (the XLSX export's headers, /mydata,
the console), never markup; chat messages escape them like any other value."""

from __future__ import annotations

from services.i18n import N_, _

FIELD_LABELS = {
    "telegram_id": N_("Telegram id"),
    "first_name": N_("first name"),
    "last_name": N_("last name"),
    "username": N_("username"),
    "language": N_("language"),
    "consent_at": N_("consent given at"),
    "verification_method": N_("verification method"),
    "verified_at": N_("verified at"),
    "created_at": N_("created at"),
    "name": N_("name"),
    "phone": N_("phone"),
    "id_last4": N_("ID number (last 4)"),
    "id_number_last4": N_("ID number (last 4)"),
    "id_number": N_("ID number"),
    "birth_date": N_("birth date"),
    "gender": N_("gender"),
    "compound": N_("compound"),
    "building": N_("building"),
    "unit": N_("unit"),
    "room": N_("room"),
    "household": N_("household"),
    "living_alone": N_("lives alone"),
    "hukou": N_("hukou"),
    "disability_level": N_("disability level"),
    "monthly_income": N_("monthly income"),
    "emergency_contact_phone": N_("emergency contact phone"),
    "owner": N_("home owner"),
    "floor_area": N_("exclusive floor area (m²)"),
    "status": N_("status"),
    "verified": N_("verified"),
    "committee": N_("committee"),
    "tags": N_("tags"),
}


def label(field: str) -> str:
    """The translated label of a field name (the field name itself if it has none)."""
    return _(FIELD_LABELS[field]) if field in FIELD_LABELS else field
