"""What a broadcast or life-stage template may say about a member, and her values."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Final

from bot.members.fields import FieldBook
from bot.members.lifestage import stage_of

# A variable a member lacks is left out of her context, so the strict template environment
# fails her render instead of printing a blank; templates handle optional ones with
# `{% if week is defined %}`.
MEMBER_VARS: Final = ("nickname", "city", "province", "tier", "points", "member_id", "stage",
                      "week", "baby_months", "lang", "field")


def member_context(profile: Mapping[str, Any], today: date, fields: FieldBook | None = None,
                   masked: bool = False) -> dict[str, Any]:
    """A member's template variables (MEMBER_VARS); those she lacks are left out. `field`
    holds her custom fields as she reads them (女孩, not girl): `{{ field.baby_gender }}`;
    `masked` (a preview staff see) hides the sensitive ones."""
    fields_of = profile.get("fields") or {}
    member = profile.get("member") or {}
    summary = stage_of(profile, today)
    ctx: dict[str, Any] = {
        "nickname": fields_of.get("nickname"), "city": fields_of.get("city"),
        "province": fields_of.get("province"), "tier": member.get("tier"),
        "member_id": member.get("id"), "lang": profile.get("lang"),
        "points": int((profile.get("points") or {}).get("balance", 0)),
        "stage": summary.stage, "week": summary.week, "baby_months": summary.months,
    }
    if fields is not None:
        lang = str(profile.get("lang") or "zh")
        ctx["field"] = {d.name: d.show(fields_of.get(d.name), lang, masked) for d in fields
                        if fields_of.get(d.name) not in (None, "", [])} or None
    return {k: v for k, v in ctx.items() if v is not None and v != ""}
