"""The application settings: `config.yml` loaded once, `${ENV}` expanded, validated.

An error names the key and the line of config.yml it came from, so a bad deploy fails at
start-up with something an operator can act on.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

_ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """config.yml could not be loaded; the message names file, line and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AppSettings(_Strict):
    host: str = "0.0.0.0"  # noqa: S104 - WeChat must reach the webhook; admin is guarded
    port: int = Field(8080, ge=1, le=65535)
    budget_seconds: float = Field(4.0, gt=0.2, le=4.8)
    dedupe_ttl_seconds: int = Field(300, ge=120)
    order_wait_seconds: float = Field(30.0, gt=0)
    default_lang: str = "zh"
    log_level: str = "INFO"
    flows_dir: str = "flows"


class WeChatSettings(_Strict):
    token: str = Field(min_length=3, max_length=32)
    app_id: str = Field(min_length=1)
    app_secret: str | None = None
    aes_key: str | None = None
    api_base: str = "https://api.weixin.qq.com"
    replay_window_seconds: int = Field(300, ge=1)
    menu: dict[str, str] = Field(default_factory=dict)

    @field_validator("aes_key")
    @classmethod
    def _aes_key_length(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if len(v) != 43:
            raise ValueError("EncodingAESKey must be exactly 43 characters")
        return v


class RasaSettings(_Strict):
    url: str = "http://127.0.0.1:5005"
    # Hard limit for one Rasa call. Past app.budget_seconds the follower already got
    # "success" and the answer goes out through the customer-service API; past this
    # limit the apology does.
    timeout_seconds: float = Field(10.0, gt=0, le=60)
    # Shared secret Rasa sends to /rasa/webhook as ?token= (its action_endpoint `token:`).
    action_token: str | None = None


class MongoSettings(_Strict):
    url: str | None = None
    database: str = "scrm"


class RedisSettings(_Strict):
    url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "scrm"


class AdminSettings(_Strict):
    token: str | None = None
    allow_remote: bool = False


class JsonChannelSettings(_Strict):
    secret: str | None = None
    header: str = "X-SCRM-Signature"


class Settings(_Strict):
    app: AppSettings = AppSettings()
    wechat: WeChatSettings
    rasa: RasaSettings = RasaSettings()
    mongodb: MongoSettings = MongoSettings()
    redis: RedisSettings = RedisSettings()
    admin: AdminSettings = AdminSettings()
    json_channel: JsonChannelSettings = JsonChannelSettings()



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


def _to_python(node: yaml.Node, path: tuple[str, ...], lines: dict[tuple[str, ...], int],
               env: dict[str, str], fname: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for k, v in node.value:
            key = str(k.value)
            out[key] = _to_python(v, (*path, key), lines, env, fname)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, (*path, str(i)), lines, env, fname) for i, v in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    where = f"{fname}:{lines[path]} {'.'.join(path)}"
    if node.tag == "tag:yaml.org,2002:str" and "${" in node.value:
        return _expand(node.value, env, where)
    return _scalar(node)


def _scalar(node: yaml.ScalarNode) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def load_settings(path: str | Path = "config.yml", env: dict[str, str] | None = None) -> Settings:
    """Read, expand and validate config.yml. Raises ConfigError naming file, line and key."""
    path = Path(path)
    env = dict(os.environ) if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror})") from e
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    lines: dict[tuple[str, ...], int] = {}
    data = _to_python(node, (), lines, env, str(path)) if node is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(str(p) for p in err["loc"])
            line = _nearest_line(loc, lines)
            key = ".".join(loc) or "(top level)"
            problems.append(f"{path}:{line} {key}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None


def _nearest_line(loc: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> int:
    # A missing key has no line of its own: point at its parent section.
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1
