"""A follower talking to a running app through signed WeChat XML, and the sign-up script
most journeys start with."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from scrm.follower import Follower
from tests.conftest import APP_ID, TOKEN

TODAY = datetime.now(ZoneInfo("Asia/Shanghai")).date()


class Chat:
    """One follower talking to the app; `say` returns what the follower sees."""

    def __init__(self, app, openid: str) -> None:
        self.app = app
        self.f = Follower(token=TOKEN, openid=openid)
        self.openid = openid

    async def say(self, text: str) -> str:
        status, body = await self.app.post_wechat(*self.f.request(self.f.text(text)))
        assert status == 200
        return self.f.read_reply(body).get("Content", "")

    async def follow(self) -> str:
        status, body = await self.app.post_wechat(*self.f.request(self.f.event("subscribe")))
        assert status == 200
        return self.f.read_reply(body).get("Content", "")

    async def profile(self):
        await self.app.services.core.orchestrator.drain(10)
        return await self.app.store.profiles.find_by_identity("wechat", APP_ID, self.openid)


async def sign_up(chat: Chat, *, nickname="小美", sensitive="同意", role="1",
                  date_answer: str | None = None, city="上海", mobile="13812345678") -> str:
    assert "隐私政策" in await chat.say("我要注册")
    assert "敏感个人信息" in await chat.say("同意")
    assert "怎么称呼" in await chat.say(sensitive)
    assert "手机号" in await chat.say(nickname)
    assert "准妈妈" in await chat.say(mobile)
    reply = await chat.say(role)
    if date_answer is not None:
        reply = await chat.say(date_answer)
    assert "城市" in reply
    return await chat.say(city)
