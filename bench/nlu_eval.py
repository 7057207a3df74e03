#!/usr/bin/env python
"""NLU quality: Rasa's k-fold cross-validation, and the production model on a held-out set.

    .venv/bin/python bench/nlu_eval.py               # both (5 folds, seed 7; ~10-20 min)
    .venv/bin/python bench/nlu_eval.py --no-cv       # held-out set only (~1-2 min)
    .venv/bin/python bench/nlu_eval.py --folds 3     # quicker, noisier
    .venv/bin/python bench/nlu_eval.py --seed 1      # another split of the same data

Cross-validation runs `rasa test nlu --cross-validation --folds N` in the Rasa venv
(scrm.rasa_proc.rasa_venv, built by scripts/rasa-venv.sh), in a scratch directory, with the
model config and data `scrm.rasa_proc.train` trains from: nlu/data and the `faq` intent
generated from flows/knowledge. Every example is predicted once, by the model of the fold
that held it out; the reports are Rasa's own (intent_report.json, intent_errors.json).

Cross-validation flatters data whose examples resemble each other, so the held-out set
(bench/nlu_heldout.yml, messages written without seeing the training data and never trained
on) is run through the production model itself (`rasa test nlu --model`).

Rasa shuffles the folds with numpy's global RNG and no seed; this script seeds it (--seed)
before handing over to Rasa's CLI, so a run is repeatable on the same data and machine
(the classifier has its own random_state in nlu/config.yml).

Rasa scores the classifier's own top intent: its evaluation undoes the FallbackClassifier's
`nlu_fallback`. So the table also counts the predictions below that threshold (read from
nlu/config.yml): in production those get "please rephrase", even when the intent was right.
Macro F1 is the unweighted mean over the trained intents.

Prints a Markdown table on stdout (progress on stderr); the raw reports are copied to
bench/results/nlu-<run>/ (gitignored). A benchmark, not a test: nothing fails on a low score.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from scrm import rasa_proc  # noqa: E402
from scrm.rasa_proc import RASA_ENV, rasa_venv  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CONFIG = ROOT / "nlu" / "config.yml"  # what scrm.rasa_proc.train passes as --config
DATA = ROOT / "nlu" / "data"  # and as --data, with the faq intent from flows/knowledge
HELDOUT = ROOT / "bench" / "nlu_heldout.yml"  # never trained on
TARGET_MACRO = 0.90
TARGET_JOURNEY = 0.85
# Intents a member uses to start something (a flow, or a hand-off), as opposed to small talk
# and answers (greet, goodbye, thanks, affirm, deny, cancel, out_of_scope).
JOURNEY_INTENTS = (
    "signup", "help", "human", "whoami", "points_query", "checkin", "redeem", "rewards_list",
    "find_sisters", "invite", "my_data", "withdraw_sensitive", "withdraw_matching", "erase_me",
    "erase_cancel", "faq", "correct_due_date", "correct_baby_birthday", "correct_city",
    "correct_nickname", "correct_mobile",
)
REPORT_ROWS = {"accuracy", "macro avg", "weighted avg", "micro avg"}


def fallback_threshold() -> float:
    """The FallbackClassifier's threshold in nlu/config.yml (Rasa's default 0.3 if unset)."""
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8")) or {}
    for part in config.get("pipeline") or []:
        if part.get("name") == "FallbackClassifier":
            return float(part.get("threshold", 0.3))
    return 0.0

# Rasa's CLI, after seeding numpy's global RNG (StratifiedKFold(shuffle=True) draws from it
# once, at the first fold, before any model is trained).
RUNNER = (
    "import sys, random, numpy\n"
    "seed = int(sys.argv[1])\n"
    "random.seed(seed); numpy.random.seed(seed)\n"
    "sys.argv = ['rasa', *sys.argv[2:]]\n"
    "from rasa.__main__ import main\n"
    "main()\n"
)


def run_rasa(folds: int, seed: int, data: Path, work: Path, verbose: bool) -> Path:
    """Cross-validate in `work`; returns the folder with Rasa's reports."""
    venv = rasa_venv(ROOT)
    out = work / "results"
    cmd = [str(venv / "bin" / "python"), "-c", RUNNER, str(seed),
           "test", "nlu", "--cross-validation", "--folds", str(folds),
           "--config", str(CONFIG), "--nlu", str(data), "--out", str(out), "--no-plot",
           "--successes"]
    print(f"rasa test nlu --cross-validation --folds {folds} (seed {seed}) in {work} ...",
          file=sys.stderr)
    started = time.monotonic()
    subprocess.run(  # cwd is scratch: Rasa's .rasa/ cache and temp models stay out of the tree
        cmd, check=True, cwd=work, env={**os.environ, **RASA_ENV},
        stdout=sys.stderr if verbose else subprocess.DEVNULL,
        stderr=sys.stderr if verbose else subprocess.DEVNULL)
    print(f"done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return out


def confusions(errors: list[dict[str, Any]], top: int) -> list[tuple[str, str, int, str]]:
    """(true intent, predicted, count, one example text), most frequent first."""
    pairs: Counter[tuple[str, str]] = Counter()
    example: dict[tuple[str, str], str] = {}
    for e in errors:
        key = (str(e["intent"]), str((e.get("intent_prediction") or {}).get("name")))
        pairs[key] += 1
        example.setdefault(key, str(e.get("text", "")))
    return [(t, p, n, example[(t, p)]) for (t, p), n in pairs.most_common(top)]


def confidence(row: dict[str, Any]) -> float:
    return float((row.get("intent_prediction") or {}).get("confidence") or 0.0)


def render(report: dict[str, Any], errors: list[dict[str, Any]],
           successes: list[dict[str, Any]], *, title: str, top: int,
           seconds: float) -> tuple[str, bool]:
    intents = sorted((k for k, v in report.items()
                      if k not in REPORT_ROWS and isinstance(v, dict) and v.get("support")),
                     key=lambda k: (k not in JOURNEY_INTENTS, k))
    macro = sum(report[k]["f1-score"] for k in intents) / len(intents)
    support = sum(int(report[k]["support"]) for k in intents)
    threshold = fallback_threshold()
    low_right = sum(1 for s in successes if confidence(s) < threshold)
    low_wrong = sum(1 for e in errors if confidence(e) < threshold)
    lines = [f"{title}: {support} examples, {len(intents)} intents, {seconds:.0f} s", "",
             "| intent | journey | precision | recall | F1 | support |",
             "|---|---|---:|---:|---:|---:|"]
    for k in intents:
        r = report[k]
        mark = "yes" if k in JOURNEY_INTENTS else ""
        lines.append(f"| {k} | {mark} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['f1-score']:.3f} | {int(r['support'])} |")
    accuracy = report.get("accuracy")
    weighted = report.get("weighted avg", {}).get("f1-score")
    lines += ["", f"macro F1 (trained intents): {macro:.3f}"]
    if isinstance(accuracy, float):
        lines.append(f"accuracy: {accuracy:.3f}")
    if isinstance(weighted, float):
        lines.append(f"weighted F1: {weighted:.3f}")
    lines.append(f"errors: {len(errors)} of {support}")
    lines.append(f"below the fallback threshold {threshold:.2f} (the bot would ask again): "
                 f"{low_right} right and {low_wrong} wrong predictions")
    pairs = confusions(errors, top)
    if pairs:
        lines += ["", f"top confusions (of {len(errors)} errors):", "",
                  "| true | predicted | count | e.g. |", "|---|---|---:|---|"]
        lines += [f"| {t} | {p} | {n} | {ex.replace('|', '/')} |" for t, p, n, ex in pairs]
    missing = [k for k in JOURNEY_INTENTS if k not in intents]
    weak = [k for k in JOURNEY_INTENTS if k in intents and report[k]["f1-score"] < TARGET_JOURNEY]
    met = macro >= TARGET_MACRO and not weak and not missing
    lines.append("")
    if missing:
        lines.append(f"journey intents without training data: {', '.join(missing)}")
    if weak:
        lines.append("journey intents below {:.2f}: {}".format(
            TARGET_JOURNEY, ", ".join(f"{k} ({report[k]['f1-score']:.3f})" for k in weak)))
    lines.append(f"target: macro F1 >= {TARGET_MACRO:.2f} and no journey intent below "
                 f"{TARGET_JOURNEY:.2f}: {'met' if met else 'NOT met'}")
    return "\n".join(lines), met


def training_data(data: Path, work: Path) -> Path:
    """One folder with what the model is trained from: `data` (nlu/data by default) and
    the `faq` intent generated from flows/knowledge, exactly as scrm.rasa_proc.train has it."""
    folder = work / "data"
    folder.mkdir()
    for path in [data] if data.is_file() else sorted(data.glob("*.yml")):
        shutil.copy(path, folder / path.name)
    rasa_proc.write_faq_data(ROOT, folder)
    return folder


def run_heldout(heldout: Path, work: Path, verbose: bool) -> Path:
    """The production model (scrm.rasa_proc.train: the whole of nlu/data and the common
    questions, cached by their hash) over messages it was never trained on."""
    model = rasa_proc.train(ROOT, quiet=not verbose)
    out = work / "heldout"
    cmd = [str(rasa_venv(ROOT) / "bin" / "rasa"), "test", "nlu", "--model", str(model),
           "--nlu", str(heldout), "--out", str(out), "--no-plot", "--successes"]
    print(f"rasa test nlu --model {model.name} --nlu {heldout.name} ...", file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=work, env={**os.environ, **RASA_ENV},
                   stdout=sys.stderr if verbose else subprocess.DEVNULL,
                   stderr=sys.stderr if verbose else subprocess.DEVNULL)
    return out


def reports(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Rasa's intent report, errors and successes in `out`."""
    def read(name: str) -> list[dict[str, Any]]:
        path = out / name
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    report = json.loads((out / "intent_report.json").read_text(encoding="utf-8"))
    return report, read("intent_errors.json"), read("intent_successes.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (>= 2)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the fold split")
    parser.add_argument("--top", type=int, default=12, help="confusion pairs to list")
    parser.add_argument("--data", type=Path, default=DATA,
                        help="NLU data file or folder (default nlu/data)")
    parser.add_argument("--heldout", type=Path, default=HELDOUT,
                        help=f"held-out messages (default {HELDOUT.relative_to(ROOT)})")
    parser.add_argument("--no-cv", action="store_true",
                        help="only the held-out set (one training, cached)")
    parser.add_argument("--no-heldout", action="store_true", help="only cross-validation")
    parser.add_argument("--verbose", action="store_true", help="show Rasa's own output")
    parser.add_argument("--keep", type=Path, default=None,
                        help="copy Rasa's reports here (default bench/results/nlu-<run>)")
    args = parser.parse_args()
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    keep = args.keep or RESULTS / f"nlu-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    texts: list[str] = []
    met = True
    with tempfile.TemporaryDirectory(prefix="scrm-nlu-eval-") as tmp:
        if not args.no_cv:
            started = time.monotonic()
            data = training_data(args.data.resolve(), Path(tmp))
            out = run_rasa(args.folds, args.seed, data, Path(tmp), args.verbose)
            shutil.copytree(out, keep / "cv", dirs_exist_ok=True)
            text, ok = render(*reports(out), top=args.top, seconds=time.monotonic() - started,
                              title=f"NLU cross-validation: {args.folds} folds, seed "
                                    f"{args.seed}")
            texts.append(text)
            met = met and ok
        if not args.no_heldout and args.heldout.exists():
            started = time.monotonic()
            out = run_heldout(args.heldout.resolve(), Path(tmp), args.verbose)
            shutil.copytree(out, keep / "heldout", dirs_exist_ok=True)
            text, ok = render(*reports(out), top=args.top, seconds=time.monotonic() - started,
                              title=f"NLU held-out set ({args.heldout.name}, written "
                                    "without seeing the training data), production model")
            texts.append(text)
            met = met and ok
    print("\n\n".join(texts))
    print(f"reports: {keep}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
