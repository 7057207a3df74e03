"""Rasa as a separate process: its venv, model training cached by data hash, the server.

Rasa 3.6 cannot share the app's venv (conflicting pins), so it is only ever run as a
subprocess from its own venv, built by scripts/rasa-venv.sh.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml

from bot.knowledge.base import Entry
from bot.knowledge.text import normalise

RASA_ENV = {
    "RASA_TELEMETRY_ENABLED": "false",  # telemetry would try to reach the internet
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONWARNINGS": "ignore",
}


def cache_dir() -> Path:
    path = Path(os.environ.get("SCRM_CACHE", Path.home() / ".cache" / "scrm"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def rasa_venv(root: Path) -> Path:
    """The Rasa venv: $SCRM_RASA_VENV, or built/reused by scripts/rasa-venv.sh."""
    given = os.environ.get("SCRM_RASA_VENV")
    if given:
        return Path(given)
    out = subprocess.run(  # noqa: S603 - our own script, bash from PATH
        ["bash", str(root / "scripts" / "rasa-venv.sh")], check=True,  # noqa: S607
        stdout=subprocess.PIPE, text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


# Intents the app sends for channel events ("/subscribe"); they have no training examples.
SYSTEM_INTENTS = ("subscribe", "menu", "scan")
GENERATOR = "3"  # bump when the generated domain/rules/data change shape
FAQ_INTENT = "faq"  # trained from the common questions' own variants (flows/knowledge/)


def knowledge_files(root: Path) -> list[Path]:
    return sorted((root / "flows" / "knowledge").glob("*.yml"))


def faq_examples(root: Path) -> list[str]:
    """Every way of asking a common question: the `faq` intent's training examples, so
    Rasa tells a question for the knowledge base from a journey; which entry answers it
    is the app's retrieval (bot/knowledge/)."""
    out: list[str] = []
    for path in knowledge_files(root):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for entry in data.get("entries") or []:
            for question in entry.get("questions") or []:
                text = str(question).strip()
                if text and text not in out:
                    out.append(text)
    return out


def write_faq_data(root: Path, work: Path) -> Path | None:
    """The `faq` intent's training data as an NLU file in `work` (None without questions):
    what the model is trained from and what bench/nlu_eval.py evaluates, alike."""
    questions = faq_examples(root)
    if not questions:
        return None
    faq = work / "faq.yml"
    faq.write_text(yaml.safe_dump({"version": "3.1", "nlu": [{
        "intent": FAQ_INTENT, "examples": "".join(f"- {q}\n" for q in questions)}]},
        allow_unicode=True), encoding="utf-8")
    return faq


def faq_conflicts(root: Path, entries: Sequence[Entry]) -> list[str]:
    """Common questions that are also training examples of an intent in nlu/data, as
    `file:line: problem`. Rasa would be taught the same words as `faq` and as that intent
    and learn neither well; a question belongs in one place (compared as the knowledge
    base compares questions: punctuation, particles and case aside)."""
    examples: dict[str, tuple[str, Path]] = {}
    for intent, text, path in nlu_examples(root):
        examples.setdefault(normalise(text), (intent, path))
    problems = []
    for entry in entries:
        for question in entry.questions:
            hit = examples.get(normalise(question))
            if hit is not None:
                problems.append(
                    f"{entry.file}:{entry.line}: entry {entry.id!r}: question {question!r} "
                    f"is also an example of intent {hit[0]} in {hit[1].relative_to(root)}; "
                    "keep it in one place (a request to do something belongs to the "
                    "intent, a question about how it works to the entry)")
    return problems


def data_hash(root: Path) -> str:
    """Hash of everything a model is trained from: nlu/, the common questions' variants,
    the Rasa lock, the generator.

    The rest of flows/ is not part of it: flows are interpreted by the app, so editing one
    needs no new model; only NLU data and common questions do.
    """
    h = hashlib.sha256(GENERATOR.encode())
    files = [*sorted((root / "nlu").rglob("*")), *knowledge_files(root),
             root / "requirements" / "rasa-lock.txt"]
    for f in files:
        if f.is_file():
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def nlu_examples(root: Path) -> Iterator[tuple[str, str, Path]]:
    """(intent, example, file) for every training example in nlu/data, in file order."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the tests read it often
    for path in sorted((root / "nlu" / "data").glob("*.yml")):
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - safe
        for item in (data or {}).get("nlu", []):
            name = item.get("intent")
            for line in str(item.get("examples") or "").splitlines():
                text = line.strip()
                if name and text.startswith("- "):
                    yield str(name), text[2:].strip(), path


def intents(root: Path) -> list[str]:
    """Every intent with training examples in nlu/data, in file order."""
    found: list[str] = []
    for name, _, _ in nlu_examples(root):
        if name not in found:
            found.append(name)
    if faq_examples(root) and FAQ_INTENT not in found:
        found.append(FAQ_INTENT)
    return found


def write_domain(root: Path, work: Path) -> None:
    """The domain and rules: every intent (and nlu_fallback) goes to action_flow.

    Generated, not written by hand, so a new intent in nlu/data is routed the moment it
    is trained, and the dialogue itself lives in flows/.
    """
    names = [*intents(root), *SYSTEM_INTENTS]
    domain = {"version": "3.1", "intents": names, "actions": ["action_flow"],
              "session_config": {"session_expiration_time": 60,
                                 "carry_over_slots_to_new_session": True}}
    rules = {"version": "3.1", "rules": [
        {"rule": f"{name} goes to the flows", "steps": [{"intent": name},
                                                         {"action": "action_flow"}]}
        for name in [*names, "nlu_fallback"]]}
    (work / "domain.yml").write_text(yaml.safe_dump(domain, allow_unicode=True))
    (work / "rules.yml").write_text(yaml.safe_dump(rules, allow_unicode=True))


def train(root: Path, quiet: bool = False) -> Path:
    """The model for the current data, trained only if not cached already."""
    model = cache_dir() / "models" / f"scrm-{data_hash(root)}.tar.gz"
    if model.exists():
        return model
    venv = rasa_venv(root)
    model.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="scrm-train-") as work:
        print(f"training the Rasa model ({model.name}) ...", file=sys.stderr)
        started = time.monotonic()
        # cwd is a scratch dir: Rasa writes its .rasa/ cache there, not into the checkout.
        write_domain(root, Path(work))
        data = [str(root / "nlu" / "data"), str(Path(work) / "rules.yml")]
        faq = write_faq_data(root, Path(work))
        if faq is not None:
            data.append(str(faq))
        subprocess.run(  # noqa: S603
            [str(venv / "bin" / "rasa"), "train", "--config", str(root / "nlu" / "config.yml"),
             "--domain", str(Path(work) / "domain.yml"), "--data", *data,
             "--out", work, "--fixed-model-name", "model"],
            check=True, cwd=work, env={**os.environ, **RASA_ENV},
            stdout=subprocess.DEVNULL if quiet else sys.stderr,
            stderr=subprocess.DEVNULL if quiet else sys.stderr,
        )
        shutil.move(str(Path(work) / "model.tar.gz"), model)
        print(f"trained in {time.monotonic() - started:.0f} s: {model}", file=sys.stderr)
    return model


def start_rasa(root: Path, model: Path, port: int, action_url: str, log_path: Path,
               action_token: str | None = None) -> subprocess.Popen[bytes]:
    """Start `rasa run --enable-api` on 127.0.0.1:port; returns at once (see wait_http)."""
    venv = rasa_venv(root)
    # One work folder per port, rewritten each start: nothing piles up in /tmp.
    work = cache_dir() / "run" / f"rasa-{port}"
    work.mkdir(parents=True, exist_ok=True)
    token = f"  token: {action_token}\n" if action_token else ""
    (work / "endpoints.yml").write_text(f"action_endpoint:\n  url: {action_url}\n{token}")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(  # noqa: S603
            [str(venv / "bin" / "rasa"), "run", "--enable-api", "-m", str(model),
             "-i", "127.0.0.1", "-p", str(port), "--endpoints", str(work / "endpoints.yml")],
            cwd=work, env={**os.environ, **RASA_ENV},
            stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop Rasa ourselves
        )


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Poll `url` until it answers 200; False on timeout or if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return False


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
