"""Bot commands for staff, typed in their own WeChat: /segment, /broadcast, /tag, /role ...

A registry (name and zh aliases -> handler, roles allowed, usage) with one fallback: a
usage text. Roles live on the profile (`role`); admins listed in config.yml are admins
whatever the profile says. A command from someone who is not staff is ordinary chat. Every
attempt, allowed or not, is written to the audit collection (who, what, when, result).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.brand_calendar import BrandCalendar
from bot.consents import consented
from bot.marketing.audit import Audit
from bot.marketing.campaigns import CampaignError, Campaigns
from bot.marketing.segments import SEGMENT_HELP
from bot.members.fields import FieldBook, FieldError
from bot.members.labels import ROLE_NAMES, SOURCE_NAMES, STAGE_NAMES
from bot.members.lifestage import is_stage_tag
from bot.members.lookup import find_member
from bot.members.points import Points
from bot.members.referrals import Referrals
from bot.members.social import Social
from bot.messages import is_command
from bot.privacy import mask_name, mask_phones
from bot.settings import BUILTIN_FIELDS
from bot.tags import is_system_tag
from store.protocols import Store
from store.records import Profile, identity_key

log = logging.getLogger(__name__)

ROLES = ("consumer", "kol", "employee", "manager", "marketer", "admin")
ROLE_ALIASES = {"达人": "kol", "员工": "employee", "社群经理": "manager", "经理": "manager",
                "市场": "marketer", "营销": "marketer", "管理员": "admin", "会员": "consumer",
                "普通": "consumer", "消费者": "consumer"}
STAFF = frozenset({"manager", "marketer", "admin"})
MARKETING = frozenset({"marketer", "admin"})
FIELD_EDITORS = frozenset({"manager", "admin"})  # /field set: as /points grant
TOP_CONTRIBUTORS = 5  # in /stats
MAX_GRANT = 10_000
_TAG = re.compile(r"^[^\s$.,，:：|/\\]{1,20}$")


class CommandError(Exception):
    """The command cannot be done as written; the message (zh) says why."""


@dataclass
class Call:
    """One command as a handler sees it."""

    actor: Profile
    role: str
    args: str
    now: datetime
    source: str  # the inbound message's key: retries of the same message change nothing
    audit: dict[str, Any] = field(default_factory=dict)  # what the handler wants recorded
    shown: str | None = None  # the arguments as audited, when they hold a sensitive value


Handler = Callable[["Commands", Call], Awaitable[str]]
Redactor = Callable[["Commands", str], str]  # arguments -> as they may be audited


@dataclass(frozen=True)
class Command:
    name: str
    aliases: tuple[str, ...]
    roles: frozenset[str]
    usage: str
    handler: Handler
    redact: Redactor | None = None


REGISTRY: dict[str, Command] = {}


def command(name: str, aliases: tuple[str, ...], roles: frozenset[str], usage: str,
            redact: Redactor | None = None) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        cmd = Command(name, aliases, roles, usage, fn, redact)
        for key in (name, *aliases):
            REGISTRY[key.casefold()] = cmd
        return fn
    return register


class MemberRights(Protocol):
    """What staff commands use of a member's data rights (bot/rights/actions.py)."""

    async def export_link(self, profile: Profile, source: str) -> str: ...

    async def request_erasure(self, profile: Profile, by: str, reason: str, now: datetime,
                              immediately: bool = False) -> datetime: ...


class PersonHandoff(Protocol):
    """What staff commands use of 转人工 (bot/handoff/tickets.py)."""

    async def reply(self, staff: Profile, ticket_id: str, text: str, now: datetime,
                    source: str) -> str: ...

    async def done(self, staff: Profile | None, ticket_id: str | None, now: datetime,
                   why: str = "done") -> str: ...

    async def duty(self, staff: Profile, on: bool, now: datetime) -> str: ...

    async def stats(self, now: datetime) -> str: ...


class Commands:
    def __init__(self, store: Store, campaigns: Campaigns, points: Points, audit: Audit,
                 admins: Collection[str], grant_daily_cap: int,
                 calendar: BrandCalendar, rights: MemberRights | None = None,
                 handoff: PersonHandoff | None = None,
                 more_stats: Sequence[Callable[[], Awaitable[str]]] = (), *,
                 social: Social | None = None, referrals: Referrals | None = None,
                 fields: FieldBook | None = None) -> None:
        self._store = store
        self.social = social  # scores for /member, /stats
        self.referrals = referrals  # where members came from, for /stats
        self.fields = fields or FieldBook({})  # the brand's custom fields, for /member, /field
        self.rights = rights
        self.handoff = handoff
        self.more_stats = tuple(more_stats)  # e.g. the common questions' counts
        self.campaigns = campaigns
        self._points = points
        self._audit_log = audit
        # Identity keys (channel:account:id): an admin on the WeChat account is nobody on
        # another channel, whatever name a sender there gives herself.
        self._admins = frozenset(admins)
        self.grant_daily_cap = grant_daily_cap
        self.calendar = calendar  # "today" for the daily grant cap

    def role_of(self, profile: Profile) -> str:
        if self.is_config_admin(profile):
            return "admin"
        role = str(profile.get("role") or "consumer")
        return role if role in ROLES else "consumer"

    async def handle(self, profile: Profile, text: str, now: datetime, source: str
                     ) -> str | None:
        """The reply to a command; None when it is not one (ordinary chat then)."""
        if not is_command(text):
            return None
        role = self.role_of(profile)
        head, _, args = text.strip()[1:].strip().partition(" ")
        cmd = REGISTRY.get(head.strip().casefold())
        call = Call(profile, role, args.strip(), now, source)
        if cmd is not None and cmd.redact is not None:
            call.shown = cmd.redact(self, call.args)  # before any audit, allowed or not
            if call.shown != call.args:
                # The message as kept in her history (admin view, interaction exports)
                # is the redacted one too; `source` is the inbound record's key.
                await self._store.interactions.update(
                    source, {"text": f"/{head.strip()} {call.shown}"})
        name = cmd.name if cmd else head[:20]
        if role not in STAFF and role not in SERVICE:
            # Not staff: no hint that commands exist; the message is ordinary chat.
            await self._audit(call, name, "refused", "not staff")
            return None
        if cmd is None:
            await self._audit(call, name, "error", "unknown command")
            return "未知命令。\n" + self._help(role)
        if role not in cmd.roles:
            await self._audit(call, name, "refused", f"role {role}")
            return f"你的角色（{ROLE_NAMES[role]}）不能使用 /{cmd.name}。"
        try:
            reply = await cmd.handler(self, call)
        except (CommandError, CampaignError) as e:
            await self._audit(call, name, "error", str(e))
            return f"{e}\n用法: {cmd.usage}"
        except Exception:
            log.exception("command failed", extra={"command": name})
            await self._audit(call, name, "error", "internal error")
            return "命令执行失败，已记录，请稍后再试。"
        await self._audit(call, name, "ok", call.audit.get("detail", ""))
        return reply

    async def _audit(self, call: Call, name: str, result: str, detail: str) -> None:
        await self._audit_log.record(call.actor, call.role, name,
                                     call.args if call.shown is None else call.shown,
                                     call.now, result,
                                     detail, call.source,
                                     {k: v for k, v in call.audit.items() if k != "detail"})

    def _help(self, role: str) -> str:
        seen: list[Command] = []
        for cmd in REGISTRY.values():
            if role in cmd.roles and cmd not in seen:
                seen.append(cmd)
        return "可用命令:\n" + "\n".join(f"{c.usage}" for c in seen)

    async def member(self, ref: str, actor: Profile) -> Profile:
        """A member by member id (M…), mobile, or openid on the account the actor writes
        from."""
        accounts = [(i["channel"], i["app_id"]) for i in actor.get("identities", [])]
        found = await find_member(self._store, ref, accounts)
        if found is None:
            raise CommandError(f"找不到成员 {mask_phones(ref.strip()[:40])}"
                               "（用会员号 M…、手机号或 openid）。")
        return found

    async def member_card(self, target: Profile) -> str:
        """Her profile as staff may see it: masked, no dates of her pregnancy."""
        fields, member, more = target.get("fields") or {}, target.get("member") or {}, target
        follow = "已取关" if (target.get("follow") or {}).get("state") == "unsubscribed" \
            else "关注中"
        balance, earned = await self._store.ledger.balance(target["_id"])
        # Life-stage tags tell her pregnancy week: the stage is as far as staff see.
        tags = [t for t in target.get("tags") or [] if not is_stage_tag(t)]
        lines = [
            f"{mask_name(fields.get('nickname'))} · {member.get('id') or '非会员'} · "
            f"{ROLE_NAMES[self.role_of(target)]} · {follow}",
            f"手机 {mask_phones(str(fields['mobile'])) if fields.get('mobile') else '-'} · "
            f"城市 {fields.get('city') or '-'} · "
            f"阶段 {STAGE_NAMES.get(member.get('stage', ''), '-')} · "
            f"等级 {member.get('tier') or '-'} · 积分 {balance}（累计 {earned}）",
            f"标签: {', '.join(tags) or '无'}"]
        custom = self.fields.view(fields, masked=True)
        if custom:
            lines.append("字段: " + " · ".join(f"{k} {v}" for k, v in custom.items()))
        orders = more.get("orders") or {}
        if orders.get("count"):
            last = orders.get("last_at")
            lines.append(
                f"订单: {orders['count']} 笔 · 累计 ¥{float(orders.get('spent') or 0):.2f}"
                + (f" · 最近 {self.calendar.today(last).isoformat()}"
                   if isinstance(last, datetime) else "")
                + (f" · 常买 {orders['top_category']}" if orders.get("top_category") else ""))
        else:
            lines.append("订单: 无")
        lines.append(await self._source_line(more.get("source")))
        social = more.get("social") or {}
        if "score" in social:
            at = social.get("at")
            when = f"（{self.calendar.today(at).isoformat()} 计算）" \
                if isinstance(at, datetime) else ""
            parts = social.get("parts") or {}
            lines.append(f"社交价值 {float(social['score']):g}{when}: " + (
                self.social.explain(parts) if self.social else str(parts)))
        else:
            lines.append("社交价值: 尚未计算（每日自动更新）")
        return "\n".join(lines)

    async def _source_line(self, source: Any) -> str:
        if not isinstance(source, dict) or not source.get("kind"):
            return "来源: 未记录"
        parts = [SOURCE_NAMES.get(str(source["kind"]), str(source["kind"]))]
        if source.get("campaign"):
            parts.append(f"活动 {source['campaign']}")
        if source.get("by"):
            by = await self._store.profiles.get(str(source["by"]))
            if by is not None:
                parts.append(f"来自 {mask_name((by.get('fields') or {}).get('nickname'))}"
                             f"（{(by.get('member') or {}).get('id') or '非会员'}）")
        if isinstance(source.get("at"), datetime):
            parts.append(self.calendar.today(source["at"]).isoformat())
        return "来源: " + " · ".join(parts)

    def is_config_admin(self, profile: Profile) -> bool:
        return any(identity_key(i["channel"], i["app_id"], i["openid"]) in self._admins
                   for i in profile.get("identities", []))


def _split(args: str, parts: int, what: str) -> list[str]:
    pieces = [p.strip() for p in re.split(r"[|｜]", args)]
    if len(pieces) < parts or any(not p for p in pieces[:parts]):
        raise CommandError(f"缺少{what}。")
    return pieces


@command("help", ("帮助",), STAFF, "/help 可用命令")
async def _help_cmd(c: Commands, call: Call) -> str:
    return c._help(call.role)


@command("segment", ("人群", "seg"), STAFF, "/segment <条件>  例: /segment tag:孕中期 city:上海")
async def _segment(c: Commands, call: Call) -> str:
    if not call.args:
        raise CommandError("缺少人群条件。\n" + SEGMENT_HELP)
    store = c._store
    flt = c.campaigns.segment(call.args, call.now)
    count = await store.profiles.count_where(flt)
    lines = [f"人群「{call.args}」: {count} 人"]
    for i, p in enumerate(await store.profiles.sample_where(flt, 3), 1):
        fields, member = p.get("fields") or {}, p.get("member") or {}
        # Masked: a marketer sees who, roughly, but no phone, dates or pregnancy week.
        stage = STAGE_NAMES.get(member.get("stage", ""), "-")
        lines.append(f"{i}. {mask_name(fields.get('nickname'))} · {member.get('id', '非会员')}"
                     f" · {fields.get('city') or '-'} · {member.get('tier') or '-'} · {stage}")
    call.audit["detail"] = f"count {count}"
    return "\n".join(lines)


@command("broadcast", ("群发", "bc"), MARKETING,
         "/broadcast <条件> | <模板名或文字>  例: /broadcast tag:孕中期 | lecture_invite")
async def _broadcast(c: Commands, call: Call) -> str:
    query, body, *rest = _split(call.args, 2, "人群条件或内容（格式: 条件 | 内容）")
    preview = await c.campaigns.preview(call.actor, query, "|".join([body, *rest]), call.now)
    call.audit.update(detail=f"draft {preview.broadcast_id}", broadcast=preview.broadcast_id)
    return preview.text


@command("poll", ("投票",), MARKETING,
         "/poll <条件> | <问题> | <选项1> | <选项2> [...]  例: /poll all | 想要? | 讲座 | 试用")
async def _poll(c: Commands, call: Call) -> str:
    pieces = _split(call.args, 4, "条件、问题或至少两个选项")
    query, question, options = pieces[0], pieces[1], [o for o in pieces[2:] if o]
    if not 2 <= len(options) <= 9:
        raise CommandError("选项需要 2 到 9 个。")
    if len(question) > 200 or any(len(o) > 50 for o in options):
        raise CommandError("问题最多 200 字，每个选项最多 50 字。")
    preview = await c.campaigns.preview(call.actor, query, "", call.now,
                                        poll={"question": question, "options": options})
    call.audit.update(detail=f"draft {preview.broadcast_id}", broadcast=preview.broadcast_id)
    return preview.text


def _broadcast_id(call: Call) -> str:
    if not call.args:
        raise CommandError("缺少群发编号。")
    call.audit["broadcast"] = call.args.strip().upper()
    return str(call.audit["broadcast"])


@command("confirm", ("确认",), MARKETING, "/confirm <编号>")
async def _confirm(c: Commands, call: Call) -> str:
    return await c.campaigns.confirm(call.actor, call.role == "admin", _broadcast_id(call),
                                     call.now)


@command("cancel", ("取消",), MARKETING, "/cancel <编号>")
async def _cancel(c: Commands, call: Call) -> str:
    return await c.campaigns.cancel(call.actor, call.role == "admin", _broadcast_id(call),
                                    call.now)


@command("status", ("状态",), STAFF, "/status <编号>")
async def _status(c: Commands, call: Call) -> str:
    return await c.campaigns.status(_broadcast_id(call))


@command("tag", ("标签",), STAFF, "/tag add|remove <标签> <条件>  例: /tag add 活动A city:上海")
async def _tag(c: Commands, call: Call) -> str:
    verb, _, rest = call.args.partition(" ")
    tag, _, query = rest.strip().partition(" ")
    verb = {"加": "add", "添加": "add", "删": "remove", "删除": "remove"}.get(verb, verb)
    if verb not in ("add", "remove") or not tag or not query.strip():
        raise CommandError("格式: /tag add|remove <标签> <条件>。")
    if not _TAG.match(tag):
        raise CommandError("标签最多 20 个字，不能含空格或 $ . , : | / 等符号。")
    if is_system_tag(tag):
        raise CommandError(f"「{tag}」是系统维护的标签（会员、测试、生命周期），不能手动修改。")
    flt = c.campaigns.segment(query.strip(), call.now)
    total = await c._store.profiles.count_where(flt)
    changed = await c._store.profiles.tag_where(flt, [tag] if verb == "add" else [],
                                                [tag] if verb == "remove" else [])
    call.audit["detail"] = f"{verb} {tag}: {changed}/{total}"
    word = "添加" if verb == "add" else "移除"
    had = "有" if verb == "add" else "没有"
    return f"已为 {changed} 人{word}标签「{tag}」（人群共 {total} 人，其余本来就{had}）。"


@command("points", ("积分",), frozenset({"manager", "admin"}),
         "/points grant <会员号或openid> <分数> <原因>")
async def _points(c: Commands, call: Call) -> str:
    parts = call.args.split(maxsplit=3)
    if len(parts) < 4 or parts[0] not in ("grant", "发放", "赠送"):
        raise CommandError("格式: /points grant <会员号或openid> <分数> <原因>。")
    _, ref, amount, reason = parts
    if not amount.isascii() or not amount.isdigit() or not 1 <= int(amount) <= MAX_GRANT:
        raise CommandError(f"分数须为 1 到 {MAX_GRANT} 的整数。")
    target = await c.member(ref, call.actor)
    if target["_id"] == call.actor["_id"]:
        raise CommandError("不能给自己发放积分。")
    n = int(amount)
    # A day's grants per member of staff are capped (brand calendar), counted atomically
    # on her own profile before the points exist, and given back if nothing was granted.
    budget = f"staff.grants.{c.calendar.today(call.now).isoformat()}"
    if not await c._store.profiles.reserve(call.actor["_id"], budget, n, c.grant_daily_cap):
        raise CommandError(f"今天你已发放的积分加上 {n} 超过每日上限 {c.grant_daily_cap}。")
    result = await c._store.ledger.award(target["_id"], f"grant:{call.source}", n,
                                         f"grant: {reason[:100]}", call.source, now=call.now)
    if not result.applied:
        await c._store.profiles.release(call.actor["_id"], budget, n)
    await c._points.refresh_tier(target["_id"], result.earned)
    member_id = (target.get("member") or {}).get("id", target["_id"][:8])
    call.audit.update(detail=f"{member_id} +{n}", target=target["_id"],
                      points=n if result.applied else 0)
    if not result.applied:
        return f"这条命令已执行过，未重复发放。{member_id} 当前余额 {result.balance}。"
    return f"已为 {member_id} 发放 {n} 积分（{reason[:100]}），当前余额 {result.balance}。"


@command("role", ("角色",), frozenset({"admin"}),
         "/role <会员号或openid> <consumer|kol|employee|manager|marketer|admin>")
async def _role(c: Commands, call: Call) -> str:
    parts = call.args.split()
    if len(parts) != 2:
        raise CommandError("格式: /role <会员号或openid> <角色>。")
    ref, wanted = parts
    role = ROLE_ALIASES.get(wanted, wanted.casefold())
    if role not in ROLES:
        raise CommandError(f"未知角色「{wanted[:20]}」，可选: {', '.join(ROLES)}。")
    target = await c.member(ref, call.actor)
    if target["_id"] == call.actor["_id"]:
        raise CommandError("不能修改自己的角色。")
    if c.is_config_admin(target):
        raise CommandError("此人是 config.yml 中配置的管理员，角色以配置为准。")
    before = str(target.get("role") or "consumer")
    await c._store.profiles.update(target["_id"], {"role": role, "role_changed": {
        "by": call.actor["_id"], "at": call.now, "from": before}})
    call.audit.update(detail=f"{before} -> {role}", target=target["_id"])
    name = mask_name((target.get("fields") or {}).get("nickname"))
    return f"{name} 的角色: {ROLE_NAMES.get(before, before)} → {ROLE_NAMES[role]}。"


@command("export", ("导出",), frozenset({"admin"}), "/export <会员号或openid>")
async def _export(c: Commands, call: Call) -> str:
    ref = call.args.strip()
    if not ref or c.rights is None:
        raise CommandError("格式: /export <会员号或openid>。")
    target = await c.member(ref, call.actor)
    link = await c.rights.export_link(target, f"staff:{call.actor['_id']}")
    call.audit.update(detail="export link", target=target["_id"])
    name = mask_name((target.get("fields") or {}).get("nickname"))
    return f"{name} 的完整数据副本（仅能打开一次，请妥善保管）：{link}"


@command("erase", ("注销会员",), frozenset({"admin"}),
         "/erase <会员号或openid> [now] <原因>  例: /erase M0000000001 电话申请删除")
async def _erase(c: Commands, call: Call) -> str:
    ref, _, rest = call.args.strip().partition(" ")
    first, _, more = rest.strip().partition(" ")
    now = first.casefold() in ("now", "立即")
    reason = (more if now else rest).strip()
    if not ref or not reason or c.rights is None:
        raise CommandError("格式: /erase <会员号或openid> [now] <原因>（原因必填）。")
    target = await c.member(ref, call.actor)
    if target["_id"] == call.actor["_id"]:
        raise CommandError("不能用命令删除自己的数据，请在聊天中发送「注销」。")
    name = mask_name((target.get("fields") or {}).get("nickname"))
    call.audit.update(detail=f"erase{' now' if now else ''}: {reason[:100]}")
    due = await c.rights.request_erasure(target, f"staff:{call.actor['_id']}", reason,
                                         call.now, immediately=now)
    if now:
        return f"已删除 {name} 的数据（账务与审计记录已匿名保留）。"
    return f"已为 {name} 提交注销，将于 {c.calendar.local(due):%Y-%m-%d %H:%M} 删除。"


SERVICE = frozenset({"employee", "manager", "admin"})


def _handoff(c: Commands) -> PersonHandoff:
    if c.handoff is None:
        raise CommandError("人工服务未开启。")
    return c.handoff


async def _handoff_call(fn: Awaitable[str]) -> str:
    try:
        return await fn
    except ValueError as e:  # the handoff refuses with a reason in words (HandoffError)
        raise CommandError(str(e)) from e


@command("duty", ("值班",), SERVICE, "/duty on|off  上班接转人工 / 下班")
async def _duty(c: Commands, call: Call) -> str:
    word = call.args.strip().casefold()
    on = {"on": True, "上班": True, "开": True, "off": False, "下班": False, "关": False}.get(word)
    if on is None:
        raise CommandError("格式: /duty on 或 /duty off。")
    return await _handoff_call(_handoff(c).duty(call.actor, on, call.now))


@command("reply", ("回复",), SERVICE, "/reply <工单号> <内容>")
async def _reply(c: Commands, call: Call) -> str:
    ticket, _, text = call.args.strip().partition(" ")
    if not ticket or not text.strip():
        raise CommandError("格式: /reply <工单号> <内容>。")
    call.audit.update(detail=f"reply {ticket[:12]}")
    return await _handoff_call(_handoff(c).reply(call.actor, ticket, text, call.now,
                                                 call.source))


@command("done", ("结束",), SERVICE, "/done [工单号]  结束人工服务，小助手接回")
async def _done(c: Commands, call: Call) -> str:
    ticket = call.args.strip() or None
    call.audit.update(detail=f"done {ticket or ''}".strip())
    return await _handoff_call(_handoff(c).done(call.actor, ticket, call.now))


@command("stats", ("统计",), STAFF,
         "/stats 关注、会员、7 天活跃、积分、匹配、最近群发、来源、社交价值前 5")
async def _stats(c: Commands, call: Call) -> str:
    p = c._store.profiles
    followers = await p.count_where({"follow.state": {"$ne": "unsubscribed"}})
    members = await p.count_where({"member.id": {"$exists": True}})
    active = await p.count_where({"last_seen": {"$gte": call.now - timedelta(days=7)}})
    issued = await p.sum_where({"points.earned": {"$gt": 0}}, "points.earned")
    matches = await c._store.matches.count("accepted")
    lines = [f"关注 {followers} · 会员 {members} · 7 天活跃 {active}",
             f"累计发放积分 {issued} · 姐妹匹配 {matches} 对", "最近群发:"]
    recent = await c.campaigns.recent(3)
    for doc in recent:
        tally = doc.get("tally") or await c._store.campaigns.tally(doc["_id"])
        lines.append(f"{doc['_id']} {doc.get('kind')} {doc['status']} 已发送 "
                     f"{tally.get('sent', 0)}/{doc.get('total', doc.get('estimate', 0))}")
    if not recent:
        lines.append("（暂无）")
    if c.handoff is not None:
        lines.append(await c.handoff.stats(call.now))
    for more in c.more_stats:
        lines.append(await more())
    if c.referrals is not None:
        lines += _sources(await c.referrals.source_counts())
    if c.social is not None:
        lines.append(f"社交价值前 {TOP_CONTRIBUTORS}:")
        top = await c.social.top(TOP_CONTRIBUTORS)
        lines += [f"{i}. {t['nickname']} · {t['member_id'] or '非会员'} · {t['score']:g}"
                  for i, t in enumerate(top, 1)] or ["（暂无）"]
    return "\n".join(lines)


def _sources(counts: dict[str, tuple[int, int]]) -> list[str]:
    """来源: 自然关注 12（会员 3） · …, then the campaign codes that brought most."""
    order = {k: i for i, k in enumerate(SOURCE_NAMES)}  # the same order every time
    kinds = [f"{SOURCE_NAMES.get(k, k)} {n}（会员 {m}）" for k, (n, m) in
             sorted(counts.items(), key=lambda kv: (order.get(kv[0], len(order) - 1), kv[0]))
             if not k.startswith("campaign:")]
    campaigns = [f"{k.removeprefix('campaign:')} {n}（会员 {m}）"
                 for k, (n, m) in counts.items() if k.startswith("campaign:")][:5]
    return [f"来源: {' · '.join(kinds) or '（暂无）'}"] + (
        [f"活动码: {' · '.join(campaigns)}"] if campaigns else [])


@command("member", ("会员资料", "查会员"), STAFF,
         "/member <会员号|openid|手机>  会员资料（已打码）")
async def _member(c: Commands, call: Call) -> str:
    if not call.args.strip():
        raise CommandError("格式: /member <会员号|openid|手机>。")
    target = await c.member(call.args, call.actor)
    call.audit.update(detail="view", target=target["_id"])
    return await c.member_card(target)


def _field_redact(c: Commands, args: str) -> str:
    """A sensitive field's value never reaches the audit: `set M… allergy ***`."""
    parts = args.split(maxsplit=3)
    if len(parts) == 4 and _verb(parts[0]) == "set" and parts[2] in c.fields.sensitive:
        return " ".join([*parts[:3], "***"])
    return args


def _verb(word: str) -> str:
    return {"列表": "list", "设置": "set", "改": "set"}.get(word, word.casefold())


@command("field", ("字段",), FIELD_EDITORS,
         "/field list | /field set <会员号|openid|手机> <字段> <值>  例: /field set M0000000001 "
         "baby_gender 女孩", redact=_field_redact)
async def _field(c: Commands, call: Call) -> str:
    book = c.fields
    verb, _, rest = call.args.strip().partition(" ")
    verb = _verb(verb) if verb else "list"
    if verb == "list":
        if not len(book):
            return "还没有自定义字段（config.yml members.fields）。"
        return "自定义字段:\n" + "\n".join(
            f"{d.name} {d.label()}（{d.hint()}{'，敏感：打码显示' if d.sensitive else ''}）"
            for d in book)
    parts = rest.split(maxsplit=2)
    if verb != "set" or len(parts) < 3:
        raise CommandError("格式: /field set <会员号|openid|手机> <字段> <值>，或 /field list。")
    ref, name, raw = parts
    if name in BUILTIN_FIELDS:
        raise CommandError(f"「{name}」是内置字段，由会员在聊天中修改（例如「修改手机号」）。"
                           f"可用 /field 设置的: {', '.join(book.names) or '无'}。")
    if name not in book:
        known = ", ".join(book.names)
        message = book.unknown(name)
        raise CommandError(message if message.endswith(known) else f"{message}（已有: {known}）")
    spec = book.get(name)
    target = await c.member(ref, call.actor)
    if spec.sensitive and not consented(target, "sensitive"):
        raise CommandError(f"她没有同意保存敏感个人信息，不能记录「{spec.label()}」。")
    try:
        value = spec.parse(raw, c.calendar.today(call.now))
    except FieldError as e:
        # A sensitive value, or a piece of it, is never repeated: only what would fit.
        raise CommandError(f"{spec.label()}的值不对；{spec.hint()}" if spec.sensitive
                           else e.message) from None
    before = (target.get("fields") or {}).get(name)
    await c._store.profiles.set_fields(target["_id"], {name: value})
    member_id = (target.get("member") or {}).get("id", target["_id"][:8])
    call.audit.update(detail=f"{member_id} {name}", target=target["_id"])
    nickname = mask_name((target.get("fields") or {}).get("nickname"))
    return (f"已为 {nickname}（{member_id}）设置「{spec.label()}」: "
            f"{spec.show(value, masked=True) or '（空）'}"
            f"（原来: {spec.show(before, masked=True) or '（空）'}）。")
