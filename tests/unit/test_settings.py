"""config.yml loading: ${ENV} expansion, and errors that name the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from webhooks.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]
ENV = {"WECHAT_TOKEN": "tok123", "WECHAT_APP_ID": "wx1"}


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yml"
    p.write_text(text)
    return p


def test_shipped_config_loads_with_defaults():
    s = load_settings(ROOT / "config.yml", ENV)
    assert s.wechat.token == "tok123" and s.wechat.app_id == "wx1"
    assert s.mongodb.url is None  # embedded
    assert s.redis.url == "redis://127.0.0.1:6379/0"
    assert s.app.budget_seconds == 4.0 and s.wechat.aes_key is None
    assert s.admin.token is None and s.json_channel.secret is None


def test_missing_secret_names_the_variable_line_and_key():
    with pytest.raises(ConfigError) as e:
        load_settings(ROOT / "config.yml", {"WECHAT_APP_ID": "wx1"})
    lines = (ROOT / "config.yml").read_text().splitlines()
    line = next(i for i, t in enumerate(lines, 1) if "${WECHAT_TOKEN}" in t)
    assert f"config.yml:{line} wechat.token" in str(e.value)
    assert "WECHAT_TOKEN is not set" in str(e.value)


def test_invalid_value_names_line_and_key(tmp_path):
    path = write(tmp_path, "app:\n  port: 8080\n  budget_seconds: 9\nwechat:\n"
                           "  token: abc\n  app_id: x\n")
    with pytest.raises(ConfigError) as e:
        load_settings(path, {})
    assert "config.yml:3 app.budget_seconds" in str(e.value)


def test_unknown_key_is_an_error(tmp_path):
    path = write(tmp_path, "wechat:\n  token: abc\n  app_id: x\n  tokn: typo\n")
    with pytest.raises(ConfigError, match=r"config.yml:4 wechat.tokn: Extra inputs"):
        load_settings(path, {})


def test_aes_key_must_be_43_characters(tmp_path):
    path = write(tmp_path, "wechat:\n  token: abc\n  app_id: x\n  aes_key: short\n")
    with pytest.raises(ConfigError, match=r":4 wechat.aes_key: .*43 characters"):
        load_settings(path, {})


def test_missing_section_points_at_top(tmp_path):
    path = write(tmp_path, "app:\n  port: 80\n")
    with pytest.raises(ConfigError, match=r"wechat: Field required"):
        load_settings(path, {})


def test_yaml_syntax_error_is_reported(tmp_path):
    path = write(tmp_path, "wechat: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(path, {})


def test_env_default_and_embedding(tmp_path):
    path = write(tmp_path, "wechat:\n  token: ${T:-fallback}\n  app_id: wx-${ID}\n")
    s = load_settings(path, {"ID": "42"})
    assert s.wechat.token == "fallback" and s.wechat.app_id == "wx-42"


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "nope.yml", {})


def test_compose_config_differs_from_config_yml_only_where_documented():
    """deploy/config.compose.yml is a copy for docker-compose: it must not drift."""
    env = {**ENV, "SCRM_ACTION_TOKEN": "t"}
    main = load_settings(ROOT / "config.yml", env).model_dump()
    compose = load_settings(ROOT / "deploy" / "config.compose.yml", env).model_dump()
    assert compose["admin"].pop("allow_remote") is True
    assert main["admin"].pop("allow_remote") is False
    assert compose == main


def test_a_moved_key_says_where_it_went(tmp_path):
    path = write(tmp_path, "wechat: {token: abcd, app_id: wx}\n"
                           "points:\n  timezone: Asia/Shanghai\n")
    with pytest.raises(ConfigError,
                       match=r"config.yml:3 points.timezone: has moved to app.timezone"):
        load_settings(path, {})


def test_one_brand_calendar_for_points_quiet_hours_and_jobs(tmp_path):
    path = write(tmp_path, "wechat: {token: abcd, app_id: wx}\napp: {timezone: Mars/Olympus}\n")
    with pytest.raises(ConfigError, match=r"app.timezone: .*unknown time zone"):
        load_settings(path, {})


def test_the_apps_nlu_threshold_is_rasas_fallback_threshold():
    # Two numbers for one rule: Rasa turns a weaker intent into nlu_fallback, and the app
    # applies the same bar to any NLU. Changing one without the other splits the behaviour.
    nlu = yaml.safe_load((ROOT / "nlu" / "config.yml").read_text(encoding="utf-8"))
    rasa = next(p for p in nlu["pipeline"] if p["name"] == "FallbackClassifier")["threshold"]
    for config in (ROOT / "config.yml", ROOT / "deploy" / "config.compose.yml"):
        assert load_settings(config, ENV).members.nlu_threshold == rasa, config
