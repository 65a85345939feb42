"""The office's validation page: one self-contained HTML file rendered from the GX result.

GX's own page (ValidationResultsPageRenderer + DefaultJinjaPageView) pulls Bootstrap, jQuery,
Font Awesome and Vega from public CDNs, so opening it would tell those hosts that a page of
student values was opened, and a page that shows row values must load nothing from outside.
This page carries its own small stylesheet, no script, and a Content-Security-Policy that
forbids the browser any fetch at all; every value from the roster is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from flows.intake.roster import Roster
from residency_rules.records import Problem

FAILING_SHOWN = 20  # failing rows listed per check (GX is asked for the same number)

# No fetch of any kind: styles only from the page itself, no scripts, images, fonts or frames.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

_STYLE = """
body { font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1b1b1b; background: #fff; }
main { max-width: 72rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.5rem; margin: 0.5rem 0; overflow-wrap: anywhere; }
h2 { font-size: 1.2rem; margin: 1.5rem 0 0.5rem; border-bottom: 1px solid #ccc; }
p.meta { color: #555; font-size: 0.9rem; overflow-wrap: anywhere; }
.summary { padding: 0.6rem 0.8rem; border-radius: 4px; border: 1px solid; }
.ok { background: #e7f4ea; border-color: #8cc79a; }
.bad { background: #fdecea; border-color: #e0a19a; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.35rem 0.5rem; text-align: left;
         vertical-align: top; overflow-wrap: break-word; }
th { background: #f0f0f0; }
tr.failed td.result { color: #a11; font-weight: 600; }
tr.passed td.result { color: #17622b; }
code { font-size: 0.85rem; }
/* A phone: each row becomes a card, each cell led by its column's name. */
@media (max-width: 40rem) {
  table, tbody, tr, td { display: block; width: auto; }
  thead { display: none; }
  tr { border: 1px solid #ccc; border-radius: 4px; margin: 0 0 0.6rem; }
  td { border: 0; border-bottom: 1px solid #eee; overflow-wrap: anywhere; }
  td::before { content: attr(data-label) ": "; font-weight: 600; }
}
@media (prefers-color-scheme: dark) {
  body { color: #e8e8e8; background: #161616; }
  th { background: #262626; } th, td { border-color: #444; }
  p.meta { color: #aaa; }
  .ok { background: #12301a; } .bad { background: #3a1512; }
  tr.failed td.result { color: #ff8a80; } tr.passed td.result { color: #8fd19e; }
}
"""

_VERBS = {
    "expect_table_row_count_to_be_between": "the roster has student rows",
    "expect_column_values_to_not_be_null": "is filled in",
    "expect_column_values_to_be_null": "is blank",
    "expect_column_values_to_be_unique": "is different on every row",
    "expect_column_values_to_be_in_set": "is one of",
    "expect_column_values_to_be_between": "is between",
    "expect_column_values_to_match_regex": "has the expected form",
}


def render_page(
    result: Any, roster: Roster, problems: Sequence[Problem], labels: Mapping[str, str]
) -> str:
    """Return the page for one validation: a summary, the problems, then every check.

    result is GX's ExpectationSuiteValidationResult; labels name each check's column as the
    office wrote its header (keyed by the check key kept in each expectation's meta).
    """
    e = html.escape
    stats = result.statistics
    evaluated = int(stats.get("evaluated_expectations", 0))
    failed = int(stats.get("unsuccessful_expectations", 0))
    held = sorted({p.row for p in problems if p.holds_row and p.row is not None})
    warnings = sum(1 for p in problems if not p.holds_row)
    if problems:
        summary = (
            f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found: "
            f"{len(held)} row{'s' if len(held) != 1 else ''} held (no letter until fixed), "
            f"{warnings} warning{'s' if warnings != 1 else ''}."
        )
    else:
        summary = "No problems found: every row passed every check."
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Validation of {e(roster.source.name)}</title>",
        f"<style>{_STYLE}</style></head><body><main>",
        f"<h1>Validation of {e(roster.source.name)}</h1>",
        f'<p class="meta">Sheet {e(roster.sheet)} &middot; {len(roster.row_ids)} student rows '
        f"&middot; sha256 {e(roster.sha256)} &middot; {evaluated} checks, "
        f"{evaluated - failed} passed, {failed} found problems (suite "
        f"{e(str(getattr(result, 'suite_name', '')))}, Great Expectations "
        f"{e(str((result.meta or {}).get('great_expectations_version', '')))}). For the office "
        "only: this page shows values from the roster.</p>",
        f'<p class="summary {"bad" if problems else "ok"}">{e(summary)}</p>',
    ]
    if problems:
        parts += ["<h2>Problems</h2>", '<div class="scroll"><table>',
                  "<thead><tr><th>Row</th><th>Column</th><th>Value</th><th>What is wrong</th>"
                  "<th>What to do</th></tr></thead><tbody>"]
        for p in problems:
            what = ("(warning) " if not p.holds_row else "") + p.what
            parts.append(
                f'<tr><td data-label="Row">{e(str(p.row) if p.row is not None else "-")}</td>'
                f'<td data-label="Column">{e(p.column or "-")}</td>'
                f'<td data-label="Value">{e(p.value)}</td>'
                f'<td data-label="What is wrong">{e(what)}</td>'
                f'<td data-label="What to do">{e(p.fix)}</td></tr>'
            )
        parts.append("</tbody></table></div>")
    parts += ["<h2>Every check</h2>", '<div class="scroll"><table>',
              "<thead><tr><th>Check</th><th>Result</th><th>Rows checked</th>"
              "<th>Failing rows</th></tr></thead><tbody>"]
    for item in result.results:
        parts.append(_check_row(item, labels))
    parts.append("</tbody></table></div></main></body></html>\n")
    return "\n".join(parts)


def _check_row(item: Any, labels: Mapping[str, str]) -> str:
    e = html.escape
    config = item.expectation_config
    key = str((config.meta or {}).get("check", ""))
    found = item.result or {}
    checked = found.get("element_count", found.get("observed_value", ""))
    failing = found.get("unexpected_index_list") or []
    column = str(config.kwargs.get("column", ""))
    shown = "; ".join(
        f"row {hit.get('excel_row')}: {_value(hit.get(column))}"
        for hit in failing[:FAILING_SHOWN]
    )
    if len(failing) > FAILING_SHOWN:
        shown += f"; and {len(failing) - FAILING_SHOWN} more"
    state = "passed" if item.success else "failed"
    return (
        f'<tr class="{state}"><td data-label="Check">'
        f"{e(_describe(config, labels.get(key, column)))} <code>{e(key)}</code></td>"
        f'<td class="result" data-label="Result">{state}</td>'
        f'<td data-label="Rows checked">{e(str(checked))}</td>'
        f'<td data-label="Failing rows">{e(shown or "none")}</td></tr>'
    )


def _describe(config: Any, label: str) -> str:
    """Say what a check asks in words, e.g. "Step 2 CK Score is between 1 and 300"."""
    kind = str(config.type)
    kwargs = dict(config.kwargs)
    verb = _VERBS.get(kind, kind.removeprefix("expect_").replace("_", " "))
    if kind == "expect_table_row_count_to_be_between":
        return verb[0].upper() + verb[1:]
    if kind == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        verb = (f"is between {_value(low)} and {_value(high)}" if low is not None
                and high is not None else f"is at least {_value(low)}" if low is not None
                else f"is at most {_value(high)}")
    elif kind == "expect_column_values_to_be_in_set":
        values = [_value(v) for v in kwargs.get("value_set") or []]
        verb += " " + ", ".join(values[:8]) + (f" (and {len(values) - 8} more)"
                                                if len(values) > 8 else "")
    text = f"{label} {verb}"
    condition = kwargs.get("row_condition")
    if isinstance(condition, Mapping) and condition.get("type") == "comparison":
        name = (condition.get("column") or {}).get("name", "")
        if name != "readable":  # every check skips rows intake could not read
            text += (f" (where {name} {condition.get('operator', '')} "
                     f"{_value(condition.get('parameter'))})")
    return text


def _value(value: Any) -> str:
    """Show a value as the office would write it (dates without a time, blank for none)."""
    if value is None:
        return "(blank)"
    if hasattr(value, "date") and hasattr(value, "hour"):  # a pandas Timestamp or datetime
        return str(value.date().isoformat())
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
