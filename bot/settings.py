"""The application settings: `config.yml` loaded once, `${ENV}` expanded, validated.

An error names the key and the line of config.yml it came from, so a bad deploy fails at
start-up with something an operator can act on.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bot import yamlmarks
from bot.brand_calendar import Window, clock_window, window_of

_ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """config.yml could not be loaded; the message names file, line and key."""


class Strict(BaseModel):
    """A settings section: unknown keys are errors, values frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AppSettings(Strict):
    host: str = "0.0.0.0"  # noqa: S104 - WeChat must reach the webhook; admin is guarded
    port: int = Field(8080, ge=1, le=65535)
    budget_seconds: float = Field(4.0, gt=0.2, le=4.8)
    dedupe_ttl_seconds: int = Field(300, ge=120)
    order_wait_seconds: float = Field(30.0, gt=0)
    # Longer texts are answered politely and never reach NLU: one long message must not
    # slow everyone (Rasa took 10 s and failed on 1 MB).
    max_text_chars: int = Field(2000, ge=10, le=20_000)
    default_lang: str = "zh"
    log_level: str = "INFO"
    flows_dir: str = "flows"
    # The brand's calendar: points per day, quiet hours, monthly caps and daily jobs.
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class RasaSettings(Strict):
    url: str = "http://127.0.0.1:5005"
    # Hard limit for one Rasa call. Past app.budget_seconds the follower already got
    # "success" and the answer goes out through the customer-service API; past this
    # limit the apology does.
    timeout_seconds: float = Field(10.0, gt=0, le=60)
    # Shared secret Rasa sends to /rasa/webhook as ?token= (its action_endpoint `token:`).
    action_token: str | None = None


class MongoSettings(Strict):
    url: str | None = None
    database: str = "scrm"
    # Without a url: where the embedded engine keeps its data between runs (a snapshot
    # loaded at start, written on a clean stop and every snapshot_seconds), or "off".
    snapshot: str | None = ".scrm/embedded.bson"
    snapshot_seconds: int = Field(60, ge=5, le=86_400)

    @field_validator("snapshot")
    @classmethod
    def _off(cls, v: str | None) -> str | None:
        return None if v is None or v.strip().lower() in ("", "off", "none") else v


class RedisSettings(Strict):
    url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "scrm"


class PointsRule(Strict):
    points: int = Field(gt=0)  # per `per`; with per: yuan, points for each whole yuan paid
    # once: one award per member ever; day: once per calendar day; event: once per source
    per: Literal["once", "day", "event", "yuan"] = "event"


class Tier(Strict):
    name: str
    min: int = Field(ge=0)  # lifetime points earned (spending never demotes)


class Reward(Strict):
    name: str
    cost: int = Field(gt=0)
    stock: int = Field(ge=0)
    # Other words members use for it ("湿巾" for 婴儿湿巾): "帮我换包湿巾" finds it too.
    aliases: list[str] = Field(default_factory=list)


def _default_rules() -> dict[str, PointsRule]:
    return {"signup": PointsRule(points=100, per="once"), "checkin": PointsRule(points=5,
                                                                                 per="day")}


def _default_tiers() -> list[Tier]:
    return [Tier(name="普通", min=0), Tier(name="银卡", min=500), Tier(name="金卡", min=2000)]


class PointsSettings(Strict):
    rules: dict[str, PointsRule] = Field(default_factory=_default_rules)
    tiers: list[Tier] = Field(default_factory=_default_tiers)
    rewards: dict[str, Reward] = Field(default_factory=dict)

    @field_validator("tiers")
    @classmethod
    def _tiers_ascend(cls, v: list[Tier]) -> list[Tier]:
        if not v or v[0].min != 0:
            raise ValueError("the first tier must start at min: 0")
        if any(b.min <= a.min for a, b in itertools.pairwise(v)):
            raise ValueError("tier minimums must strictly increase")
        return v


class RetentionSettings(Strict):
    """How long member data is kept (PIPL: no longer than needed). None: kept."""

    interaction_text_days: int | None = Field(365, ge=1)  # then type and outcome only
    unfollowed_days: int | None = Field(180, ge=1)  # unfollowed, never joined: erased


FieldType = Literal["text", "int", "decimal", "date", "enum", "bool", "list"]
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# What sign-up and the profile flows write under `fields.`: a custom field cannot take
# these names (it would overwrite them, and their rules live in code).
BUILTIN_FIELDS = frozenset({"nickname", "mobile", "role", "due_date", "baby_birthday",
                            "city", "province", "stage"})


class CustomField(Strict):
    """One brand-defined member field (`members.fields.<name>`); bot/members/fields.py
    reads and checks values against it."""

    type: FieldType = "text"
    label: str | dict[str, str]  # one text, or {zh: ..., en: ...}
    # A flow validator (bot/flow_engine/validators.py) a `collect` into this field uses
    # before the type's own check, e.g. cn_mobile or city.
    validator: str | None = None
    # enum: the allowed values; list: allowed items (empty: any). A mapping gives each
    # value a label that is also accepted as input (girl: 女孩).
    choices: list[str] | dict[str, str] = Field(default_factory=list)
    min: float | None = None  # int, decimal: bounds; text: length bounds
    max: float | None = None
    places: int = Field(2, ge=0, le=6)  # decimal: digits kept after the point
    sensitive: bool = False  # masked like phones; gone with the sensitive-data consent

    @field_validator("label")
    @classmethod
    def _label(cls, v: str | dict[str, str]) -> str | dict[str, str]:
        if isinstance(v, dict) and not (set(v) <= {"zh", "en"} and v.get("zh")):
            raise ValueError("label takes zh: (required) and en:")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> CustomField:
        if self.type == "enum" and not self.choices:
            raise ValueError("an enum field needs choices:")
        if self.choices and self.type not in ("enum", "list"):
            raise ValueError(f"choices: only for enum and list fields, not {self.type}")
        if self.validator is not None:
            from bot.flow_engine.validators import VALIDATORS  # the registry, filled at import

            if self.validator not in VALIDATORS:
                raise ValueError(f"unknown validator {self.validator!r} (known: "
                                 f"{', '.join(sorted(VALIDATORS))})")
        return self


def _field_name(name: str) -> str:
    if not FIELD_NAME.match(name):
        raise ValueError(f"field name {name!r}: lower-case letters, digits and _, "
                         "starting with a letter, at most 32")
    if name in BUILTIN_FIELDS:
        raise ValueError(f"field name {name!r} is built in (taken: "
                         f"{', '.join(sorted(BUILTIN_FIELDS))})")
    return name


FieldName = Annotated[str, AfterValidator(_field_name)]


class MembersSettings(Strict):
    privacy_policy_version: str = "2026-11"
    nlu_threshold: float = Field(0.3, ge=0, le=1)
    # Who sees draft flows (openids; a profile tagged "tester" does too).
    testers: list[str] = Field(default_factory=list)
    # Data rights: where a member opens her export link, how long it lives, how long a
    # deletion request can still be cancelled.
    public_url: str = "http://127.0.0.1:8080"
    export_minutes: int = Field(30, ge=1, le=1440)
    erasure_cooling_days: int = Field(7, ge=0, le=90)
    retention: RetentionSettings = RetentionSettings()
    # The brand's own member fields (宝宝性别, 会员卡号, ...): flows, import, staff, segments
    # (`field.<name>`), templates and exports read them from here.
    fields: dict[FieldName, CustomField] = Field(default_factory=dict)


class MatchWeights(Strict):
    stage: float = Field(0.4, ge=0)  # closeness of due dates / baby ages
    city: float = Field(0.25, ge=0)
    province: float = Field(0.1, ge=0)
    interests: float = Field(0.1, ge=0)  # shared non-stage tags
    experience: float = Field(0.1, ge=0)  # the sister is further along
    feedback: float = Field(0.05, ge=0)  # how helpful her past matches were


class MatchingSettings(Strict):
    window_days: int = Field(90, ge=1, le=730)  # birth dates at most this far apart
    candidates: int = Field(3, ge=1, le=10)
    mentor_capacity: int = Field(3, ge=1)  # open matches a sister may have at once
    pool: int = Field(400, ge=10)  # nearest members looked at per index (bounds the work)
    weights: MatchWeights = MatchWeights()


class TemplateMessage(Strict):
    """A WeChat template message used outside the 48-hour window (service accounts)."""

    template_id: str | None = None  # empty: not configured, members outside 48 h are skipped
    url: str | None = None
    data: dict[str, str] = Field(default_factory=dict)  # keyword -> Jinja2 text


class MarketingSettings(Strict):
    # Openids that are admins whatever their profile says; admins promote others by /role.
    admins: list[str] = Field(default_factory=list)
    confirm_minutes: int = Field(10, ge=1, le=1440)  # a preview waits this long for /confirm
    rate_per_second: float = Field(20.0, gt=0, le=1000)  # every process together
    monthly_cap: int = Field(4, ge=1, le=100)  # broadcasts per member per calendar month
    quiet_hours: str = "22:00-08:00"  # brand time zone (app.timezone); deferred, not dropped
    chunk_size: int = Field(500, ge=1, le=5000)  # members per send job
    job_timeout_seconds: int = Field(300, ge=5)  # a killed worker's job runs again after this
    mot_hour: int = Field(9, ge=0, le=23)  # the daily life-stage job, brand time zone
    poll_days: int = Field(7, ge=1, le=90)  # answers accepted this long after sending
    # Points one member of staff may grant by /points grant per day (brand calendar).
    grant_daily_cap: int = Field(2000, ge=0, le=1_000_000)
    # Template messages by broadcast template name (flows/templates/), for the 48 h rule.
    template_messages: dict[str, TemplateMessage] = Field(default_factory=dict)

    @field_validator("admins", mode="before")
    @classmethod
    def _split_admins(cls, v: Any) -> Any:
        # From the environment they come as one comma-separated string.
        if v is None:
            return []
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @field_validator("quiet_hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        return clock_window(v, "quiet_hours")

    def quiet_window(self) -> Window | None:
        """((start h, m), (end h, m)), or None when there are no quiet hours."""
        return window_of(self.quiet_hours)


class HandoffSettings(Strict):
    """转人工: when people answer, and when a quiet conversation goes back to the bot."""

    service_hours: str = "09:00-21:00"  # brand time zone; outside, she is told when
    idle_minutes: int = Field(30, ge=1, le=1440)  # no message either way: closed
    context_messages: int = Field(5, ge=0, le=20)  # her last messages shown to staff

    @field_validator("service_hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        return clock_window(v, "service_hours")

    def window(self) -> Window | None:
        return window_of(self.service_hours)


class SocialWeights(Strict):
    """Points of social value (社交价值) per thing she did; bot/members/social.py."""

    referral_member: float = Field(10, ge=0)  # each woman she referred who became a member
    follower: float = Field(3, ge=0)  # each new follower who came by her QR code
    # each person already following whom her code reached (a scan: how shares are seen)
    share: float = Field(1, ge=0)
    helpful: float = Field(5, ge=0)  # each "helpful" a matched sister said about her
    poll: float = Field(1, ge=0)  # each poll she answered
    recency: float = Field(10, ge=0)  # in full when she was here today, 0 after recency_days


class SocialSettings(Strict):
    weights: SocialWeights = SocialWeights()
    recency_days: int = Field(30, ge=1, le=365)
    hour: int = Field(3, ge=0, le=23)  # the daily recompute, brand time zone
    kol_weekday: int = Field(0, ge=0, le=6)  # Monday = 0: admins get the KOL suggestions
    kol_suggestions: int = Field(10, ge=1, le=100)


class BotSettings(Strict):
    """The sections the channel-free core reads; channels add their own (webhooks/config.py)."""

    app: AppSettings = AppSettings()
    rasa: RasaSettings = RasaSettings()
    mongodb: MongoSettings = MongoSettings()
    redis: RedisSettings = RedisSettings()
    points: PointsSettings = PointsSettings()
    members: MembersSettings = MembersSettings()
    matching: MatchingSettings = MatchingSettings()
    marketing: MarketingSettings = MarketingSettings()
    handoff: HandoffSettings = HandoffSettings()
    social: SocialSettings = SocialSettings()


# Keys that moved to another section: config loading says where they went.
MOVED = {("points", "timezone"): "app.timezone",
         ("marketing", "window_hours"): "wechat.window_hours"}
S = TypeVar("S", bound=BaseModel)


def _expand(value: str, env: dict[str, str], where: str) -> str | None:
    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set")

    out = _ENV_REF.sub(sub, value)
    # A value that was only an empty reference means "not configured".
    return None if out == "" and _ENV_REF.fullmatch(value) else out


def load_config(model: type[S], path: str | Path = "config.yml",
                env: dict[str, str] | None = None) -> S:
    """Read, expand and validate config.yml into `model`. Raises ConfigError naming file,
    line and key."""
    path = Path(path)
    env = dict(os.environ) if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror})") from e
    def on_str(value: str, key: tuple[str, ...], line: int) -> Any:
        if "${" not in value:
            return value
        return _expand(value, env, f"{path}:{line} {'.'.join(key)}")

    try:
        data, lines = yamlmarks.load(text, str(path), on_str)
    except yamlmarks.YamlProblem as e:
        raise ConfigError(str(e)) from e
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    moved = [f"{path}:{lines[(section, key)]} {section}.{key}: has moved to {now}"
             for (section, key), now in MOVED.items()
             if isinstance(data.get(section), dict) and key in data[section]]
    if moved:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(moved))
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(str(p) for p in err["loc"])
            line = yamlmarks.line_of(loc, lines)
            key = ".".join(loc) or "(top level)"
            problems.append(f"{path}:{line} {key}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None
