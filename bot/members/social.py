"""Social value (社交价值): what a member brings the community beyond what she buys, as one
score whose parts staff can read (`/member`), recomputed daily and when something changes it.

The parts (weights in config.yml `social.weights`), each counted from what the store holds:

- referral_member: women she referred (`referral.by`) who became members (`member.id`),
  except those refused referral points (a mobile already on another profile);
- follower: people whose first contact was by her code (`source.by`), still following;
- share: people already following who scanned her code (`referral.event` "scan", brought by
  someone else or nobody): the `share` points rule pays for a new follower, which `follower`
  counts, so this is the one reach of her code not counted there;
- helpful: "helpful" answers about her from the sisters she mentored (she was invited, `to`);
- poll: polls she answered;
- recency: in full when she was here today, falling linearly to 0 at `recency_days` (its
  count is the days since, counted up to `recency_days` only: a score that can no longer
  change is not rewritten every night).

Helpful answers and poll answers are marked on her own profile as they are recorded
(`social.helpful.<match id>`, `social.polls.<poll id>`, the records' own ids, so a repeat
marks nothing new): the daily job then reads one scan of the profiles, not one query per
member. The score is on `social.score`, its parts on `social.parts`, `social.at` the time it
was last computed to a different value. An event recomputes the member it concerns in a job
(`social_refresh`), after what it changed is written: never inside the member's own reply.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from typing import Any, Final

from bot.brand_calendar import BrandCalendar
from bot.jobs import JobQueue
from bot.privacy import mask_name
from bot.settings import SocialSettings
from store.protocols import Store
from store.records import Profile

log = logging.getLogger(__name__)

SOCIAL_JOB: Final = "social_refresh"
PARTS: Final = ("referral_member", "follower", "share", "helpful", "poll", "recency")
PART_NAMES: Final = {"referral_member": "推荐入会", "follower": "带来关注", "share": "扫码触达",
                     "helpful": "姐妹好评", "poll": "参与投票", "recency": "近期活跃"}
PART_UNITS: Final = {"referral_member": "人", "follower": "人", "share": "人",
                     "helpful": "次", "poll": "次"}
# Record ids become path segments (social.polls.<id>): only plain ones are accepted.
_RECORD_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# What the daily scan reads of each profile: everything a count or the comparison needs.
SCAN_PATHS: Final = ["referral", "member.id", "source.by", "follow.state", "last_seen",
                "social.score", "social.parts", "social.helpful", "social.polls"]
_TOP: Final = ["social.score", "member.id", "role", "identity_keys", "follow.state",
               "erasure"]

Notify = Callable[[str, str, str], Awaitable[bool]]  # profile id, text, idempotency key


@dataclass(frozen=True)
class Counts:
    """What one member did that has social value; `days_away` since she was last here
    (brand calendar days), None if never seen."""

    referral_member: int = 0
    follower: int = 0
    share: int = 0
    helpful: int = 0
    poll: int = 0
    days_away: int | None = None

    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if f.name != "days_away")


@dataclass(frozen=True)
class Score:
    total: float
    parts: dict[str, dict[str, Any]]  # part -> {"count": n, "points": float}


def social_score(counts: Counts, settings: SocialSettings) -> Score:
    """The score of `counts` under the configured weights: a pure function, each part's
    points rounded to cents and the total their sum, so the parts add up as shown."""
    w = settings.weights
    parts: dict[str, dict[str, Any]] = {}
    for name in PARTS[:-1]:
        n = int(getattr(counts, name))
        parts[name] = {"count": n, "points": round(n * float(getattr(w, name)), 2)}
    days = None if counts.days_away is None else min(max(0, counts.days_away),
                                                     settings.recency_days)
    fresh = 0.0 if days is None else 1.0 - days / settings.recency_days
    parts["recency"] = {"count": days, "points": round(w.recency * fresh, 2)}
    return Score(round(sum(p["points"] for p in parts.values()), 2), parts)


def explain(parts: Mapping[str, Any], recency_days: int, skip_zero: bool = False) -> str:
    """The parts as staff read them: 推荐入会 3 人 +30 · … · 近期活跃 1 天前 +9.67."""
    out = []
    for name in PARTS:
        part = parts.get(name) or {}
        count, points = part.get("count"), float(part.get("points") or 0)
        if skip_zero and not points:
            continue
        if name == "recency":
            when = "从未" if count is None else "今天" if count == 0 else \
                f"{count} 天以上" if count >= recency_days else f"{count} 天前"
            out.append(f"{PART_NAMES[name]} {when} +{points:g}")
        else:
            out.append(f"{PART_NAMES[name]} {count or 0} {PART_UNITS[name]} +{points:g}")
    return " · ".join(out)


@dataclass
class _Seen:
    """One profile as the daily scan keeps it until every count is known."""

    member: bool
    last_seen: datetime | None
    helpful: int
    poll: int
    stored: tuple[Any, Any] | None


def _credits(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What one profile brings to whom: (part, profile id) for a woman she referred who
    became a member (not one refused as already known), a follower her code brought who
    still follows, and a share (an existing follower scanning her code)."""
    referral = d.get("referral") or {}
    source_by = (d.get("source") or {}).get("by")
    by = referral.get("by")
    out: list[tuple[str, str]] = []
    if by and "id" in (d.get("member") or {}) and "refused" not in referral:
        out.append(("referral_member", by))
    if source_by and (d.get("follow") or {}).get("state") != "unsubscribed":
        out.append(("follower", source_by))
    if by and referral.get("event") == "scan" and source_by != by:
        out.append(("share", by))
    return out


class Social:
    """Gathers the counts, keeps `social.*` on the profile, and answers the top lists."""

    def __init__(self, store: Store, settings: SocialSettings, calendar: BrandCalendar,
                 queue: JobQueue | None = None) -> None:
        self._store = store
        self._cfg = settings
        self._calendar = calendar
        self._queue = queue  # None: events recompute at once (tools, benchmarks)

    def explain(self, parts: Mapping[str, Any]) -> str:
        return explain(parts, self._cfg.recency_days)

    def _days_away(self, last_seen: Any, today: date) -> int | None:
        if not isinstance(last_seen, datetime):
            return None
        seen = last_seen if last_seen.tzinfo else last_seen.replace(tzinfo=UTC)
        return max(0, (today - self._calendar.today(seen)).days)

    # -- counting -----------------------------------------------------------------------
    async def counts(self, profile: Profile, now: datetime) -> Counts:
        """One member's counts: the daily scan's rule (`_credits`) over the profiles that
        name her."""
        pid = profile["_id"]
        tally: Counter[str] = Counter()
        named: dict[str, Mapping[str, Any]] = {}
        for path in ("referral.by", "source.by"):  # two indexed reads, not one $or scan
            async for d in self._store.profiles.fields_where({path: pid}, SCAN_PATHS):
                named[d["_id"]] = d
        for found in named.values():
            tally.update(part for part, who in _credits(found) if who == pid)
        mine = profile.get("social") or {}
        return Counts(
            referral_member=tally["referral_member"], follower=tally["follower"],
            share=tally["share"], helpful=len(mine.get("helpful") or {}),
            poll=len(mine.get("polls") or {}),
            days_away=self._days_away(profile.get("last_seen"), self._calendar.today(now)))

    @staticmethod
    def _stored(profile: Mapping[str, Any]) -> tuple[Any, Any] | None:
        mine = profile.get("social") or {}
        return (mine["score"], mine.get("parts")) if "score" in mine else None

    async def _write(self, profile_id: str, score: Score, stored: tuple[Any, Any] | None,
                     now: datetime) -> bool:
        if stored == (score.total, score.parts):
            return False  # unchanged: nothing written, so running twice changes nothing
        await self._store.profiles.update(profile_id, {
            "social.score": score.total, "social.parts": score.parts, "social.at": now})
        return True

    async def refresh(self, profile_id: str, now: datetime | None = None) -> Score | None:
        """Recompute one member's score now; None if she is not scored (no member, nothing
        brought, no score before)."""
        now = now or datetime.now(UTC)
        profile = await self._store.profiles.get(profile_id)
        if profile is None:
            return None
        counts = await self.counts(profile, now)
        stored = self._stored(profile)
        if not ("id" in (profile.get("member") or {}) or counts.any() or stored):
            return None
        score = social_score(counts, self._cfg)
        await self._write(profile_id, score, stored, now)
        return score

    async def refresh_all(self, now: datetime | None = None) -> dict[str, int]:
        """The daily job: every member's score from one scan of the profiles (counts are
        grouped here, not asked per member); only changed scores are written."""
        now = now or datetime.now(UTC)
        today = self._calendar.today(now)
        tally: Counter[tuple[str, str]] = Counter()
        seen: dict[str, _Seen] = {}
        async for d in self._store.profiles.fields_where({}, SCAN_PATHS):
            tally.update(_credits(d))
            is_member = "id" in (d.get("member") or {})
            mine = d.get("social") or {}
            seen[d["_id"]] = _Seen(is_member, d.get("last_seen"),
                                   len(mine.get("helpful") or {}), len(mine.get("polls") or {}),
                                   self._stored(d))
        scored = changed = 0
        for pid, s in seen.items():
            counts = Counts(tally["referral_member", pid], tally["follower", pid],
                            tally["share", pid], s.helpful, s.poll,
                            self._days_away(s.last_seen, today))
            if not (s.member or counts.any() or s.stored):
                continue
            scored += 1
            changed += await self._write(pid, social_score(counts, self._cfg), s.stored, now)
        log.info("social scores recomputed", extra={"profiles": len(seen), "scored": scored,
                                                    "changed": changed})
        return {"profiles": len(seen), "scored": scored, "changed": changed}

    # -- the events that change a score (one call from the module that records each) ------
    async def brought(self, profile_ids: Iterable[str | None], key: str) -> None:
        """Someone came by their code, or a woman they referred joined (`key`: the event,
        so that a retry of it recomputes once)."""
        for pid in dict.fromkeys(p for p in profile_ids if p):
            await self._recompute(pid, key)

    async def poll_answered(self, profile_id: str, poll_id: str, now: datetime) -> None:
        """Her first answer to a poll (the store accepted it once)."""
        if _RECORD_ID.match(poll_id):
            await self._safely(self._mark(profile_id, f"social.polls.{poll_id}", now,
                                          f"poll:{poll_id}"))

    async def feedback_given(self, match_id: str, giver: str, helpful: bool, now: datetime
                             ) -> None:
        """A sister's first answer to "did it help?": a yes from the one who asked for a
        sister counts for the sister she was introduced to (her mentor)."""
        if helpful and _RECORD_ID.match(match_id):
            await self._safely(self._helpful(match_id, giver, now))

    async def _helpful(self, match_id: str, giver: str, now: datetime) -> None:
        match = await self._store.matches.get(match_id)
        if match is not None and match.get("from") == giver and match.get("to"):
            await self._mark(str(match["to"]), f"social.helpful.{match_id}", now,
                             f"helpful:{match_id}")

    async def _mark(self, profile_id: str, path: str, now: datetime, key: str) -> None:
        await self._store.profiles.update(profile_id, {path: now})  # same key: same mark
        await self._recompute(profile_id, key)

    async def _recompute(self, profile_id: str, key: str) -> None:
        if self._queue is None:
            await self._safely(self.refresh(profile_id))
            return
        # A digest, not the key: job ids are logged, and an event's key names an openid.
        digest = hashlib.sha256(f"{profile_id}:{key}".encode()).hexdigest()[:24]
        await self._safely(self._queue.enqueue(SOCIAL_JOB, [profile_id],
                                               f"{SOCIAL_JOB}:{digest}"))

    @staticmethod
    async def _safely(work: Awaitable[Any]) -> None:
        # The member's own action (a follow, an answer) must not fail for a score: the
        # daily job recomputes it from what was recorded.
        try:
            await work
        except Exception as e:
            log.warning("social score not updated", extra={"error": type(e).__name__})

    # -- reading ------------------------------------------------------------------------
    async def top(self, n: int, *, members_only: bool = False,
                  exclude_roles: Collection[str] = (), exclude_keys: Collection[str] = ()
                  ) -> list[dict[str, Any]]:
        """The `n` highest scores (ties by member id), as staff may see them: masked
        nickname, member id, score and parts. `exclude_*`: roles and identity keys left
        out (existing KOLs and staff for the KOL suggestion); unfollowed members and those
        asking to be erased are never suggested when `members_only`."""
        rows: list[tuple[float, str, str]] = []
        keys = frozenset(exclude_keys)
        # A light scan for the ranking; the few chosen are then read whole.
        async for d in self._store.profiles.fields_where({"social.score": {"$gt": 0}}, _TOP):
            member = d.get("member") or {}
            if members_only and ("id" not in member or d.get("erasure")
                                 or (d.get("follow") or {}).get("state") == "unsubscribed"):
                continue
            if d.get("role") in exclude_roles or keys.intersection(d.get("identity_keys") or []):
                continue
            score = float((d.get("social") or {})["score"])
            rows.append((score, str(member.get("id") or d["_id"]), d["_id"]))
        best = heapq.nsmallest(n, rows, key=lambda r: (-r[0], r[1]))
        found = {p["_id"]: p for p in await self._store.profiles.get_many([b[2] for b in best])}
        out = []
        for score, _, pid in best:
            p = found.get(pid)
            if p is not None:
                out.append({"profile_id": pid, "member_id": (p.get("member") or {}).get("id"),
                            "nickname": mask_name((p.get("fields") or {}).get("nickname")),
                            "score": score, "parts": (p.get("social") or {}).get(
                                "parts") or {}})
        return out


class KolSuggestions:
    """Once a week (`social.kol_weekday`, brand calendar) every admin is told which members
    to promote to KOL: the highest social scores among members who are not KOLs or staff."""

    def __init__(self, store: Store, social: Social, settings: SocialSettings,
                 calendar: BrandCalendar, notify: Notify, admins: Collection[str],
                 not_candidates: Collection[str]) -> None:
        self._store = store
        self._social = social
        self._cfg = settings
        self._calendar = calendar
        self._notify = notify
        self._admins = frozenset(admins)  # identity keys from config.yml
        self._roles = frozenset(not_candidates)

    async def admins(self) -> list[str]:
        """Profile ids of the admins: by role, and those named in config.yml."""
        found: dict[str, None] = {}
        async for d in self._store.profiles.fields_where({"role": "admin"}, ["_id"]):
            found[d["_id"]] = None
        if self._admins:
            query = {"identity_keys": {"$in": sorted(self._admins)}}
            async for d in self._store.profiles.fields_where(query, ["_id"]):
                found[d["_id"]] = None
        return list(found)

    async def weekly(self, now: datetime | None = None) -> int:
        """Runs every day; acts on the configured weekday only. How many admins were told."""
        now = now or datetime.now(UTC)
        today = self._calendar.today(now)
        if today.weekday() != self._cfg.kol_weekday:
            return 0
        picks = await self._social.top(self._cfg.kol_suggestions, members_only=True,
                                       exclude_roles=self._roles, exclude_keys=self._admins)
        if not picks:
            return 0
        lines = [f"本周建议升级为 KOL 的会员（社交价值前 {len(picks)} 名，不含现有 KOL 和员工）："]
        for i, p in enumerate(picks, 1):
            lines.append(f"{i}. {p['nickname']} · {p['member_id']} · {p['score']:g}"
                         f"（{explain(p['parts'], self._cfg.recency_days, True) or '-'}）")
        lines.append("升级: /role <会员号> kol")
        year, week, _ = today.isocalendar()
        told = 0
        for admin in await self.admins():
            told += await self._notify(admin, "\n".join(lines), f"kol:{year}-W{week:02d}:{admin}")
        log.info("KOL suggestions sent", extra={"admins": told, "suggested": len(picks)})
        return told
