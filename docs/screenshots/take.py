r"""Screenshots of every page of a docs build, as a reviewer reads them.

usage: python docs/screenshots/take.py HTML_DIR [OUT_DIR]

Loads each page of the build (``HTML_DIR``, from ``sphinx -b html docs
HTML_DIR``) in headless Chromium (``/usr/bin/chromium``), offline, and writes
one full-length PNG a page at 1400 px wide, and the landing page also at
390 px (a phone). The files go to ``OUT_DIR`` (by default this script's
folder) as ``<page>-1400.png`` and ``index-390.png``. Pillow comes with
the docs extra (through matplotlib).

Chromium's ``--screenshot`` takes only the window, so the page's height is
measured first: a wrapper page on a loopback server holds the page in an
iframe of the target width, waits for MathJax to typeset, and writes the
height into its own DOM, which ``--dump-dom`` prints.
"""

import functools
import http.server
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from PIL import Image

CHROMIUM = "/usr/bin/chromium"
SKIP = {"genindex.html", "search.html", "py-modindex.html"}
WRAPPER = """<!doctype html><html><body style="margin:0">
<iframe id="f" src="{page}" style="width:{width}px;height:600px;border:0"></iframe>
<script>
document.getElementById("f").onload = function () {{
  setTimeout(function () {{
    var d = document.getElementById("f").contentDocument.documentElement;
    var out = document.createElement("pre");
    out.id = "height";
    out.textContent = "HEIGHT=" + d.scrollHeight;
    document.body.appendChild(out);
  }}, 4000);
}};
</script></body></html>
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def _chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium_") as profile:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )


def _height(base: str, html: Path, page: str, width: int) -> int:
    wrapper = html / "_screenshot_wrapper.html"
    wrapper.write_text(WRAPPER.format(page=page, width=width))
    try:
        result = _chromium("--dump-dom", f"{base}/_screenshot_wrapper.html")
    finally:
        wrapper.unlink()
    found = re.search(r"HEIGHT=(\d+)", result.stdout)
    if found is None:
        raise SystemExit(f"could not measure {page}:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    html = Path(sys.argv[1]).resolve()
    out = Path(sys.argv[2] if len(sys.argv) == 3 else Path(__file__).parent).resolve()
    out.mkdir(parents=True, exist_ok=True)
    pages = sorted(p.name for p in html.glob("*.html") if p.name not in SKIP)
    pages += sorted(f"generated/{p.name}" for p in (html / "generated").glob("*.html"))
    shots = [(page, 1400) for page in pages] + [("index.html", 390)]

    handler = functools.partial(_QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for page, width in shots:
            height = _height(base, html, page, width)
            name = page.removeprefix("generated/").removesuffix(".html")
            target = out / f"{name}-{width}.png"
            result = _chromium(
                f"--window-size={width},{height}",
                f"--screenshot={target}",
                f"{base}/{page}",
            )
            if result.returncode != 0 or not target.exists():
                raise SystemExit(f"could not take {page}:\n{result.stderr[-2000:]}")
            # Note [Screenshot size]: a palette of 256 colours keeps text and
            # figures as they look and makes the files a third of the size.
            Image.open(target).convert("RGB").quantize(colors=256).save(
                target, optimize=True
            )
            print(f"{target.name}: {width}x{height}")
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
