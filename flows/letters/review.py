"""The review page, output/<roster>/review.html: tonight's letters grouped by what they say (#24).

An advisor reviews a class by reading one letter per group: letters with the same outlook,
the same phase of the match, the same Step 1 story and the same change since the last letter
say the same things in the same order. Each group gives its count, its students (IDs and
names) and links to every letter; the top says what tonight sends, what waits, what is held.
Self-contained (inline CSS, no external address), written like every output: atomic, and not
readable by other users of the machine.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from flows.files import student_file_stem, write_atomic
from flows.outcome import DELIVERED, TROUBLE, UNADDRESSED, LetterOutcome, LetterStatus
from residency_rules.records import Evaluation

REVIEW_NAME = "review.html"

_STEP1 = {"clean": "Step 1 passed first try", "failure": "Step 1 passed after a failure",
          "not passed": "Step 1 not passed", "not taken": "Step 1 not taken"}
_MATCH = {"sf_match": "SF Match", "aua": "AUA Urology Match"}


@dataclass(frozen=True, slots=True)
class Group:
    """Letters that say the same things: the key's words, and the students in roster order."""

    title: str
    detail: str
    change: str
    students: tuple[str, ...]


def change_of(outcome: LetterOutcome, sent_before: bool) -> str:
    """Say what the letter is to the student tonight: new, changed, unchanged, held, ..."""
    status = outcome.status
    if status is LetterStatus.UNCHANGED:
        return "unchanged"
    if status is LetterStatus.HELD:  # a row problem (no detail), the office's hold, the Match
        return f"held: {outcome.detail}" if outcome.detail else "held: a row problem (Problems)"
    if status in UNADDRESSED:
        return "no usable address"
    if status in TROUBLE:
        return "failed"
    return "changed" if sent_before else "new"


def group_letters(
    evaluations: Sequence[Evaluation], letters: Mapping[str, LetterOutcome],
    sent_before: set[str],
) -> list[Group]:
    """Group the evaluated students' letters by outlook, phase, Step 1 story and change."""
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for ev in evaluations:
        outcome = letters.get(ev.student_id)
        if outcome is None or outcome.status is LetterStatus.HELD and not outcome.detail:
            continue  # a row problem: no letter was written (the Problems sheet says why)
        phase = ev.phase if ev.match_system == "nrmp" else (
            f"{ev.phase}, {_MATCH.get(ev.match_system, ev.match_system)}")
        if ev.phase == "after match" and ev.match_result:
            phase += f" ({ev.match_result})"
        detail = f"{phase}; {_STEP1[ev.step1_status]}"
        if ev.step2_failed_before:
            detail += "; a failed Step 2 CK attempt"
        key = (ev.label or "No outlook", detail, change_of(outcome, ev.student_id in sent_before))
        groups[key].append(ev.student_id)
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [Group(t, d, c, tuple(ids)) for (t, d, c), ids in ordered]


def _counts(letters: Mapping[str, LetterOutcome], sent_before: set[str]) -> Counter[str]:
    found: Counter[str] = Counter()
    for sid, outcome in letters.items():
        if outcome.status is LetterStatus.WAITING:
            found["waiting for approval"] += 1
        elif outcome.status in DELIVERED:
            found["changed" if sid in sent_before else "new"] += 1
        else:
            found[change_of(outcome, sid in sent_before)] += 1
    return found


_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:0;
padding:16px;color:#1a1a1a;background:#fff;line-height:1.45;max-width:900px}
h1{font-size:1.4em;margin:0 0 8px}h2{font-size:1.1em;margin:24px 0 4px}
.top{background:#eef3f8;border:1px solid #c9d6e3;padding:12px;border-radius:6px}
.top ul{margin:4px 0 0 18px;padding:0}.meta{color:#444;margin:0 0 6px}
details{margin:6px 0}summary{cursor:pointer;color:#0b4f8a}
pre{white-space:pre-wrap;word-wrap:break-word;background:#fafafa;border:1px solid #ddd;
padding:10px;font-size:.92em}
a{color:#0b4f8a}ul.ids{margin:4px 0 0 18px;padding:0}
section{border-top:1px solid #ddd;padding-top:4px}
"""


def render_review(
    roster: str, when: str, groups: Sequence[Group], counts: Counter[str],
    names: Mapping[str, str], letter_texts: Mapping[str, str], approve_hint: str,
) -> str:
    """Compose the page; every value from the roster is escaped."""
    total = sum(len(g.students) for g in groups)
    top = "".join(f"<li>{n} {escape(kind)}</li>" for kind, n in sorted(counts.items()))
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Review: {escape(roster)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>Review: {escape(roster)}</h1>",
        f'<div class="top"><p class="meta">Letters of {escape(when)}: {total} letters in '
        f"{len(groups)} groups. Read one letter per group; every letter is linked.</p>"
        f"<p><strong>Tonight</strong></p><ul>{top}</ul>"
        + (f"<p>{escape(approve_hint)}</p>" if approve_hint else "") + "</div>",
    ]
    for number, group in enumerate(groups, 1):
        first = group.students[0]
        links = "".join(
            f'<li><a href="letters/{escape(student_file_stem(sid))}.html">{escape(sid)}</a> '
            f"{escape(names.get(sid, ''))}</li>" for sid in group.students)
        parts.append(
            f'<section aria-labelledby="g{number}"><h2 id="g{number}">{number}. '
            f"{escape(group.title)}: {len(group.students)} "
            f"{'letter' if len(group.students) == 1 else 'letters'}, {escape(group.change)}</h2>"
            f'<p class="meta">{escape(group.detail)}</p>'
            f"<details><summary>The letter of {escape(first)} in full</summary>"
            f"<pre>{escape(letter_texts.get(first, '(no letter text)'))}</pre></details>"
            f"<details><summary>All {len(group.students)} students</summary>"
            f'<ul class="ids">{links}</ul></details></section>'
        )
    parts.append("</main></body></html>")
    return "\n".join(parts)


def write_review(
    out_dir: Path, roster: str, when: str, evaluations: Sequence[Evaluation],
    letters: Mapping[str, LetterOutcome], names: Mapping[str, str], sent_before: set[str],
) -> Path:
    """Write output/<roster>/review.html from tonight's letters (read back from letters/)."""
    groups = group_letters(evaluations, letters, sent_before)
    texts: dict[str, str] = {}
    for group in groups:
        path = out_dir / "letters" / f"{student_file_stem(group.students[0])}.txt"
        try:
            texts[group.students[0]] = path.read_text(encoding="utf-8")
        except OSError:
            texts[group.students[0]] = "(held: no letter was written)"
    counts = _counts(letters, sent_before)
    waiting = counts.get("waiting for approval", 0)
    hint = (f"{waiting} letters wait for the office's approval: when these read right, run "
            f"advising approve {roster} (or approve it from the Prefect UI)." if waiting else "")
    target = out_dir / REVIEW_NAME
    write_atomic(target, render_review(roster, when, groups, counts, names, texts,
                                       hint).encode("utf-8"), mode=0o600)
    return target
