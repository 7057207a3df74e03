"""`scrm`: up (Rasa + app), serve (app alone), train, chat (as a follower), profile show."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from webhooks.config import ConfigError, Settings, load_settings
from webhooks.wechat.settings import WeChatSettings

log = logging.getLogger("scrm")


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(args.config)
    except ConfigError as e:
        sys.exit(f"scrm: {e}")


def _with_sandbox(settings: Settings, port: int) -> Settings:
    """Settings whose WeChat API is the sandbox on `port` (scrm/sandbox.py)."""
    return settings.model_copy(update={"wechat": settings.wechat.model_copy(update={
        "api_base": f"http://127.0.0.1:{port}", "app_secret": "sandbox"})})


async def _serve(settings: Settings, ready_extra: str = "",
                 sandbox_port: int | None = None) -> None:
    """Run the web app until SIGINT/SIGTERM; print `ready` once it accepts requests.
    With `sandbox_port`, the WeChat API sandbox runs beside it (loopback only)."""
    from aiohttp import web

    from scrm.sandbox import KEEP_CALLS, WeChatSandbox
    from webhooks.app import create_app

    sandbox = None
    if sandbox_port is not None:
        try:
            sandbox = await WeChatSandbox(keep_calls=KEEP_CALLS).start(sandbox_port)
        except OSError as e:
            sys.exit(f"scrm: the WeChat API sandbox cannot listen on 127.0.0.1:{sandbox_port} "
                     f"({e.strerror}); pick another with --sandbox-port, or --no-sandbox")
        ready_extra += f", WeChat API sandbox {sandbox.url}"
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.app.host, settings.app.port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    base = f"http://127.0.0.1:{settings.app.port}"
    print(f"ready: WeChat webhook {base}/wechat, health {base}/healthz{ready_extra}",
          flush=True)
    try:
        await stop.wait()
    finally:
        print("stopping ...", file=sys.stderr, flush=True)
        await runner.cleanup()
        if sandbox is not None:
            await sandbox.close()


def cmd_serve(args: argparse.Namespace) -> None:
    from bot.logs import setup_logging

    settings = _settings(args)
    if args.port:
        settings = settings.model_copy(
            update={"app": settings.app.model_copy(update={"port": args.port})})
    setup_logging(settings.app.log_level)
    asyncio.run(_serve(settings))


def _check_free(port: int, what: str, hint: str, taken: tuple[int, ...]) -> None:
    """Exit with a clear message now, not after minutes of training, if `port` is no good."""
    problem = None
    if not 0 < port < 65536:
        problem = "not a port number"
    elif port in taken:
        problem = "the app or Rasa uses it"
    else:
        with socket.socket() as s:
            # As the server will bind (aiohttp sets SO_REUSEADDR): connections of the last
            # run still in TIME_WAIT must not make a free port look taken.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError as e:
                problem = e.strerror or str(e)
    if problem:
        sys.exit(f"scrm: {what} cannot listen on 127.0.0.1:{port} ({problem}); {hint}")


def cmd_up(args: argparse.Namespace) -> None:
    from bot.logs import setup_logging
    from scrm import rasa_proc

    settings = _settings(args)
    root = Path(args.root).resolve()
    port = args.port or settings.app.port
    rasa_port = args.rasa_port
    # Only our Rasa may call the action endpoint: a per-run secret unless one is configured.
    action_token = settings.rasa.action_token or secrets.token_urlsafe(24)
    settings = settings.model_copy(update={
        "app": settings.app.model_copy(update={"port": port}),
        "rasa": settings.rasa.model_copy(update={"url": f"http://127.0.0.1:{rasa_port}",
                                                 "action_token": action_token}),
    })
    sandbox_port = None
    official = WeChatSettings.model_fields["api_base"].default
    if not (settings.wechat.app_secret or args.no_sandbox
            or settings.wechat.api_base != official):
        # Without an AppSecret nothing can reach WeChat: show the sends in `scrm chat`.
        sandbox_port = args.sandbox_port or port + 1
        _check_free(sandbox_port, "the WeChat API sandbox",
                    "pick another with --sandbox-port P, or --no-sandbox", taken=(port, rasa_port))
        settings = _with_sandbox(settings, sandbox_port)
        print(f"no WECHAT_APP_SECRET: WeChat API calls go to the sandbox on 127.0.0.1:"
              f"{sandbox_port}; `scrm chat` shows what the bot sends", file=sys.stderr)
    setup_logging(settings.app.log_level)
    model = rasa_proc.train(root)
    rasa_log = rasa_proc.cache_dir() / "logs" / f"rasa-{rasa_port}.log"
    print(f"starting Rasa on 127.0.0.1:{rasa_port} (log: {rasa_log}) ...", file=sys.stderr)
    proc = rasa_proc.start_rasa(root, model, rasa_port,
                                f"http://127.0.0.1:{port}/rasa/webhook", rasa_log, action_token)
    try:
        if not rasa_proc.wait_http(f"http://127.0.0.1:{rasa_port}/status", 180, proc):
            tail = rasa_log.read_text(errors="replace")[-2000:] if rasa_log.exists() else ""
            sys.exit(f"scrm: Rasa did not start. Last lines of {rasa_log}:\n{tail}")
        asyncio.run(_serve(settings, f", Rasa http://127.0.0.1:{rasa_port}", sandbox_port))
    finally:
        rasa_proc.stop(proc)


def cmd_train(args: argparse.Namespace) -> None:
    from scrm import rasa_proc

    print(rasa_proc.train(Path(args.root).resolve()))


def _post(url: str, body: str) -> str:
    req = urllib.request.Request(url, data=body.encode(), method="POST",  # noqa: S310
                                 headers={"Content-Type": "application/xml"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - the user's server
        return str(resp.read().decode())


class Pushes(threading.Thread):
    """Shows what the bot sends the follower outside a reply (customer-service and template
    messages: broadcasts, late answers, a sister's invitation), read from the WeChat API
    sandbox that `scrm up` runs. Stops quietly when there is no sandbox."""

    def __init__(self, base: str, openid: str, lock: threading.Lock, prompt: str) -> None:
        super().__init__(daemon=True)
        self._url = f"{base}/sandbox/messages?" + urllib.parse.urlencode({"openid": openid})
        self._openid = openid
        self._lock = lock
        self._prompt = prompt  # redrawn after a push lands on an interactive prompt
        self._after = 0
        self.stop = threading.Event()
        self.ready = threading.Event()  # the sandbox answered: from now on, all is shown
        self.probed = threading.Event()  # the first poll is over, answered or not

    def _poll(self, after: int) -> tuple[list[str], int]:
        """(texts sent from call `after` on, the next call number); ValueError if the
        answer is not the sandbox's."""
        with urllib.request.urlopen(f"{self._url}&after={after}", timeout=5) as resp:  # noqa: S310 - loopback sandbox
            data = json.loads(resp.read())
        try:
            return [str(m["text"]) for m in data["messages"]], int(data["next"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a sandbox answer: {e}") from None

    def _show(self) -> None:
        try:
            texts, after = self._poll(self._after)
        except (OSError, ValueError):
            return
        # A restarted sandbox numbers from 0 again: read it from the start.
        self._after = 0 if after < self._after else after
        with self._lock:
            for text in texts:
                print(("\r\033[K" if self._prompt else "") + "bot (客服消息)>",
                      text.replace("\n", "\n     "), flush=True)
            if texts and self._prompt:
                print(self._prompt, end="", flush=True)

    def run(self) -> None:
        try:
            self._after = self._poll(1 << 62)[1]  # only what is sent from now on
        except (OSError, ValueError):
            return  # no sandbox: a real deployment, or `scrm up --no-sandbox`
        finally:
            self.probed.set()
        self.ready.set()
        while not self.stop.wait(0.5):
            self._show()

    def tell(self, kind: str) -> None:
        """Tell the sandbox what the follower just did ("message", "event", "unfollow"),
        as WeChat sees it pass: her customer-service budget opens (or closes) there."""
        if not self.ready.is_set():
            return
        base = self._url.split("/sandbox/", 1)[0]
        req = urllib.request.Request(  # noqa: S310 - loopback sandbox
            f"{base}/sandbox/inbound", method="POST",
            data=json.dumps({"openid": self._openid, "kind": kind}).encode(),
            headers={"Content-Type": "application/json"})
        with contextlib.suppress(OSError):
            urllib.request.urlopen(req, timeout=5).close()  # noqa: S310

    def finish(self) -> None:
        """Stop, showing what arrived since the last poll."""
        self.stop.set()
        self.join(6)
        if self.ready.is_set():
            self._show()


def _sandbox_of(url: str) -> str:
    port = urllib.parse.urlsplit(url).port or 80
    return f"http://127.0.0.1:{port + 1}"


def cmd_chat(args: argparse.Namespace) -> None:
    from scrm.follower import Follower, describe

    settings = _settings(args)
    url = args.url or f"http://127.0.0.1:{settings.app.port}"
    follower = Follower(token=settings.wechat.token, openid=args.openid,
                        app_id=settings.wechat.app_id, aes_key=settings.wechat.aes_key)
    print(f"Chatting as follower {args.openid} with {url}/wechat "
          "(:follow, :unfollow, :click KEY, :image, :quit)")
    lock = threading.Lock()
    prompt = "you> " if sys.stdin.isatty() else ""
    pushes = Pushes(args.sandbox or _sandbox_of(url), args.openid, lock, prompt)
    pushes.start()
    pushes.probed.wait(6)
    if pushes.ready.is_set():
        print("(WeChat API sandbox connected: what the bot sends you shows as "
              "'bot (客服消息)>')", flush=True)

    def send(xml: str, kind: str = "message") -> None:
        pushes.tell(kind)  # WeChat sees her message before the app does
        query, body = follower.request(xml)
        try:
            answer = _post(f"{url}/wechat?{query}", body)
        except urllib.error.HTTPError as e:
            print(f"!! HTTP {e.code}: {e.read().decode(errors='replace')[:200]}")
            return
        except urllib.error.URLError as e:
            print(f"!! cannot reach {url}: {e.reason} (is `scrm up` running?)")
            return
        with lock:
            print("bot>", describe(follower.read_reply(answer)).replace("\n", "\n     "),
                  flush=True)

    for line in sys.stdin if not prompt else iter(lambda: input(prompt), None):
        line = line.strip()
        if not line:
            continue
        if not sys.stdin.isatty():
            with lock:  # piped input: show the conversation as it would look
                print("you>", line, flush=True)
        if line == ":quit":
            break
        if line == ":follow":
            send(follower.event("subscribe"), "event")
        elif line == ":unfollow":
            send(follower.event("unsubscribe"), "unfollow")
        elif line.startswith(":click "):
            send(follower.event("CLICK", line.split(maxsplit=1)[1]), "event")
        elif line == ":image":
            send(follower.xml("image", PicUrl="http://example.invalid/p.jpg", MediaId="m1"))
        else:
            send(follower.text(line))
    if pushes.ready.is_set() and not sys.stdin.isatty():
        # Piped input ends at once; what the bot sends after its replies is still coming.
        time.sleep(max(0.0, args.wait))
    pushes.finish()


def _admin(settings: Settings, url: str | None, method: str, path: str,
           timeout: float = 30, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """Call the running server's admin API: (HTTP status, JSON body). Exits if unreachable."""
    base = url or f"http://127.0.0.1:{settings.app.port}"
    if not settings.admin.token:
        sys.exit("scrm: SCRM_ADMIN_TOKEN is not set; the admin API refuses every call")
    data = json.dumps(body, ensure_ascii=False).encode() if body is not None else (
        b"" if method == "POST" else None)
    req = urllib.request.Request(  # noqa: S310 - the operator's own server
        f"{base}{path}", data=data, method=method,
        headers={"Authorization": f"Bearer {settings.admin.token}",
                 "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"error": raw.decode(errors="replace")[:200] or f"HTTP {e.code}"}
    except urllib.error.URLError as e:
        sys.exit(f"scrm: cannot reach {base}: {e.reason} (is the server running?)")


def cmd_member_export(args: argparse.Namespace) -> None:
    settings = _settings(args)
    who = urllib.parse.quote(args.who, safe="")
    status, data = _admin(settings, args.url, "GET", f"/admin/api/members/{who}/export")
    if status != 200:
        sys.exit(f"scrm: {data.get('error', f'HTTP {status}')}")
    text = json.dumps(data, ensure_ascii=False, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.out}: {len(data.get('messages', []))} messages, "
              f"{len(data.get('records in every collection', {}))} collections "
              "(unmasked: her data, for her; keep it safe)", file=sys.stderr)
    else:
        print(text)


def cmd_member_erase(args: argparse.Namespace) -> None:
    settings = _settings(args)
    who = urllib.parse.quote(args.who, safe="")
    status, data = _admin(settings, args.url, "POST", f"/admin/api/members/{who}/erase",
                          body={"reason": args.reason, "now": args.now})
    if status != 200:
        sys.exit(f"scrm: {data.get('error', f'HTTP {status}')}")
    if "due" in data:
        print(f"erasure scheduled for {data['due']} (cooling-off; the member can still "
              "send 取消注销); --now erases at once")
    else:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(data["erased"].items()) if v)
        print(f"erased: {parts}")


def cmd_retention(args: argparse.Namespace) -> None:
    settings = _settings(args)
    path = "/admin/api/retention" + ("?dry_run=1" if args.dry_run else "")
    status, data = _admin(settings, args.url, "POST", path, timeout=600)
    if status != 200:
        sys.exit(f"scrm: {data.get('error', f'HTTP {status}')}")
    verb = "would strip" if args.dry_run else "stripped"
    gone = "would erase" if args.dry_run else "erased"
    print(f"{verb} the text of {data['texts']} old interactions; {gone} {data['erased']} "
          "followers who unfollowed and never joined")


def printable(text: str) -> str:
    """Text as a terminal may show it: control, bidi and other format characters from a
    member's message (which could clear the screen or reorder what staff read) escaped."""
    return "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs")
                   and ch not in "\t" else ch for ch in text)


def cmd_profile_show(args: argparse.Namespace) -> None:
    from bot.privacy import mask_phones

    settings = _settings(args)
    query = urllib.parse.urlencode({"openid": args.openid, "channel": args.channel,
                                    "limit": args.limit})
    status, data = _admin(settings, args.url, "GET", f"/admin/api/profiles?{query}")
    if status != 200:
        sys.exit(f"scrm: {data.get('error', f'HTTP {status}')}")
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    p = data["profile"]
    print(f"profile {p['_id']}")
    for ident in p["identities"]:
        print(printable(f"  identity   {ident['channel']}:{ident['app_id']}:{ident['openid']}"))
    print(f"  follow     {p['follow']['state']}")
    print(f"  first seen {p['first_seen']}\n  last seen  {p['last_seen']}")
    print(f"  counters   {json.dumps(p.get('counters', {}))}")
    print(printable(f"  tags       {', '.join(p.get('tags', [])) or '-'}"))
    print(f"latest {len(data['interactions'])} interactions:")
    for i in data["interactions"]:
        arrow = "<-" if i["direction"] == "in" else "->"
        detail = i.get("intent") or ""
        text = mask_phones((i.get("text") or "").replace("\n", " "))[:60]
        print(printable(f"  {i['ts'][:19]} {arrow} {i['type']:<14} {i['outcome']:<16} "
                        f"{detail:<10} {text}"))


def _check_settings(args: argparse.Namespace) -> Settings:
    """config.yml for checking flows: secrets are not needed to read the points rules."""
    env = dict(os.environ)
    for name in ("WECHAT_TOKEN", "WECHAT_APP_ID"):
        env.setdefault(name, "check-only")
    try:
        return load_settings(args.config, env)
    except ConfigError as e:
        sys.exit(f"scrm: {e}")


def _check_flows(args: argparse.Namespace) -> bool:
    from bot.core import flow_registry
    from bot.flow_engine.loader import FlowsInvalid
    from scrm import rasa_proc

    settings = _check_settings(args)
    if args.dir:
        settings = settings.model_copy(update={"app": settings.app.model_copy(
            update={"flows_dir": args.dir})})
    try:
        registry = flow_registry(settings)
    except FlowsInvalid as e:
        for err in e.errors:
            print(err)
        print(f"{len(e.errors)} problem(s); nothing was changed.")
        return False
    conflicts = rasa_proc.faq_conflicts(Path(args.root).resolve(),
                                        list(registry.knowledge.entries.values()))
    if conflicts:
        for problem in conflicts:
            print(problem)
        print(f"{len(conflicts)} problem(s); nothing was changed.")
        return False
    current = registry.current
    print(f"ok: {len(current.flows)} flows, {len(current.slots)} slots, "
          f"{len(registry.knowledge.entries)} common questions, version {current.version}")
    return True


def cmd_flows_check(args: argparse.Namespace) -> None:
    sys.exit(0 if _check_flows(args) else 1)


def cmd_flows_reload(args: argparse.Namespace) -> None:
    """Check, retrain only if the NLU data changed, then swap the flows in the server."""
    from scrm import rasa_proc

    if not _check_flows(args):
        sys.exit(1)
    settings = _settings(args)
    model = rasa_proc.train(Path(args.root).resolve())
    rasa_url = settings.rasa.url.rstrip("/")
    try:
        with urllib.request.urlopen(f"{rasa_url}/status", timeout=10) as resp:  # noqa: S310
            loaded = json.loads(resp.read()).get("model_file", "")
        if Path(loaded).name != model.name:
            print(f"NLU data changed: loading {model.name} into Rasa ...")
            req = urllib.request.Request(  # noqa: S310 - the operator's own Rasa
                f"{rasa_url}/model", data=json.dumps({"model_file": str(model)}).encode(),
                method="PUT", headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=300).close()  # noqa: S310
        else:
            print("NLU data unchanged: no retraining, the running model stays.")
    except urllib.error.URLError as e:
        sys.exit(f"scrm: cannot reach Rasa at {rasa_url}: {e}")
    status, data = _admin(settings, args.url, "POST", "/admin/api/flows/reload")
    if status != 200:
        for err in data.get("errors", []):
            print(err)
        sys.exit(f"scrm: the server refused the flows (HTTP {status}); it keeps version "
                 f"{data.get('version')}")
    print(f"reloaded: version {data['previous']} -> {data['version']}")


def cmd_qr(args: argparse.Namespace) -> None:
    """A member's referral QR code (`scrm qr OPENID`), or with --campaign the campaign code
    of a member, KOL or member of staff (`--for` a member id, openid or mobile): each made
    once through WeChat, then the same one."""
    settings = _settings(args)
    who = args.who or args.openid
    if not who:
        sys.exit("scrm: name the member: scrm qr OPENID, or scrm qr --for WHO [--campaign NAME]")
    if args.campaign is not None and not args.campaign.strip():
        sys.exit("scrm: --campaign needs a name")
    params = {"for": who} if args.who else {"openid": who}
    if args.campaign is not None:
        params["campaign"] = args.campaign.strip()
    query = urllib.parse.urlencode(params)
    status, qr = _admin(settings, args.url, "POST", f"/admin/api/qrcode?{query}")
    if status != 200:
        sys.exit(f"scrm: {qr.get('error', f'HTTP {status}')}")
    lines = [f"scene {qr['scene']}"] + ([f"campaign {qr['campaign']}"] if qr.get("campaign")
                                        else [])
    print("\n".join([*lines, f"image {qr['image']}", f"url   {qr['url']}"]))


def cmd_points_check(args: argparse.Namespace) -> None:
    """Prove every balance equals its ledger sum (exit 1 if not; --repair fixes them)."""
    settings = _settings(args)
    query = "?repair=1" if args.repair else ""
    status, data = _admin(settings, args.url, "POST", f"/admin/api/points/check{query}",
                          timeout=120)
    if status != 200:
        sys.exit(f"scrm: {data.get('error', f'HTTP {status}')}")
    for m in data["mismatches"]:
        print(f"{m['profile_id']}: balance {m['balance']} but ledger sum {m['ledger_sum']}; "
              f"earned {m['earned']} but ledger {m['ledger_earned']}")
    if data["ok"]:
        print("ok: every balance equals its ledger sum")
    elif args.repair:
        print(f"repaired {data['repaired']} member(s)")
    sys.exit(0 if data["ok"] or args.repair else 1)


def main(argv: list[str] | None = None) -> None:
    # Dev secrets written by `make run`; variables already set win over the file.
    load_dotenv(os.environ.get("SCRM_ENV_FILE", Path.cwd() / ".env"))
    parser = argparse.ArgumentParser(prog="scrm", description=__doc__)
    parser.add_argument("--config", default=os.environ.get("SCRM_CONFIG", "config.yml"))
    parser.add_argument("--root", default=".", help="project folder with nlu/ and flows/")
    sub = parser.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", help="Rasa + web app in the foreground; Ctrl-C stops both")
    up.add_argument("--port", type=int, default=None)
    up.add_argument("--rasa-port", type=int, default=5005)
    up.add_argument("--sandbox-port", type=int, default=None,
                    help="WeChat API sandbox port (default: the app's port + 1)")
    up.add_argument("--no-sandbox", action="store_true",
                    help="no sandbox even without WECHAT_APP_SECRET (sends then fail); "
                         "a WECHAT_API_BASE of your own also turns it off")
    up.set_defaults(func=cmd_up)

    serve = sub.add_parser("serve", help="the web app alone, against RASA_URL")
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("train", help="train the Rasa model (cached by data hash)").set_defaults(
        func=cmd_train)

    chat = sub.add_parser("chat", help="talk to the running server as a WeChat follower")
    chat.add_argument("--url", default=None)
    chat.add_argument("--openid", default="o_demo_follower")
    chat.add_argument("--sandbox", default=None,
                      help="WeChat API sandbox whose sends to you are shown (default: the "
                           "server's port + 1, as `scrm up` starts it)")
    chat.add_argument("--wait", type=float, default=3.0,
                      help="with piped input: seconds to wait for pushed messages at the end")
    chat.set_defaults(func=cmd_chat)

    profile = sub.add_parser("profile", help="member profiles")
    psub = profile.add_subparsers(dest="pcmd", required=True)
    show = psub.add_parser("show", help="a profile and its latest interactions")
    show.add_argument("openid")
    show.add_argument("--channel", default="wechat")
    show.add_argument("--limit", type=int, default=20)
    show.add_argument("--json", action="store_true")
    show.add_argument("--url", default=None)
    show.set_defaults(func=cmd_profile_show)

    flows = sub.add_parser("flows", help="check and reload the flows in flows/")
    fsub = flows.add_subparsers(dest="fcmd", required=True)
    check = fsub.add_parser("check", help="validate every flow file; exit 1 on problems")
    check.add_argument("--dir", default=None)
    check.set_defaults(func=cmd_flows_check)
    reload_ = fsub.add_parser("reload", help="check, retrain if NLU changed, swap in server")
    reload_.add_argument("--dir", default=None)
    reload_.add_argument("--url", default=None)
    reload_.set_defaults(func=cmd_flows_reload)

    qr = sub.add_parser("qr", help="a member's referral QR code, or a campaign code")
    qr.add_argument("openid", nargs="?", default=None, help="her openid (referral code)")
    qr.add_argument("--for", dest="who", default=None,
                    help="member id (M…), openid or mobile of the code's owner")
    qr.add_argument("--campaign", default=None,
                    help="a campaign code: 1-24 letters, digits, - or _")
    qr.add_argument("--url", default=None)
    qr.set_defaults(func=cmd_qr)

    points = sub.add_parser("points", help="the points ledger")
    ptsub = points.add_subparsers(dest="ptcmd", required=True)
    pcheck = ptsub.add_parser("check", help="balances against ledger sums; exit 1 if any differ")
    pcheck.add_argument("--repair", action="store_true", help="set balances to ledger sums")
    pcheck.add_argument("--url", default=None)
    pcheck.set_defaults(func=cmd_points_check)

    member = sub.add_parser("member", help="a member's data: export, erasure (PIPL)")
    msub = member.add_subparsers(dest="mcmd", required=True)
    mexport = msub.add_parser("export", help="everything about one member, as JSON (audited)")
    mexport.add_argument("who", help="openid, member id (M…), mobile or profile id")
    mexport.add_argument("--out", default=None, help="write to this file (UTF-8)")
    mexport.add_argument("--url", default=None)
    mexport.set_defaults(func=cmd_member_export)
    merase = msub.add_parser("erase", help="erase a member after the cooling-off period")
    merase.add_argument("who", help="openid, member id (M…), mobile or profile id")
    merase.add_argument("--reason", required=True, help="why (kept on the tombstone)")
    merase.add_argument("--now", action="store_true", help="no cooling-off: erase at once")
    merase.add_argument("--url", default=None)
    merase.set_defaults(func=cmd_member_erase)

    retention = sub.add_parser("retention", help="strip old texts, erase long-gone followers")
    retention.add_argument("--dry-run", action="store_true", help="only say what it would do")
    retention.add_argument("--url", default=None)
    retention.set_defaults(func=cmd_retention)

    from scrm import data_export, data_import

    data_import.add_commands(sub)
    data_export.add_commands(sub)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
