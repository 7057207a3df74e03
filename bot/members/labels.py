"""How staff read a member's coded values (stage, role, where she came from): one table
each, for commands, previews and exports alike."""

from __future__ import annotations

from typing import Final

STAGE_NAMES: Final = {"pregnant": "孕期", "baby": "宝宝", "other": "其他", "unknown": "未知"}
ROLE_NAMES: Final = {"consumer": "会员", "kol": "KOL", "employee": "员工",
                     "manager": "社群经理", "marketer": "市场", "admin": "管理员"}
# `source.kind` (`import` is written by the member import).
SOURCE_NAMES: Final = {"organic": "自然关注", "qr": "二维码", "referral": "会员推荐",
                       "import": "导入", "unknown": "未记录"}
