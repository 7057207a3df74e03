"""The FAQ knowledge base (bot/knowledge/): its checker's errors with file:line, retrieval
of paraphrases, the threshold, the medical disclaimer, the feedback counted once per answer
and the answer for a message nothing else understood. Fast: no Rasa, no servers."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from mongomock_motor import AsyncMongoMockClient

from bot.brand_calendar import BrandCalendar
from bot.core import ACTION_NAMES
from bot.flow_engine.actions import Say, TurnInput, action_names, actions_of
from bot.flow_engine.engine import FlowEngine
from bot.flow_engine.loader import FlowsInvalid, Known
from bot.flow_engine.registry import REQUIRED_TEMPLATES, FlowRegistry
from bot.flow_engine.validators import VALIDATORS
from bot.knowledge.answers import DEFAULT_THRESHOLD, Knowledge
from bot.knowledge.base import KnowledgeBase, load_knowledge
from bot.knowledge.text import normalise
from bot.members.fields import FieldBook
from bot.members.variables import MEMBER_VARS
from store.knowledge import MongoFaqFeedback
from store.memory_state import memory_state
from tests.support.core import settings

ROOT = Path(__file__).resolve().parents[2]
FLOWS = ROOT / "flows"
KNOWN = Known(validators=set(VALIDATORS), actions=set(ACTION_NAMES) | action_names(Knowledge),
              award_rules={"signup", "checkin", "share", "referral", "poll"},
              required_templates=REQUIRED_TEMPLATES, member_vars=MEMBER_VARS,
              fields=FieldBook(settings().members.fields))
NOW = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
DISCLAIMER = "以上为一般性信息，不能替代医生的诊断；如有不适请及时就医。"

ENTRY = """\
entries:
  - id: {id}
    category: 测试
    medical: false
    questions: [{q1}, {q2}]
    answer:
      zh: "{zh}"
      en: "an answer"
"""


def errors_of(tmp_path: Path, **files: str) -> list[str]:
    folder = tmp_path / "knowledge"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yml").write_text(text, encoding="utf-8")
    try:
        load_knowledge(tmp_path)
    except FlowsInvalid as e:
        return [str(x) for x in e.errors]
    return []


def entry(id: str = "coffee", q1: str = "能喝咖啡吗", q2: str = "咖啡能喝不",
          zh: str = "一个回答") -> str:
    return ENTRY.format(id=id, q1=q1, q2=q2, zh=zh)


# -- the checker ------------------------------------------------------------------------

def test_a_valid_file_loads(tmp_path):
    assert errors_of(tmp_path, a=entry()) == []
    assert list(load_knowledge(tmp_path).entries) == ["coffee"]


def test_no_knowledge_folder_is_an_empty_base(tmp_path):
    assert load_knowledge(tmp_path).entries == {}


def test_a_duplicate_id_names_both_places(tmp_path):
    errors = errors_of(tmp_path, a=entry(), b=entry(q1="别的问题", q2="另一个问题"))
    assert len(errors) == 1
    assert errors[0].startswith(f"{tmp_path}/knowledge/b.yml:2: entry 'coffee' is already "
                                f"defined at {tmp_path}/knowledge/a.yml:2")


def test_a_missing_answer_is_reported_at_its_entry(tmp_path):
    text = "entries:\n  - id: nap\n    category: 睡眠\n    medical: false\n" \
           "    questions: [宝宝不睡午觉, 午觉怎么哄]\n"
    assert errors_of(tmp_path, a=text) == [
        f"{tmp_path}/knowledge/a.yml:2: entry 'nap' has no answer:"]


def test_an_empty_answer_text_is_refused(tmp_path):
    errors = errors_of(tmp_path, a=entry(zh="  "))
    assert errors == [f"{tmp_path}/knowledge/a.yml:7: entry 'coffee': answer (zh) is empty"]


@pytest.mark.parametrize(("zh", "problem"), [
    ("{{ 1 + }}", "is not valid Jinja2"),
    ("{{ 'x' | shout }}", "unknown filter 'shout'"),
    ("{% include 'other' %}", "{% include %} is not allowed"),
    ("你好 {{ nickname }}", "uses 'nickname'"),
])
def test_a_bad_answer_template_is_reported_with_its_line(tmp_path, zh, problem):
    errors = errors_of(tmp_path, a=entry(zh=zh))
    assert len(errors) == 1
    assert errors[0].startswith(f"{tmp_path}/knowledge/a.yml:7: entry 'coffee': answer (zh)")
    assert problem in errors[0]


def test_other_mistakes_each_have_a_line(tmp_path):
    text = """\
entries:
  - id: Bad-Id
    category: 测试
    medical: maybe
    colour: red
    questions: [只有一个问法]
    answer: {zh: 好}
"""
    errors = errors_of(tmp_path, a=text)
    where = f"{tmp_path}/knowledge/a.yml"
    assert f"{where}:2: entry 'Bad-Id': an id is lower-case letters, digits and _ " \
           "(like coffee_in_pregnancy)" in errors
    assert f"{where}:4: entry 'Bad-Id': medical is true or false" in errors
    assert any(e.startswith(f"{where}:5: entry 'Bad-Id': unknown key 'colour'")
               for e in errors)
    assert f"{where}:6: entry 'Bad-Id': give at least 2 ways of asking (found 1)" in errors
    assert f"{where}:7: entry 'Bad-Id': answer has no en text" in errors


def test_one_question_in_two_entries_is_refused(tmp_path):
    errors = errors_of(tmp_path, a=entry(), b=entry(id="tea", q1="能喝咖啡吗？", q2="茶呢"))
    assert len(errors) == 1 and "is also a question of entry 'coffee'" in errors[0]
    assert errors[0].startswith(f"{tmp_path}/knowledge/b.yml:5:")


def test_invalid_yaml_names_the_line(tmp_path):
    errors = errors_of(tmp_path, a="entries:\n  - id: x\n   bad: [\n")
    assert len(errors) == 1 and errors[0].startswith(f"{tmp_path}/knowledge/a.yml:")
    assert "not valid YAML" in errors[0]


def test_the_registry_checks_and_reloads_the_knowledge_with_the_flows(tmp_path):
    flows = tmp_path / "flows"
    shutil.copytree(FLOWS, flows)
    registry = FlowRegistry(flows, KNOWN, "zh")
    assert len(registry.knowledge.entries) >= 30
    broken = flows / "knowledge" / "zz.yml"
    broken.write_text(entry(id="caffeine_in_pregnancy", q1="新问题一", q2="新问题二"),
                      encoding="utf-8")
    with pytest.raises(FlowsInvalid) as e:
        registry.reload()
    first = (flows / "knowledge" / "pregnancy.yml").read_text(encoding="utf-8").splitlines()
    line = first.index("  - id: caffeine_in_pregnancy") + 1
    assert [str(x) for x in e.value.errors] == [
        f"{broken}:2: entry 'caffeine_in_pregnancy' is already defined at "
        f"{flows}/knowledge/pregnancy.yml:{line}"]
    assert "caffeine_in_pregnancy" in registry.knowledge.entries  # the old version stays
    broken.write_text(entry(id="new_one", q1="新问题一", q2="新问题二"), encoding="utf-8")
    registry.reload()
    assert "new_one" in registry.knowledge.entries


# -- the shipped content and retrieval ---------------------------------------------------

@pytest.fixture(scope="module")
def shipped() -> KnowledgeBase:
    return load_knowledge(FLOWS)


def test_the_starter_set_is_complete(shipped):
    entries = shipped.entries.values()
    assert len(shipped.entries) >= 30
    assert {e.file.rsplit("/", 1)[-1] for e in entries} == {
        "pregnancy.yml", "baby.yml", "service.yml"}
    assert sum(e.medical for e in entries) >= 20
    assert all(e.answer["zh"] and e.answer["en"] for e in entries)
    assert all(any(q.isascii() for q in e.questions) for e in entries)  # some English
    for e in entries:
        if e.medical:  # never a diagnosis without pointing to a doctor
            assert "医" in e.answer["zh"], e.id


PARAPHRASES = [  # none of these is written in flows/knowledge/
    ("怀孕了可以喝点咖啡不", "caffeine_in_pregnancy"),
    ("宝宝吐奶好厉害", "baby_spit_up"),
    ("宝宝发烧38度5要去医院吗", "fever_when_to_see_doctor"),
    ("积分能干嘛", "points_how_to_use"),
    ("孕中期坐飞机安全吗", "flying_in_pregnancy"),
    ("宝贝晚上总醒", "night_waking"),
    ("请问可以吃大闸蟹吗？", "crab_in_pregnancy"),
    ("破水了咋整", "labour_signs"),
    ("冷冻的母乳能放多久", "breast_milk_storage"),
    ("宝宝起湿疹了怎么护理", "baby_eczema"),
    ("ＮＴ检查要空腹吗", "nt_scan"),
    ("is coffee ok during pregnancy", "caffeine_in_pregnancy"),
    ("my little one has a fever", "fever_when_to_see_doctor"),
]


@pytest.mark.parametrize(("question", "expected"), PARAPHRASES)
def test_a_paraphrase_finds_its_entry(shipped, question, expected):
    written = {normalise(q) for e in shipped.entries.values() for q in e.questions}
    assert normalise(question) not in written
    best = shipped.search(question, 1)[0]
    assert best.entry == expected
    assert best.score >= DEFAULT_THRESHOLD


@pytest.mark.parametrize("question", ["今天天气怎么样", "我想买房子", "asdfgh qwerty", "哈哈哈",
                                      "tell me a joke", "帮我写一首诗"])
def test_nonsense_is_below_the_threshold(shipped, question):
    hits = shipped.search(question, 1)
    assert not hits or hits[0].score < DEFAULT_THRESHOLD


def test_normalisation_folds_width_case_punctuation_and_particles():
    assert normalise("请问ＮＴ检查什么时候做呀？？") == normalise("nt检查什么时候做")
    assert normalise("宝贝可不可以吃螃蟹吗!") == normalise("宝宝能吃螃蟹")


# -- answering ----------------------------------------------------------------------------

class Source:
    def __init__(self, registry: FlowRegistry) -> None:
        self.registry = registry

    @property
    def knowledge(self) -> KnowledgeBase:
        return self.registry.knowledge


class Nobody:
    """The engine's other ports; the FAQ flows use none of them."""

    async def award(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("no award in the FAQ flows")

    async def update_tags(self, *args: Any) -> None:
        raise AssertionError("no tags in the FAQ flows")

    async def get(self, profile_id: str) -> None:
        return None

    async def notify(self, profile_id: str, says: list[Say], key: str) -> bool:
        return True


@pytest.fixture(scope="module")
def registry() -> FlowRegistry:
    return FlowRegistry(FLOWS, KNOWN, "zh")


@pytest.fixture
def feedback() -> MongoFaqFeedback:
    return MongoFaqFeedback(AsyncMongoMockClient(tz_aware=True)["faq_test"])


@pytest.fixture
def knowledge(registry, feedback) -> Knowledge:
    return Knowledge(registry, feedback)


@pytest.fixture
def engine(registry, knowledge) -> FlowEngine:
    nobody = Nobody()
    return FlowEngine(registry, memory_state().flows, actions_of([knowledge]), awarder=nobody,
                      profiles=nobody, notifier=nobody, calendar=BrandCalendar("Asia/Shanghai"))


def turn(text: str, intent: str | None = None) -> TurnInput:
    return TurnInput(profile_id="p1", text=text, intent=intent, confidence=1.0 if intent else
                     None, now=NOW, today=date(2025, 3, 1))


def said(registry: FlowRegistry, says: list[Say], lang: str = "zh") -> list[str]:
    return [registry.templates.render(s.template, lang, **s.vars) for s in says]


async def test_a_medical_answer_has_the_disclaimer_and_the_offer_of_a_person(engine,
                                                                            registry):
    says = await engine.turn(turn("孕妇能不能坐飞机呀", intent="faq"))
    assert [s.template for s in says] == ["faq_answer", "faq_helpful_ask"]
    assert says[0].vars["faq"]["medical"] is True
    zh, ask = said(registry, says)
    assert zh.startswith("孕期情况平稳的话") and DISCLAIMER in zh
    assert "发送「找姐妹」" in zh and "发送「转人工」" in zh
    assert ask == "有帮助吗？回复 1 有帮助，2 没帮助。"
    en = said(registry, says[:1], "en")[0]
    assert "does not replace a doctor's diagnosis" in en and "talk to a person" in en


async def test_a_service_answer_has_no_disclaimer_and_needs_person_offers_one(engine,
                                                                              registry):
    says = await engine.turn(turn("积分能干嘛", intent="faq"))
    text = said(registry, says[:1])[0]
    assert says[0].vars["faq"]["id"] == "points_how_to_use" and DISCLAIMER not in text
    # A new question instead of 1/2: the "有帮助吗" is dropped and the question answered.
    order = await engine.turn(turn("我买的东西一直没收到", intent="faq"))
    text = said(registry, order[:1])[0]
    assert order[0].vars["faq"]["needs_person"] is True
    assert DISCLAIMER not in text and text.endswith("需要真人帮忙，发送「转人工」。")


async def test_feedback_is_counted_once_per_answer(engine, registry, feedback):
    says = await engine.turn(turn("宝宝吐奶好厉害", intent="faq"))
    answered = {"id": says[0].vars["faq"]["id"], "key": says[0].vars["faq"]["key"]}
    assert [s.template for s in await engine.turn(turn("3"))] == ["faq_helpful_ask"]
    assert [s.template for s in await engine.turn(turn("１"))] == ["faq_feedback_thanks"]
    assert await feedback.top(5) == [
        {"entry": "baby_spit_up", "asked": 1, "helpful": 1, "not_helpful": 0}]
    # The same answer asked about again (a re-opened question): not counted twice.
    inp = turn("")
    assert [s.template for s in await engine.begin(inp, "faq_feedback", {"faq": answered})] \
        == ["faq_helpful_ask"]
    assert [s.template for s in await engine.turn(turn("2"))] == ["faq_feedback_again"]
    assert await feedback.top(5) == [
        {"entry": "baby_spit_up", "asked": 1, "helpful": 1, "not_helpful": 0}]
    # A new answer is a new count.
    await engine.turn(turn("宝宝老吐奶", intent="faq"))
    assert [s.template for s in await engine.turn(turn("2"))] == ["faq_feedback_sorry"]
    assert await feedback.top(5) == [
        {"entry": "baby_spit_up", "asked": 2, "helpful": 1, "not_helpful": 1}]


async def test_an_unknown_question_in_the_faq_flow_says_so(engine, feedback):
    says = await engine.turn(turn("今天天气怎么样", intent="faq"))
    assert [s.template for s in says] == ["faq_unknown"]
    assert says[0].vars["faq"]["found"] is False
    assert await feedback.unanswered_count() == 1


async def test_answer_is_none_for_unrelated_text(knowledge, feedback):
    for text in ("今天天气怎么样", "我想买房子", "tell me a joke", ""):
        assert await knowledge.answer(text, "zh", now=NOW) is None
    assert await feedback.unanswered_count() == 4
    assert await feedback.top(5) == []


async def test_answer_gives_the_template_and_the_feedback_flow_records_it(knowledge, engine,
                                                                        registry, feedback):
    got = await knowledge.answer("宝宝发烧38度5要去医院吗", "en", now=NOW)
    assert got is not None
    template, variables = got
    faq = variables["faq"]
    assert template == "faq_answer" and faq["id"] == "fever_when_to_see_doctor"
    assert faq["text"] == faq["en"] and faq["medical"] is True
    assert DISCLAIMER in registry.templates.render(template, "zh", **variables)
    await engine.begin(turn(""), "faq_feedback", {"faq": faq})
    assert [s.template for s in await engine.turn(turn("1"))] == ["faq_feedback_thanks"]
    assert await feedback.top(1) == [
        {"entry": "fever_when_to_see_doctor", "asked": 1, "helpful": 1, "not_helpful": 0}]


async def test_stats_lists_the_most_answered_entries(knowledge):
    for text in ("孕妇能不能坐飞机呀", "怀孕几个月还能坐飞机", "宝宝吐奶好厉害", "讲个笑话"):
        await knowledge.answer(text, "zh", now=NOW)
    assert (await knowledge.stats()).splitlines() == [
        f"常见问题: {len(knowledge._source.knowledge.entries)} 条 · 没找到答案 1 次 · 最常问:",
        "  flying_in_pregnancy（孕期能坐飞机吗） 回答 2 · 有帮助 0 · 没帮助 0",
        "  baby_spit_up（宝宝吐奶怎么办） 回答 1 · 有帮助 0 · 没帮助 0",
    ]
