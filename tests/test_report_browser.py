"""The reports as a reader's browser shows them: headless Chromium (Debian's package, which
``make test`` installs when missing) at 420 and 1400 pixels wide. Every image must load, the
page body must not overflow sideways, and nothing may reach the console as an error. At 1400
pixels no table may be clipped (scroll inside its block); at 420 no table of prose may be
clipped (they stack), and every figure is drawn at half its natural size or more (the narrow
drawings of the multi-panel figures).

Without Chromium the tests are skipped, unless ``FORGETBOX_REQUIRE_BROWSER=1`` (set by
``make test``), where a missing browser fails them."""

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from forgetbox.experiment.rerender import rerender

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results"
COMMITTED = sorted(DOCS.glob("*/report.html"))
EVALUATIONS = sorted(DOCS.glob("*/evaluation.html"))
WIDTHS = (420, 1400)

# runs first in the page: records errors (script errors, resources that fail to load, console
# errors), then on load writes what it found into the page for --dump-dom to print
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target && e.target.tagName ? e.target.tagName + ' failed to load' : e.message;
  window.__errors.push(String(t));
}, true);
var __ce = console.error;
console.error = function () { window.__errors.push(Array.from(arguments).join(' ')); };
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var out = {
    images: imgs.length,
    broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
               .map(function (i) { return i.alt; }),
    scrollWidth: document.documentElement.scrollWidth,
    clipped: Array.from(document.querySelectorAll('div.scroll'))
      .filter(function (d) { return d.scrollWidth > d.clientWidth + 1; })
      .map(function (d) {
        var t = d.querySelector('table');
        return (t && t.classList.contains('stack') ? 'stack: ' : '') +
          (t ? t.querySelector('th').textContent : '?');
      }),
    figures: Array.from(document.querySelectorAll('figure img')).map(function (i) {
      return {alt: i.alt, scale: i.width / i.naturalWidth, narrow: i.currentSrc !== i.src};
    }),
    innerWidth: window.innerWidth,
    errors: window.__errors,
    title: document.title
  };
  window.parent.postMessage(JSON.stringify(out), '*');
});
</script>"""

# the page under test in a frame of the width asked (a headless window is at least 500 pixels
# wide); the frame's probe posts its findings, which are written where --dump-dom prints them
FRAME = """<!DOCTYPE html><html><head><style>body{margin:0}iframe{border:0}</style></head><body>
<iframe src="%s" style="width:%dpx;height:900px"></iframe>
<script>
window.addEventListener('message', function (e) {
  var pre = document.createElement('pre');
  pre.id = '__probe';
  pre.textContent = e.data;
  document.body.appendChild(pre);
});
</script></body></html>"""


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("FORGETBOX_REQUIRE_BROWSER") == "1":
        pytest.fail("chromium is not installed: `make test` installs Debian's chromium package")
    return found


def probe(report: Path, width: int, tmp: Path) -> dict:
    """Load ``report`` in headless Chromium at ``width`` pixels; what the probe found."""
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed (make test installs it)")
    page = tmp / f"probe-{width}.html"
    text = report.read_text()
    page.write_text(re.sub(r"<head>", "<head>" + PROBE, text, count=1))
    frame = tmp / f"frame-{width}.html"
    frame.write_text(FRAME % (page.name, width))
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / f'profile-{width}'}",
        "--window-size=1600,1000",
        "--virtual-time-budget=5000",
        "--dump-dom",
        frame.as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="__probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the page did not finish loading: {done.stderr[-2000:]}"
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    result["console"] = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    return result


MIN_SCALE = 0.5  # a figure drawn smaller than half its natural size is unreadable


def _check(result: dict, width: int, images: int, title: str = "forgetbox report") -> None:
    assert result["images"] == images, result
    assert result["broken"] == [], result["broken"]
    assert result["errors"] == [] and result["console"] == [], (result["errors"], result["console"])
    assert result["innerWidth"] == width
    assert result["scrollWidth"] <= width, f"the page overflows: {result['scrollWidth']} > {width}"
    assert result["title"].startswith(title)
    if width >= 1400:
        assert result["clipped"] == [], f"tables clipped at {width} px: {result['clipped']}"
    else:
        stacked = [c for c in result["clipped"] if c.startswith("stack")]
        assert stacked == [], f"tables of prose clipped at {width} px: {stacked}"
    small = [f["alt"] for f in result["figures"] if f["scale"] < MIN_SCALE]
    assert small == [], f"figures drawn below half their size at {width} px: {small}"
    if width < 700:
        wide = [f["alt"] for f in result["figures"] if not f["narrow"] and "roc" not in f["alt"]]
        assert wide == [], f"wide drawings shown at {width} px: {wide}"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The digits run re-rendered with this code from its committed results.json."""
    out = tmp_path_factory.mktemp("rendered")
    shutil.copy(DOCS / "digits-default" / "results.json", out / "results.json")
    rerender(out)
    return out / "report.html"


@pytest.mark.parametrize("width", WIDTHS)
def test_a_freshly_rendered_report_reads_well_in_a_browser(rendered, width, tmp_path):
    _check(probe(rendered, width, tmp_path), width, images=4)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("report", COMMITTED, ids=lambda p: p.parent.name)
def test_committed_reports_read_well_in_a_browser(report, width, tmp_path):
    _check(probe(report, width, tmp_path), width, images=4)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("page", EVALUATIONS, ids=lambda p: p.parent.name)
def test_committed_evaluations_read_well_in_a_browser(page, width, tmp_path):
    methods = json.loads((page.parent / "evaluation.json").read_text())["methods"].values()
    figures = 4 if any(m.get("ulira") for m in methods) else 3  # no U-LiRA: no ROC figure
    _check(probe(page, width, tmp_path), width, images=figures, title="forgetbox evaluation")


def test_the_probe_catches_a_broken_image_and_an_overflowing_page(tmp_path):
    """The checks can fail: a page with a broken image and a table wider than the window."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><title>forgetbox report: bad</title></head><body>"
        '<img alt="x" src="data:image/png;base64,AAAA"/>'
        '<table style="width:3000px"><tr><td>wide</td></tr></table></body></html>'
    )
    result = probe(bad, 420, tmp_path)
    assert result["broken"] == ["x"] and result["scrollWidth"] > 420
    with pytest.raises(AssertionError):
        _check(result, 420, images=1)


def test_the_probe_catches_a_clipped_table_and_a_shrunken_figure(tmp_path):
    """A table scrolling inside its block at 1400 px, and a figure at a quarter of its size."""
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="4000" height="100">'
        '<rect width="4000" height="100"/></svg>'
    )
    data = base64.b64encode(svg.encode()).decode()
    bad = tmp_path / "clipped.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><title>forgetbox report: bad</title>"
        "<style>img{max-width:100%}</style></head><body>"
        f'<figure><img alt="wide" src="data:image/svg+xml;base64,{data}"/></figure>'
        '<div class="scroll" style="overflow-x:auto"><table style="width:3000px"><tr><th>h</th>'
        "</tr></table></div></body></html>"
    )
    result = probe(bad, 1400, tmp_path)
    assert result["clipped"] == ["h"]
    assert result["figures"][0]["scale"] < MIN_SCALE
    with pytest.raises(AssertionError, match="clipped"):
        _check(result, 1400, images=1)
