"""The rendered book typesets its equations with no network (issue 16).

MathJax must come from the book's own ``_static`` folder, not a CDN: a reader of
``_build/html`` offline would otherwise see raw TeX. The test renders a two-page book with the
project's own configuration (``tools/stage_book.py``, the same staged ``_config.yml`` that
``make book`` uses), opens its pages in headless Chromium with networking off, and reads the DOM
after the scripts ran: every equation must have become a MathJax element and no raw TeX may be
left in the text. When ``_build/html`` exists (after ``make book``; or the folder in
``LLMREC_BOOK_HTML``) every rendered page with an equation is checked the same way.

Chromium comes from Debian's ``chromium-headless-shell`` (``make browser``). Without it the
tests skip, except under CI (the ``CI`` environment variable), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import stage_book  # noqa: E402

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")

# The equations of chapter 03 (its loss) in the two syntaxes the chapters use.
DISPLAY = r"$$\mathcal{L} = -\frac1B \sum_i \log \frac{\exp(\cos(u_i, v_i)/\tau)}{\sum_j \exp(\cos(u_i, v_j)/\tau)}$$"
INLINE = r"The temperature $\tau$ sharpens the softmax; before training the loss sits near $\log B$."
N_EQUATIONS = 3  # per page


@pytest.fixture(scope="module")
def chromium() -> str:
    found = os.environ.get("LLMREC_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not found:
        why = ("no headless Chromium (looked for " + ", ".join(BROWSERS) + "): `make browser` "
               "installs Debian's chromium-headless-shell, or set LLMREC_CHROMIUM")
        if os.environ.get("CI"):
            pytest.fail(why + " [CI is set, so this fails rather than skips]")
        pytest.skip(why)
    return found


def _no_network_prefix() -> list[str]:
    """A network namespace with no interfaces up (root: unshare -n; others: unshare -rn)."""
    if shutil.which("unshare"):
        for cmd in (["unshare", "-n"], ["unshare", "-rn"]):
            if subprocess.run(cmd + ["true"], capture_output=True).returncode == 0:
                return cmd
    return []  # the proxy and resolver flags below still refuse every request


def dump_dom(chromium: str, page: Path, profile: Path) -> str:
    cmd = _no_network_prefix() + [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        f"--user-data-dir={profile}",
        # belt and braces: any http(s) request goes to a closed port, no name resolves
        "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=15000", "--dump-dom", page.as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "<html" in done.stdout, done.stderr[-2000:]
    return done.stdout


_NOT_PROSE = ("script", "style", "pre", "code")  # code may hold a literal \( (a regex)


class _Text(HTMLParser):
    """The page's prose as a reader sees it (no <script>/<style>, and no <pre>/<code>, where
    MathJax never typesets and a backslash is code), and its tag counts."""

    def __init__(self):
        super().__init__()
        self.text, self.tags, self._skip = [], {}, 0

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        classes = (dict(attrs).get("class") or "").split()
        if "math" in classes:
            self.tags["class=math"] = self.tags.get("class=math", 0) + 1
        self._skip += tag in _NOT_PROSE

    def handle_endtag(self, tag):
        self._skip -= tag in _NOT_PROSE and self._skip > 0

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def parse(html: str) -> _Text:
    p = _Text()
    p.feed(html)
    return p


RAW_TEX = re.compile(r"\\\[|\\\(|\$\$|\\frac|\\tau")


def assert_typeset(chromium: str, page: Path, profile: Path, at_least: int) -> int:
    source = page.read_text()
    n_math = parse(source).tags.get("class=math", 0)
    assert n_math >= at_least, f"{page.name}: expected {at_least} equations in the HTML, found {n_math}"
    remote = re.findall(r"<script[^>]+src=\"(https?:[^\"]*mathjax[^\"]*)\"", source, re.I)
    dom = parse(dump_dom(chromium, page, profile))
    typeset = dom.tags.get("mjx-container", 0)
    raw = sorted(set(RAW_TEX.findall(" ".join(dom.text))))
    assert typeset >= n_math and not raw, (
        f"{page.name}: {typeset} of {n_math} equations typeset by MathJax with the network off; "
        f"raw TeX left in the text: {raw}; MathJax from the network: {remote or 'no'}"
    )
    assert not remote, f"{page.name} loads MathJax from the network: {remote}"
    assert not dom.tags.get("mjx-merror"), f"{page.name}: MathJax reported a TeX error"
    return typeset


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory) -> Path:
    """Two pages (Markdown and a notebook, as the chapters are) rendered with the book's config."""
    src = tmp_path_factory.mktemp("book-src")
    stage_book.write_config(src)
    (src / "docs").mkdir()
    shutil.copy2(ROOT / "docs" / "references.bib", src / "docs" / "references.bib")
    (src / "_toc.yml").write_text("format: jb-book\nroot: index\nchapters:\n  - file: maths\n")
    (src / "index.md").write_text(f"# Offline maths\n\n{INLINE}\n\n{DISPLAY}\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# A chapter\n\n{INLINE}\n\n{DISPLAY}")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, src / "maths.ipynb")
    out = tmp_path_factory.mktemp("book-out")
    jb = Path(sys.executable).with_name("jupyter-book")
    jb = str(jb) if jb.exists() else shutil.which("jupyter-book")
    assert jb, "jupyter-book is not installed (make setup)"
    done = subprocess.run([jb, "build", "--all", "-W", "-n", "--keep-going", "--path-output", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return out / "_build" / "html"


@pytest.mark.parametrize("page", ["index.html", "maths.html"])
def test_tiny_book_typesets_maths_offline(chromium, tiny_book, page, tmp_path):
    assert assert_typeset(chromium, tiny_book / page, tmp_path, N_EQUATIONS) >= N_EQUATIONS


BUILT = Path(os.environ.get("LLMREC_BOOK_HTML", ROOT / "_build" / "html"))  # what make book wrote


def test_built_book_typesets_maths_offline(chromium, tmp_path):
    if not (BUILT / "index.html").exists():
        pytest.skip(f"no book in {BUILT} yet (make book; .ci/run runs this test after it)")
    pages = [p for p in sorted(BUILT.rglob("*.html"))
             if "_static" not in p.parts and 'class="math' in p.read_text(errors="replace")]
    assert pages, f"no page of {BUILT} has an equation: has the book lost its maths?"
    counts = {str(p.relative_to(BUILT)): assert_typeset(chromium, p, tmp_path, 1) for p in pages}
    print("typeset offline:", counts)


def test_raw_tex_scan_reads_prose_not_code():
    """A regex shown in a source cell (``re.sub(r"\\(\\d{4}\\)", ...)``) is code, not raw TeX;
    the same characters in a paragraph are what an untypeset equation leaves."""
    page = parse('<p>x</p><pre><code>re.sub(r"\\(\\d{4}\\)")</code></pre><div>\\(a\\)</div>')
    assert RAW_TEX.findall(" ".join(page.text)) == ["\\("]
    assert not RAW_TEX.findall(" ".join(parse("<pre>\\(x</pre><code>\\frac</code>").text))
