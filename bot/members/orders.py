"""Orders from the brand's shop: reading one (`order_from_json`), recording it once per
order id with its refunds (`OrderBook.record`), the member's order aggregates and the
points an order earns (the `order` rule, per whole yuan) and gives back on refund.

Money is Decimal yuan at the edge and integer fen inside; no float arithmetic anywhere.
An order names its member by member id, mobile, openid or unionid; a member not found is
an `UnknownMember` error and nothing is kept (orders for people the CRM does not know yet
come in by `scrm import orders` once the members are imported).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal, get_args

from bot.flow_engine.validators import Valid, cn_mobile
from bot.members.points import Points
from bot.settings import BotSettings
from store.protocols import Store
from store.records import Profile

log = logging.getLogger(__name__)

ORDER_RULE: Final = "order"  # the points.rules entry orders earn by (per: yuan)
REFUND_REASON: Final = "order_refund"  # the ledger reason of a reversal
MAX_AMOUNT: Final = Decimal("10000000")  # yuan; also keeps every amount exact as a float
MAX_ITEMS: Final = 200
MAX_REFUNDS: Final = 100
LEASE: Final = timedelta(seconds=60)  # longest one settling of an order may take
_ID: Final = re.compile(r"^[A-Za-z0-9_:\-]{1,64}$", re.ASCII)  # no ".": refund ids are keys
_ORDER_ID: Final = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$", re.ASCII)
_CHANNEL: Final = re.compile(r"^[a-z0-9_\-]{1,20}$", re.ASCII)
_MEMBER_ID: Final = re.compile(r"^M[0-9A-F]{10}$")
_FIELDS: Final = frozenset({"order_id", "member", "at", "amount", "items", "channel", "status",
                            "refunds"})
_ITEM_FIELDS: Final = frozenset({"sku", "name", "category", "qty", "amount"})
_REFUND_FIELDS: Final = frozenset({"refund_id", "amount", "at"})

Status = Literal["paid", "refunded", "partially_refunded"]
RefKind = Literal["member_id", "mobile", "openid", "unionid"]
Outcome = Literal["created", "updated", "unchanged", "conflict"]


class OrderError(ValueError):
    """An order that cannot be read; `field` is its path ("items[1].amount"), `message`
    says what is wrong with it (English: the shop's developers and the CLI read it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class UnknownMember(OrderError):
    """The order's member reference finds nobody."""


@dataclass(frozen=True)
class MemberRef:
    kind: RefKind
    value: str

    def __str__(self) -> str:  # for errors: never the whole mobile
        shown = self.value[:3] + "****" + self.value[-4:] if self.kind == "mobile" else self.value
        return f"{self.kind} {shown[:64]!r}"


@dataclass(frozen=True)
class Item:
    name: str
    category: str
    qty: int
    amount: Decimal  # yuan, the line's total
    sku: str | None = None


@dataclass(frozen=True)
class Refund:
    refund_id: str
    amount: Decimal  # yuan
    at: datetime  # UTC, milliseconds (what BSON keeps)


@dataclass(frozen=True)
class Order:
    order_id: str
    member: MemberRef
    at: datetime  # UTC, milliseconds
    amount: Decimal  # yuan paid
    items: tuple[Item, ...]
    channel: str
    refunds: tuple[Refund, ...] = ()

    @property
    def refunded(self) -> Decimal:
        return sum((r.amount for r in self.refunds), Decimal(0))

    @property
    def status(self) -> Status:
        return status_of(fen(self.amount), fen(self.refunded))


@dataclass(frozen=True)
class RecordResult:
    outcome: Outcome
    order_id: str
    profile_id: str
    points: int = 0  # credited (> 0) or taken back (< 0) by this call
    shortfall: int = 0  # points a refund should have taken back but her balance lacked
    reason: str | None = None  # why a conflict was refused


def fen(yuan: Decimal) -> int:
    """Yuan (at most 2 places, as order_from_json checks) as integer fen."""
    return int(yuan * 100)


def yuan(fen_: int) -> float:
    """Fen as the float yuan the profile shows: the nearest float to the exact amount."""
    return float(Decimal(fen_) / 100)


def status_of(paid_fen: int, refunded_fen: int) -> Status:
    if refunded_fen == 0:
        return "paid"
    return "refunded" if refunded_fen >= paid_fen else "partially_refunded"


# --- reading an order ---------------------------------------------------------------------


def order_from_json(doc: Mapping[str, Any]) -> Order:
    """A checked Order from the shop's JSON (or an import row shaped the same way).

    `status` may be left out; when given it must agree with the refunds. Raises OrderError
    naming the first field that is wrong.
    """
    if not isinstance(doc, Mapping):
        raise OrderError("", "an order is a JSON object")
    extra = sorted(set(doc) - _FIELDS)
    if extra:
        raise OrderError(str(extra[0]), f"unknown field (known: {', '.join(sorted(_FIELDS))})")
    order_id = _text(doc, "order_id", "order_id", 64, _ORDER_ID, numbers=True)
    member = _member_ref(doc.get("member"))
    at = _time(doc.get("at"), "at")
    amount = _money(doc.get("amount"), "amount")
    channel = _text(doc, "channel", "channel", 20, _CHANNEL, lower=True)
    items = _items(doc.get("items"))
    refunds = _refunds(doc.get("refunds", []), amount)
    paid, refunded = fen(amount), sum(fen(r.amount) for r in refunds)
    given = doc.get("status")
    if given is not None:
        if given not in get_args(Status):
            raise OrderError("status", f"must be one of {', '.join(get_args(Status))}")
        if given != status_of(paid, refunded):
            raise OrderError("status", f"{given!r} does not fit the refunds: "
                             f"{_fmt(refunded)} of {_fmt(paid)} yuan refunded is "
                             f"{status_of(paid, refunded)!r}")
    return Order(order_id=order_id, member=member, at=at, amount=amount, items=items,
                 channel=channel, refunds=refunds)


def _fmt(fen_: int) -> str:
    return f"{Decimal(fen_) / 100:.2f}"


def _text(doc: Mapping[str, Any], key: str, where: str, limit: int,
          pattern: re.Pattern[str] | None = None, *, numbers: bool = False,
          lower: bool = False, required: bool = True) -> str:
    value = doc.get(key)
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise OrderError(where, "required (a non-empty string)")
    value = value.strip().lower() if lower else value.strip()
    if len(value) > limit:
        raise OrderError(where, f"at most {limit} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise OrderError(where, f"only letters, digits and {_allowed(pattern)}")
    return value


def _allowed(pattern: re.Pattern[str]) -> str:
    return "_ : -" + (" ." if "." in pattern.pattern else "")


def _member_ref(raw: Any) -> MemberRef:
    """{"member_id"|"mobile"|"openid"|"unionid": "..."}, or one string: M… is a member id,
    a mainland mobile a mobile, anything else an openid."""
    if isinstance(raw, Mapping):
        given = [k for k in get_args(RefKind) if raw.get(k) not in (None, "")]
        if len(given) != 1 or set(raw) - {given[0]}:
            raise OrderError("member", "give exactly one of member_id, mobile, openid, unionid")
        kind: RefKind = given[0]
        value = _text(raw, kind, f"member.{kind}", 128)
    elif isinstance(raw, str) and raw.strip():
        value = raw.strip()
        kind = ("member_id" if _MEMBER_ID.fullmatch(value.upper())
                else "mobile" if isinstance(cn_mobile(value, date.min), Valid) else "openid")
    else:
        raise OrderError("member", "required: a member id (M…), mobile, openid, or "
                         '{"unionid": "..."}')
    if kind == "member_id":
        value = value.upper()
        if not _MEMBER_ID.fullmatch(value):
            raise OrderError("member.member_id", "a member id is M and 10 hex digits")
    elif kind == "mobile":
        mobile = cn_mobile(value, date.min)
        if not isinstance(mobile, Valid):
            raise OrderError("member.mobile", "not a mainland China mobile number")
        value = str(mobile.value)
    elif len(value) > 128:
        raise OrderError(f"member.{kind}", "at most 128 characters")
    return MemberRef(kind, value)


def _time(raw: Any, where: str) -> datetime:
    if isinstance(raw, datetime):
        when = raw
    elif isinstance(raw, str) and raw.strip():
        try:
            when = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise OrderError(where, "an ISO 8601 time with its zone, e.g. "
                             "2026-11-25T10:30:00+08:00") from None
    else:
        raise OrderError(where, "required: an ISO 8601 time with its zone")
    if when.tzinfo is None or when.utcoffset() is None:
        raise OrderError(where, "needs a time zone (e.g. +08:00 or Z)")
    when = when.astimezone(UTC)
    # BSON keeps milliseconds: a repeat must compare equal to what was stored.
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def _money(raw: Any, where: str, positive: bool = False) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
        raise OrderError(where, "required: an amount in yuan, e.g. 199.90")
    try:
        # A JSON float's repr is its shortest exact decimal: 199.9 stays 199.9.
        value = Decimal(raw.strip() if isinstance(raw, str) else repr(raw)
                        if isinstance(raw, float) else raw)
    except InvalidOperation:
        raise OrderError(where, f"not an amount: {str(raw)[:20]!r}") from None
    if not value.is_finite():
        raise OrderError(where, "not an amount")
    if value != value.quantize(Decimal("0.01")):
        raise OrderError(where, "at most 2 decimal places (fen)")
    if value < 0 or (positive and value == 0):
        raise OrderError(where, "must be more than 0" if positive else "must not be negative")
    if value > MAX_AMOUNT:
        raise OrderError(where, f"at most {MAX_AMOUNT} yuan")
    return value.quantize(Decimal("0.01"))


def _object(raw: Any, where: str, what: str, known: frozenset[str]) -> None:
    """`raw` is an object with only `known` fields, or OrderError naming the first other."""
    if not isinstance(raw, Mapping):
        raise OrderError(where, what)
    extra = sorted(set(raw) - known)
    if extra:
        raise OrderError(f"{where}.{extra[0]}", f"unknown field (known: "
                         f"{', '.join(sorted(known))})")


def _items(raw: Any) -> tuple[Item, ...]:
    if not isinstance(raw, list) or not raw:
        raise OrderError("items", "required: a non-empty list of {name, category, qty, amount}")
    if len(raw) > MAX_ITEMS:
        raise OrderError("items", f"at most {MAX_ITEMS} lines")
    items = []
    for i, line in enumerate(raw):
        where = f"items[{i}]"
        _object(line, where, "an item is an object {name, category, qty, amount}",
                _ITEM_FIELDS)
        category = _text(line, "category", f"{where}.category", 40)
        if category.startswith("$") or "." in category:
            # A category is a key of the profile's orders.categories.
            raise OrderError(f"{where}.category", "must not contain '.' or start with '$'")
        qty = line.get("qty", 1)
        if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= 100_000:
            raise OrderError(f"{where}.qty", "a whole number from 1 to 100000")
        sku = _text(line, "sku", f"{where}.sku", 64, numbers=True, required=False)
        items.append(Item(name=_text(line, "name", f"{where}.name", 100), category=category,
                          qty=qty, amount=_money(line.get("amount"), f"{where}.amount"),
                          sku=sku or None))
    return tuple(items)


def _refunds(raw: Any, paid: Decimal) -> tuple[Refund, ...]:
    if not isinstance(raw, list):
        raise OrderError("refunds", "a list of {refund_id, amount, at}")
    if len(raw) > MAX_REFUNDS:
        raise OrderError("refunds", f"at most {MAX_REFUNDS} refunds")
    seen: dict[str, Refund] = {}
    for i, r in enumerate(raw):
        where = f"refunds[{i}]"
        _object(r, where, "a refund is an object {refund_id, amount, at}", _REFUND_FIELDS)
        refund = Refund(refund_id=_text(r, "refund_id", f"{where}.refund_id", 64, _ID,
                                        numbers=True),
                        amount=_money(r.get("amount"), f"{where}.amount", positive=True),
                        at=_time(r.get("at"), f"{where}.at"))
        earlier = seen.get(refund.refund_id)
        if earlier is not None and earlier != refund:
            raise OrderError(f"{where}.refund_id", f"{refund.refund_id!r} appears twice with "
                             "different amounts or times")
        seen[refund.refund_id] = refund  # the same refund twice counts once
    total = sum(fen(r.amount) for r in seen.values())
    if total > fen(paid):
        raise OrderError("refunds", f"refunds add up to {_fmt(total)} yuan, more than the "
                         f"{_fmt(fen(paid))} paid")
    return tuple(sorted(seen.values(), key=lambda r: (r.at, r.refund_id)))


# --- aggregates --------------------------------------------------------------------------


def _split(total: int, weights: Sequence[int]) -> list[int]:
    """`total` fen over `weights`, exactly (largest remainder; ties to the earlier line)."""
    if not weights:
        return []
    whole = sum(weights)
    if whole == 0:
        weights, whole = [1] * len(weights), len(weights)
    shares = [total * w // whole for w in weights]
    left = total - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[:left]:
        shares[i] += 1
    return shares


def aggregates(orders: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """A member's order aggregates from her stored orders: the fields to $set on her
    profile and the ones to $unset.

    A fully refunded order is as if it was not bought: it counts in none of them. What an
    order paid net of refunds is split over its categories by line amount (by quantity when
    every line is free), to the fen, so the categories add up to `spent`.
    """
    count, spent, last = 0, 0, None
    categories: dict[str, int] = {}
    for o in orders:
        net = int(o["amount_fen"]) - int(o.get("refunded_fen", 0))
        if o.get("status") == "refunded" or net < 0:
            continue
        count += 1
        spent += net
        at = o["at"] if o["at"].tzinfo else o["at"].replace(tzinfo=UTC)
        last = at if last is None or at > last else last
        items = o.get("items") or []
        weights = [int(i["amount_fen"]) for i in items]
        if not any(weights):
            weights = [int(i.get("qty", 1)) for i in items]
        for item, share in zip(items, _split(net, weights), strict=True):
            if share:
                categories[item["category"]] = categories.get(item["category"], 0) + share
    top = min(categories, key=lambda c: (-categories[c], c)) if categories else None
    fields: dict[str, Any] = {
        "orders.count": count, "orders.spent": yuan(spent), "orders.spent_fen": spent,
        "orders.categories": {c: yuan(f) for c, f in sorted(categories.items())},
    }
    unset = []
    for path, value in (("orders.last_at", last), ("orders.top_category", top)):
        if value is None:
            unset.append(path)
        else:
            fields[path] = value
    return fields, unset


# --- recording ----------------------------------------------------------------------------


def _held(net_fen: int, rate: int) -> int:
    """Points an order keeps while `net_fen` of it stays paid: `rate` per whole yuan."""
    return max(net_fen, 0) // 100 * rate


def _content(doc: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must never change between posts of one order (refunds only add up)."""
    at = doc["at"] if doc["at"].tzinfo else doc["at"].replace(tzinfo=UTC)
    return (doc["profile_id"], at, int(doc["amount_fen"]), doc["channel"],
            [(i.get("sku"), i["name"], i["category"], int(i["qty"]), int(i["amount_fen"]))
             for i in doc["items"]])


def _refund_key(r: Mapping[str, Any]) -> tuple[int, datetime]:
    at = r["at"] if r["at"].tzinfo else r["at"].replace(tzinfo=UTC)
    return int(r["amount_fen"]), at


class OrderBook:
    """Records the shop's orders: once per order id, refunds once per refund id, the
    member's aggregates recomputed from her orders, points credited and taken back.

    Concurrent and repeated posts stay exact: the order document moves only by a
    conditional update on its version, its points are settled by one holder of its lease
    at a time, each points change has its ledger key (order id, refund id), and her
    aggregates are written only by the latest recomputation from her orders.
    """

    def __init__(self, store: Store, points: Points, settings: BotSettings,
                 openids: tuple[str, str]) -> None:
        """`openids`: the (channel, app_id) account an order's openid belongs to; the edge
        says which (channel names stay out of bot/)."""
        self._store = store
        self._points = points
        self._openids = openids
        rule = settings.points.rules.get(ORDER_RULE)
        if rule is not None and rule.per != "yuan":
            raise ValueError(f"points.rules.{ORDER_RULE} must have per: yuan")
        self._rate = rule.points if rule is not None else 0

    async def resolve(self, ref: MemberRef) -> Profile | None:
        """The profile an order's member reference names, if any."""
        profiles = self._store.profiles
        if ref.kind == "member_id":
            return await profiles.find_by_member(ref.value)
        if ref.kind == "mobile":
            return await profiles.find_by_mobile(ref.value)
        if ref.kind == "openid":
            return await profiles.find_by_identity(*self._openids, ref.value)
        return await self._store.orders.find_by_unionid(ref.value)

    async def record(self, order: Order, now: datetime) -> RecordResult:
        """Record one post of an order. Raises UnknownMember (nothing is kept)."""
        profile = await self.resolve(order.member)
        if profile is None:
            raise UnknownMember("member", f"no member with {order.member}")
        pid = profile["_id"]
        orders = self._store.orders
        fresh = self._new_doc(order, pid, now)
        # A first post usually has no refunds yet: try it as new before reading.
        if not order.refunds and await orders.insert(fresh):
            return await self._settle(order.order_id, pid, "created", now)
        for _ in range(50):  # each round loses only to a post that changed the order
            stored = await orders.get(order.order_id)
            if stored is None:
                if await orders.insert(fresh):
                    return await self._settle(order.order_id, pid, "created", now)
                continue
            if _content(stored) != _content(fresh):
                return self._conflict(order, pid, "order already recorded with a different "
                                      "member, time, amount, channel or items")
            known = {r["refund_id"]: r for r in stored.get("refunds", [])}
            new = []
            for r in order.refunds:
                was = known.get(r.refund_id)
                if was is None:
                    new.append(r)
                elif _refund_key(was) != (fen(r.amount), r.at):
                    return self._conflict(order, pid, f"refund {r.refund_id!r} already "
                                          "recorded with a different amount or time")
            if not new:
                # An exact repeat, or an older post (fewer refunds) arriving late.
                if stored.get("settled", 0) >= stored["version"]:
                    return RecordResult("unchanged", order.order_id, pid)
                return await self._settle(order.order_id, pid, "unchanged", now)
            entries, refunded = self._refund_entries(stored, new)
            paid = int(stored["amount_fen"])
            if refunded > paid:
                return self._conflict(order, pid, f"refunds would add up to "
                                      f"{_fmt(refunded)} yuan, more than the {_fmt(paid)} "
                                      "paid")
            version = int(stored["version"])
            if await orders.add_refunds(order.order_id, version, entries, {
                    "refunded_fen": refunded, "status": status_of(paid, refunded),
                    "version": version + 1, "updated_at": now}):
                return await self._settle(order.order_id, pid, "updated", now)
        raise RuntimeError(f"order {order.order_id}: too many concurrent changes")

    async def recompute(self, profile_id: str) -> None:
        """Her aggregates from her orders (after a crash between writes, or a repair)."""
        await recompute_totals(self._store, profile_id)

    def _conflict(self, order: Order, pid: str, reason: str) -> RecordResult:
        log.info("order refused", extra={"order": order.order_id, "profile_id": pid,
                                         "reason": reason[:100]})
        return RecordResult("conflict", order.order_id, pid, reason=reason)

    def _new_doc(self, order: Order, pid: str, now: datetime) -> dict[str, Any]:
        paid = fen(order.amount)
        doc: dict[str, Any] = {
            "_id": order.order_id, "profile_id": pid, "at": order.at, "amount_fen": paid,
            "channel": order.channel,
            "items": [{"sku": i.sku, "name": i.name, "category": i.category, "qty": i.qty,
                       "amount_fen": fen(i.amount)} for i in order.items],
            "status": "paid", "refunds": [], "refunded_fen": 0,
            # The rate is kept: a later change of the rule does not alter what refunds of
            # this order take back.
            "points": {"rate": self._rate, "credited": _held(paid, self._rate)},
            "version": 1, "settled": 0, "created_at": now, "updated_at": now,
        }
        if order.refunds:
            doc["refunds"], doc["refunded_fen"] = self._refund_entries(doc, list(order.refunds))
            doc["status"] = status_of(paid, doc["refunded_fen"])
        return doc

    @staticmethod
    def _refund_entries(doc: Mapping[str, Any], new: list[Refund]
                        ) -> tuple[list[dict[str, Any]], int]:
        """The stored form of `new` refunds, each with the points it takes back (what the
        order held before it less what it holds after: a full refund takes back exactly
        what was credited, whatever the order the refunds came in), and the new total."""
        rate, paid = int(doc["points"]["rate"]), int(doc["amount_fen"])
        refunded = int(doc.get("refunded_fen", 0))
        entries = []
        for r in sorted(new, key=lambda r: (r.at, r.refund_id)):
            before = _held(paid - refunded, rate)
            refunded += fen(r.amount)
            entries.append({"refund_id": r.refund_id, "amount_fen": fen(r.amount), "at": r.at,
                            "points": before - _held(paid - refunded, rate)})
        return entries, refunded

    async def _settle(self, order_id: str, pid: str, outcome: Outcome, now: datetime
                      ) -> RecordResult:
        """Do what follows from the order as it now is: her aggregates, its points.

        One caller at a time holds the order's lease and settles every version committed
        until it lets go, so a refund's points are never worked out against a balance
        its own order's credit has not reached yet. A caller that finds the lease taken
        leaves the work to its holder (and reports no points); a lease left by a crashed
        process runs out after LEASE and the order's next post settles it.
        """
        orders, token = self._store.orders, uuid.uuid4().hex
        points = shortfall = 0
        while True:
            clock = datetime.now(UTC)
            doc = await orders.claim(order_id, token, clock, clock + LEASE)
            if doc is None:
                break
            await self.recompute(pid)
            got, short = await self._points_of(doc, now)
            points, shortfall = points + got, shortfall + short
            after = await orders.release(order_id, token, int(doc["version"]))
            if after is None or int(after.get("settled", 0)) >= int(after["version"]):
                break
        log.info("order recorded", extra={"order": order_id, "profile_id": pid,
                                          "result": outcome, "points": points,
                                          "shortfall": shortfall})
        return RecordResult(outcome, order_id, pid, points, shortfall)

    async def _points_of(self, doc: Mapping[str, Any], now: datetime) -> tuple[int, int]:
        """Credit the order and take back for its refunds, each once per ledger key."""
        pid, order_id = str(doc["profile_id"]), str(doc["_id"])
        points = shortfall = 0
        credited = int(doc["points"]["credited"])
        # A settling that got as far as letting go of the lease had credited the order.
        if credited > 0 and int(doc.get("settled", 0)) == 0:
            award = await self._points.credit(pid, ORDER_RULE, credited,
                                              f"{ORDER_RULE}:{order_id}", order_id, now)
            points += credited if award.applied else 0
        for r in doc.get("refunds", []):
            due = int(r["points"])
            if due <= 0 or "taken" in r:
                continue
            back = await self._points.take_back(
                pid, REFUND_REASON, due, f"{ORDER_RULE}:{order_id}:refund:{r['refund_id']}",
                order_id, now)
            if back.applied:
                points -= back.taken
                shortfall += back.shortfall
                await self._store.orders.note_refund(order_id, str(r["refund_id"]),
                                                     back.taken, back.shortfall)
        return points, shortfall


async def recompute_totals(store: Store, profile_id: str) -> None:
    """Her order totals from her orders, written by revision (after her imported self's
    orders moved to her, after a crash between writes, or a repair)."""
    rev = await store.orders.bump(profile_id)
    if rev is None:
        return  # no such profile (erased meanwhile)
    fields, unset = aggregates(await store.orders.for_profile(profile_id))
    await store.orders.set_aggregates(profile_id, rev, fields, unset)
