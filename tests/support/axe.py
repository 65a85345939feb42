"""axe-core, the accessibility checker, run in headless Chromium on a page the product wrote.

axe.min.js comes from the npm registry (`npm pack axe-core@VERSION`, cached under
~/.cache/advising-tests/), or from ADVISING_TEST_AXE_JS. The page is copied with axe and a
call to `axe.run` appended; Chromium's `--dump-dom` (with a virtual-time budget, so the
promise settles) prints the DOM with the violations as JSON in <pre id="axe-result">.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

AXE_VERSION = "4.10.3"
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


class Unavailable(Exception):
    """Chromium or axe-core cannot be had here: the message says which (a skip reason)."""


def chromium() -> str:
    """Return the Chromium program (Debian's `chromium`, or `chromium-browser`)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise Unavailable("no Chromium on the PATH (Debian: apt-get install chromium)")


def axe_js() -> Path:
    """Return axe.min.js: ADVISING_TEST_AXE_JS, the cache, or fetched with `npm pack`."""
    given = os.environ.get("ADVISING_TEST_AXE_JS")
    if given:
        return Path(given)
    cache = Path.home() / ".cache" / "advising-tests" / f"axe-core-{AXE_VERSION}"
    script = cache / "axe.min.js"
    if script.is_file():
        return script
    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable("no npm to fetch axe-core (Debian: apt-get install npm)")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([npm, "pack", f"axe-core@{AXE_VERSION}", "--silent"], cwd=tmp,
                              capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise Unavailable(f"npm pack axe-core failed: {done.stderr.strip()[:200]}")
        with tarfile.open(Path(tmp) / done.stdout.strip().splitlines()[-1]) as tar:
            member = tar.extractfile("package/axe.min.js")
            assert member is not None
            cache.mkdir(parents=True, exist_ok=True)
            script.write_bytes(member.read())
    return script


def violations(page: Path) -> list[dict[str, object]]:
    """Run axe on a page (its own folder, so relative links resolve); return the violations
    as {id, impact, help, nodes: [html...]}."""
    browser, script = chromium(), axe_js().read_text(encoding="utf-8")
    runner = (
        f"<script>{script}</script><script>axe.run(document, {{runOnly: {json.dumps(RULES)}}})"
        ".then(r => { const p = document.createElement('pre'); p.id = 'axe-result';"
        " p.textContent = JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact,"
        " help: v.help, nodes: v.nodes.map(n => n.html)}))); document.body.appendChild(p); })"
        ".catch(e => { const p = document.createElement('pre'); p.id = 'axe-result';"
        " p.textContent = JSON.stringify([{id: 'axe-error', impact: String(e)}]);"
        " document.body.appendChild(p); });</script>"
    )
    html = page.read_text(encoding="utf-8")
    probe = page.with_name(f".axe-{page.name}")
    probe.write_text(html.replace("</body>", runner + "</body>", 1), encoding="utf-8")
    try:
        with tempfile.TemporaryDirectory() as profile:
            done = subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu",
                 f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom",
                 probe.as_uri()],
                capture_output=True, text=True, timeout=120,
            )
    finally:
        probe.unlink(missing_ok=True)
    found = re.search(r'<pre id="axe-result">(.*?)</pre>', done.stdout, re.S)
    assert found, f"axe did not report (Chromium said: {done.stderr.strip()[-300:]})"
    text = (found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
            .replace("&#39;", "'").replace("&amp;", "&"))
    result: list[dict[str, object]] = json.loads(text)
    return result
