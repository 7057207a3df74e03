#!/usr/bin/env python
"""FAQ retrieval, measured: leave-one-out over question variants, out-of-domain questions,
the confidence threshold, and the lookup time, for the starter set in flows/knowledge/ and
for a synthetic 500-entry set (the starter entries among 460 generated look-alikes).

    .venv/bin/python bench/faq_eval.py            # both sets, a Markdown report on stdout
    .venv/bin/python bench/faq_eval.py --json     # the same figures as JSON

Leave-one-out: in round r, variant r of every entry that has more than r variants (and at
least 2) is taken out, the index is built from the rest and the held-out variant is asked;
so every variant is asked once, against an index that never saw it. The threshold is chosen
on the starter set: the one that maximises (held-out answered right) − (held-out answered
wrong) − (out-of-domain answered), each as a share of its group.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.knowledge.answers import DEFAULT_THRESHOLD  # noqa: E402
from bot.knowledge.base import Entry, KnowledgeBase, load_knowledge  # noqa: E402

# Questions a mother may send that no entry answers (small talk, other topics, other
# services, near misses): the threshold must keep these out.
OUT_OF_DOMAIN = [
    "今天天气怎么样", "你是机器人吗", "讲个笑话吧", "我想买房子", "推荐一部好看的电影",
    "附近有什么好吃的", "明天会下雨吗", "我老公不做家务怎么办", "你们公司在哪里",
    "帮我写一首诗", "股票怎么买", "手机没电了", "周末去哪里玩", "我好无聊",
    "你叫什么名字", "谢谢你", "好的知道了", "哈哈哈哈", "在吗", "早上好",
    "我家狗狗不吃饭", "电脑开不了机", "怎么减肥最快", "高考志愿怎么填", "今天几号",
    "婆婆总是管太多", "工作压力好大", "红烧肉怎么做", "学英语有什么方法", "我要投诉快递员",
    "what's the weather today", "tell me a joke", "how do I fix my laptop",
    "where is the nearest restaurant", "who are you", "good morning",
    "我想换个工作", "车子怎么保养", "猫咪打了疫苗还要驱虫吗", "给老人买什么保险好",
]

SUBJECTS = [
    "宝宝湿疹", "孕期便秘", "辅食过敏", "宝宝咳嗽", "孕期腿抽筋", "宝宝腹泻", "孕期贫血",
    "宝宝鼻塞", "产后脱发", "宝宝红屁股", "孕期水肿", "宝宝厌奶", "孕期牙龈出血",
    "宝宝流鼻血", "产后腰疼", "宝宝长痱子", "孕期胃灼热", "宝宝挑食", "孕期尿频",
    "宝宝磨牙", "产后抑郁", "宝宝口水疹", "孕期妊娠纹", "宝宝晒伤", "孕期头痛",
    "宝宝枕秃", "产后漏尿", "宝宝打呼噜", "孕期皮肤痒", "宝宝手足口", "孕期鼻出血",
    "宝宝肠绞痛", "断奶", "宝宝学走路", "孕期感冒", "宝宝蚊子咬", "宝宝指甲",
    "宝宝肚脐", "产后便秘", "宝宝吃手", "宝宝认生", "宝宝说话晚", "孕期失眠",
    "宝宝体重不长", "宝宝头型", "孕期痔疮", "宝宝眼屎多", "宝宝鹅口疮", "孕期坐骨神经痛",
    "宝宝掉头发", "宝宝夜惊", "宝宝呛奶", "孕期胸闷", "宝宝出汗多", "宝宝O型腿",
    "宝宝斜视", "宝宝脐疝", "产后乳头皲裂", "宝宝耳屎", "宝宝舌系带",
]
ASPECTS: dict[str, list[str]] = {
    "what_to_do": ["{s}怎么办", "{s}了该如何处理", "遇到{s}咋办", "{s}怎么护理比较好",
                   "家里宝宝{s}要怎么处理"],
    "is_normal": ["{s}正常吗", "{s}要紧吗", "{s}是不是有问题", "{s}需要担心吗",
                  "{s}算正常现象吗"],
    "see_doctor": ["{s}要去医院吗", "{s}什么情况要看医生", "{s}需不需要就医",
                   "{s}挂什么科", "{s}严重到什么程度要去医院"],
    "medicine": ["{s}能吃药吗", "{s}用什么药", "{s}可以自己买药吗", "{s}有没有药膏能用",
                 "{s}吃什么药好得快"],
    "how_long": ["{s}多久能好", "{s}一般持续多长时间", "{s}几天会自己好", "{s}要多久恢复",
                 "{s}什么时候能好转"],
    "prevent": ["怎么预防{s}", "{s}能预防吗", "如何避免{s}", "平时怎么做能不{s}",
                "预防{s}要注意什么"],
    "food": ["{s}吃什么好", "{s}饮食要注意什么", "{s}有什么不能吃的", "{s}能吃水果吗",
             "{s}食疗有用吗"],
    "cause": ["为什么会{s}", "{s}是什么原因", "{s}怎么引起的", "什么原因导致{s}",
              "{s}的原因有哪些"],
}
FILLERS = ["", "", "请问", "姐妹们", "想问一下", ""]
ENDINGS = ["", "", "呀", "呢", "啊", "？", "吗"]


def synthetic(n: int, rng: random.Random) -> list[Entry]:
    pairs = [(s, a) for s in SUBJECTS for a in ASPECTS]
    rng.shuffle(pairs)
    out = []
    for k, (subject, aspect) in enumerate(pairs[:n]):
        questions = tuple(rng.choice(FILLERS) + t.format(s=subject) + rng.choice(ENDINGS)
                          for t in ASPECTS[aspect])
        out.append(Entry(id=f"syn_{k:03d}", category="synthetic", questions=questions,
                         answer={"zh": "-", "en": "-"}, medical=False))
    return out


@dataclass
class Asked:
    text: str
    expected: str | None  # None: out of domain
    got: str | None
    score: float
    seconds: float


def ask(base: KnowledgeBase, text: str, expected: str | None) -> Asked:
    started = time.perf_counter()
    hits = base.search(text, 1)
    seconds = time.perf_counter() - started
    return Asked(text, expected, hits[0].entry if hits else None, hits[0].score if hits else 0.0,
                 seconds)


def leave_one_out(entries: list[Entry], rounds: int | None = None) -> list[Asked]:
    out: list[Asked] = []
    most = max(len(e.questions) for e in entries)
    for r in range(most if rounds is None else rounds):
        held: dict[str, str] = {}
        kept: list[Entry] = []
        for e in entries:
            if len(e.questions) > r and len(e.questions) >= 2:
                held[e.id] = e.questions[r]
                kept.append(replace(e, questions=e.questions[:r] + e.questions[r + 1:]))
            else:
                kept.append(e)
        base = KnowledgeBase.of(kept)
        out += [ask(base, q, entry) for entry, q in held.items()]
    return out


def shares(asked: list[Asked], ood: list[Asked], t: float) -> dict[str, float]:
    right = sum(a.got == a.expected and a.score >= t for a in asked) / len(asked)
    wrong = sum(a.got != a.expected and a.score >= t for a in asked) / len(asked)
    below = sum(a.score < t for a in asked) / len(asked)
    ood_in = sum(a.score >= t for a in ood) / len(ood)
    return {"right": right, "wrong": wrong, "below": below, "ood_answered": ood_in}


def choose_threshold(asked: list[Asked], ood: list[Asked]) -> float:
    grid = [i / 100 for i in range(5, 81)]

    def value(t: float) -> float:
        s = shares(asked, ood, t)
        return s["right"] - s["wrong"] - s["ood_answered"]
    best = max(value(t) for t in grid)
    return min(t for t in grid if value(t) == best)  # the lowest of the best: answers more


def report(name: str, entries: list[Entry], asked: list[Asked], ood: list[Asked],
           t: float, timing: list[float]) -> dict[str, object]:
    top1 = sum(a.got == a.expected for a in asked) / len(asked)
    s = shares(asked, ood, t)
    return {
        "set": name, "entries": len(entries),
        "variants": sum(len(e.questions) for e in entries), "held_out": len(asked),
        "top1": round(top1, 3), "threshold": t,
        "right_above": round(s["right"], 3), "wrong_above": round(s["wrong"], 3),
        "below_threshold": sum(a.score < t for a in asked),
        "below_share": round(s["below"], 3), "ood": len(ood),
        "ood_answered": sum(a.score >= t for a in ood),
        "lookup_mean_us": round(statistics.fmean(timing) * 1e6, 1),
        "lookup_p95_us": round(sorted(timing)[int(len(timing) * 0.95)] * 1e6, 1),
    }


def timings(base: KnowledgeBase, questions: list[str], repeat: int = 5) -> list[float]:
    out = []
    for _ in range(repeat):
        out += [ask(base, q, None).seconds for q in questions]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", default=str(ROOT / "flows"))
    parser.add_argument("--size", type=int, default=500, help="entries in the synthetic set")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    starter = list(load_knowledge(args.flows).entries.values())
    asked = leave_one_out(starter)
    full = KnowledgeBase.of(starter)
    ood = [ask(full, q, None) for q in OUT_OF_DOMAIN]
    chosen = choose_threshold(asked, ood)
    rows = []
    for t, label in ((chosen, "starter (chosen threshold)"),
                     (DEFAULT_THRESHOLD, "starter (DEFAULT_THRESHOLD)")):
        rows.append(report(label, starter, asked, ood, t,
                           timings(full, [*(q for e in starter for q in e.questions),
                                          *OUT_OF_DOMAIN])))

    big = starter + synthetic(args.size - len(starter), rng)
    big_asked = leave_one_out(big, rounds=1)
    big_base = KnowledgeBase.of(big)
    big_ood = [ask(big_base, q, None) for q in OUT_OF_DOMAIN]
    big_time = timings(big_base, [*(q for e in big for q in e.questions[:2]), *OUT_OF_DOMAIN])
    rows.append(report(f"synthetic {len(big)}", big, big_asked, big_ood, DEFAULT_THRESHOLD,
                       big_time))
    real = [a for a in big_asked if not str(a.expected).startswith("syn_")]
    rows.append(report(f"starter inside {len(big)}", starter, real, big_ood,
                       DEFAULT_THRESHOLD, big_time))

    if args.json:
        print(json.dumps({"chosen_threshold": chosen, "rows": rows}, ensure_ascii=False,
                         indent=2))
        return
    cols = ["set", "entries", "variants", "held_out", "top1", "threshold", "right_above",
            "wrong_above", "below_threshold", "ood_answered", "lookup_mean_us", "lookup_p95_us"]
    print(f"chosen threshold (starter set): {chosen}; DEFAULT_THRESHOLD: {DEFAULT_THRESHOLD}\n")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row[c]) if c != "ood_answered"
                                else f"{row[c]}/{row['ood']}" for c in cols) + " |")
    misses = [a for a in asked if a.got != a.expected]
    if misses:
        print(f"\nstarter set, top-1 misses ({len(misses)}):")
        for a in misses:
            print(f"  {a.text!r}: {a.expected} -> {a.got} ({a.score:.2f})")
    print("\nout of domain, answered at the chosen threshold:")
    for a in sorted(ood, key=lambda a: -a.score):
        if a.score >= chosen:
            print(f"  {a.text!r} -> {a.got} ({a.score:.2f})")


if __name__ == "__main__":
    main()
