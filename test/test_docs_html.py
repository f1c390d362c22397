# Owner(s): ["module: nn"]
r"""Walk the built HTML of the docs: maths, links, cross-references, examples.

The docs are built with ``sphinx -W -b html`` into a temporary folder, or, when
the environment variable ``TORCH_ORTHO_PATCH_DOCS_HTML`` names a folder, read
from a build already made there (``python -m sphinx -W -b html docs DIR``).
Every page of the build is parsed (with :mod:`html.parser`) and the tests fail on

* maths that MathJax would not typeset as such: a ``\(`` or ``\[`` outside the
  ``math`` elements that Sphinx writes around each formula (and outside code
  listings, where a backslash is code);
* MathJax error nodes;
* a link to a file of the build, or to an anchor of a page, that does not exist;
* a cross-reference that is not a link: Sphinx renders a reference it did not
  resolve as an element of class ``xref`` with no ``<a>`` around it;
* an example of an API page that does not run on its own, copied the way the
  copy button copies it (see Note [API examples run on their own] in
  docs/conf.py).

MathJax runs in the browser, so its errors are not in the built files. Where
/usr/bin/chromium exists, each page is also loaded in headless Chromium, its
DOM dumped once MathJax has typeset it, and the tests fail on MathJax's error
nodes, on macros it did not know (MathJax shows those in red), and on maths left
untypeset. Without Chromium that test is skipped; CI does not install it.

The inventories that intersphinx reads (docs/_inventories) are checked too:
that they match their generator and name objects that exist.
"""

import importlib
import importlib.util
import io
import json
import os
import posixpath
import re
import subprocess
import sys
import tempfile
import unittest
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from torch.testing._internal.common_utils import run_tests, TestCase


REPO = Path(__file__).absolute().parent.parent
DOCS = REPO / "docs"
INVENTORIES = DOCS / "_inventories"
CHROMIUM = Path("/usr/bin/chromium")
ENV_BUILD = "TORCH_ORTHO_PATCH_DOCS_HTML"

# What building the docs needs: the `docs` extra of pyproject.toml.
_DOCS_MODULES = ("sphinx", "furo", "myst_parser", "sphinx_copybutton", "sphinx-mathjax-offline")
_missing = [m for m in _DOCS_MODULES if importlib.util.find_spec(m) is None]
_skip_without_sphinx = unittest.skipIf(
    bool(_missing) and not os.environ.get(ENV_BUILD),
    f"the docs cannot be built here: {', '.join(_missing)} missing (pip install -e '.[docs]')",
)

# Elements that never have an end tag, so that they are never on the stack.
_VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
    "source", "track", "wbr",
}  # fmt: skip
# Text in these is not prose: MathJax skips it, and a backslash there is code.
_NOT_PROSE = {"script", "style", "pre", "textarea"}
# MathJax's default delimiters: \( \) inline, \[ \] and $$ $$ displayed.
_RAW_MATH = re.compile(r"\\[(\[]|\$\$")


class _Page(HTMLParser):
    r"""What the tests look at in one HTML page (built, or dumped from Chromium)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids = set()
        self.links = []  # (tag, attribute, value, line)
        self.raw_math = []  # (line, context)
        self.unlinked_xrefs = []  # (line, text)
        self.mathjax_errors = []  # (line, what)
        self.undefined_macros = []  # (line, macro)
        # Math elements that hold TeX: in a built page, every formula; in a
        # DOM dumped after MathJax ran, one it left untypeset.
        self.untypeset = []  # (line, text)
        self.mathjax_output = 0
        self._stack = []  # (tag, classes, attributes)
        self._xref_text = None

    def _inside(self, predicate):
        return any(predicate(tag, classes, attrs) for tag, classes, attrs in self._stack)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        line = self.getpos()[0]
        classes = set((attrs.get("class") or "").split())
        for key in ("id", "name"):
            if attrs.get(key) and (key == "id" or tag == "a"):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key) is not None and tag != "base":
                self.links.append((tag, key, attrs[key], line))
        if tag in ("mjx-merror", "merror") or "data-mjx-error" in attrs:
            self.mathjax_errors.append((line, attrs.get("data-mjx-error") or tag))
        if tag == "mjx-container":
            self.mathjax_output += 1
        if "xref" in classes and not self._inside(lambda t, c, a: t == "a"):
            self._xref_text = []
        if tag not in _VOID:
            self._stack.append((tag, classes, attrs))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self._stack.pop()

    def handle_endtag(self, tag):
        # Pop to the matching start tag; a stray end tag changes nothing.
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                popped = self._stack[i:]
                del self._stack[i:]
                break
        else:
            return
        if self._xref_text is not None and any("xref" in c for _, c, _ in popped):
            self.unlinked_xrefs.append((self.getpos()[0], "".join(self._xref_text)))
            self._xref_text = None

    def handle_data(self, data):
        line = self.getpos()[0]
        if self._xref_text is not None:
            self._xref_text.append(data)
        in_math = self._inside(lambda t, c, a: "math" in c)
        # MathJax's undefined-macro marker: the macro's name as red text.
        if data.startswith("\\") and self._inside(
            lambda t, c, a: t == "mtext" and a.get("mathcolor") == "red"
        ):
            self.undefined_macros.append((line, data))
        if not _RAW_MATH.search(data):
            return
        if in_math:
            # Only before MathJax has run: after, a math element holds its output.
            self.untypeset.append((line, data.strip()[:80]))
        elif not self._inside(lambda t, c, a: t in _NOT_PROSE):
            self.raw_math.append((line, data.strip()[:80]))


def _parse(text):
    page = _Page()
    page.feed(text)
    page.close()
    return page


def _build(out):
    # -W: a warning (an unresolved reference among them) fails the build.
    # The build writes docs/generated/ and docs/_generated/, as any build does.
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run(
        [*command, str(DOCS), str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"sphinx -W -b html failed:\n{result.stdout}\n{result.stderr}")


def _copied_code(pre_text):
    # What the copy button copies (docs/conf.py: only the lines with a prompt,
    # without the prompt).
    lines = []
    for line in pre_text.splitlines():
        for prompt in (">>> ", "... "):
            if line.startswith(prompt):
                lines.append(line[len(prompt) :])
                break
        else:
            if line in (">>>", "..."):
                lines.append("")
    return "\n".join(lines) + "\n"


class _Blocks(HTMLParser):
    r"""The text of the ``pre`` of each pycon code block of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks = []
        self._depth = 0  # inside a div.highlight-pycon
        self._pre = None

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag == "div" and (self._depth or "highlight-pycon" in classes):
            self._depth += 1
        elif tag == "pre" and self._depth:
            self._pre = []

    def handle_endtag(self, tag):
        if tag == "div" and self._depth:
            self._depth -= 1
        elif tag == "pre" and self._pre is not None:
            self.blocks.append("".join(self._pre))
            self._pre = None

    def handle_data(self, data):
        if self._pre is not None:
            self._pre.append(data)


# Runs each example in a fresh namespace, as a reader who pastes it into a new
# interpreter would, and removes the patch after each.
_RUN_EXAMPLES = """\
import json, sys, traceback
import torch_ortho_patch
failures = {}
for name, code in json.load(sys.stdin).items():
    try:
        exec(compile(code, name, "exec"), {"__name__": "__main__"})
    except BaseException:
        failures[name] = traceback.format_exc()
    finally:
        torch_ortho_patch.uninstall()
print(json.dumps(failures))
"""


@_skip_without_sphinx
class TestDocsHtml(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        given = os.environ.get(ENV_BUILD)
        if given:
            cls.root = Path(given).absolute()
            if not (cls.root / "index.html").is_file():
                raise AssertionError(f"{ENV_BUILD}={given} holds no HTML build (no index.html)")
        else:
            cls._tmp = tempfile.TemporaryDirectory(prefix="docs_html_")
            cls.root = Path(cls._tmp.name)
            _build(cls.root)
        # Every page: the built HTML, without the copies of sources and assets.
        cls.pages = {
            path.relative_to(cls.root).as_posix(): path.read_text(encoding="utf-8")
            for path in sorted(cls.root.rglob("*.html"))
            if not path.relative_to(cls.root).parts[0].startswith(("_static", "_sources", "."))
        }
        cls.parsed = {name: _parse(text) for name, text in cls.pages.items()}

    @classmethod
    def tearDownClass(cls):
        tmp = getattr(cls, "_tmp", None)
        if tmp is not None:
            tmp.cleanup()
        super().tearDownClass()

    def _report(self, what, found):
        if found:
            self.fail(f"{what}:\n" + "\n".join(found))

    def test_pages_found(self):
        for name in ("index.html", "api.html", "generated/torch_ortho_patch.orthogonal.html"):
            self.assertIn(name, self.pages)

    def test_no_raw_maths_delimiters(self):
        found = [
            f"{name}:{line}: {context!r}"
            for name, page in self.parsed.items()
            for line, context in page.raw_math
        ]
        self._report("TeX delimiters outside the math elements", found)

    def test_no_mathjax_errors_in_built_html(self):
        found = [
            f"{name}:{line}: {what}"
            for name, page in self.parsed.items()
            for line, what in page.mathjax_errors
        ]
        self._report("MathJax error nodes", found)

    def test_internal_links_resolve(self):
        found = []
        for name, page in self.parsed.items():
            for tag, key, value, line in page.links:
                target = self._resolve(name, value)
                if target is None:
                    continue
                path, fragment = target
                where = f"{name}:{line}: <{tag} {key}={value!r}>"
                file = self.root / path
                if not file.is_file():
                    found.append(f"{where}: no file {path}")
                elif fragment and path.endswith(".html") and fragment not in self._ids(path):
                    found.append(f"{where}: {path} has no anchor #{fragment}")
        self._report("links to nothing in the build", found)

    def _resolve(self, page, value):
        # (path relative to the build, fragment) of a link into the build, or
        # None for one that leaves it.
        parts = urlsplit(value)
        if parts.scheme or parts.netloc or value.startswith("//"):
            return None
        path = unquote(parts.path)
        if path:
            path = posixpath.normpath(posixpath.join(posixpath.dirname(page), path))
        else:
            path = page
        if path.endswith("/") or (self.root / path).is_dir():
            path = posixpath.join(path, "index.html")
        fragment = unquote(parts.fragment)
        # "#" and "#top" are the top of the page; browsers need no anchor for them.
        return path, "" if fragment in ("", "top") else fragment

    def _ids(self, path):
        if path not in self.parsed:
            self.parsed[path] = _parse((self.root / path).read_text(encoding="utf-8"))
        return self.parsed[path].ids

    def test_cross_references_are_links(self):
        found = [
            f"{name}:{line}: {text!r}"
            for name, page in self.parsed.items()
            for line, text in page.unlinked_xrefs
        ]
        self._report("cross-references that are not links (write ``name`` for no link)", found)

    def test_api_examples_run_on_their_own(self):
        examples = {}
        for name, text in self.pages.items():
            if not name.startswith("generated/"):
                continue
            blocks = _Blocks()
            blocks.feed(text)
            for i, block in enumerate(blocks.blocks):
                examples[f"{name} (example {i + 1})"] = _copied_code(block)
        # Every function in api.rst but is_installed and uninstall has one.
        self.assertGreaterEqual(len(examples), 8, sorted(examples))
        result = subprocess.run(
            [sys.executable, "-c", _RUN_EXAMPLES],
            input=json.dumps(examples),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        failures = json.loads(result.stdout.splitlines()[-1])
        self._report(
            "API examples that fail when copied alone",
            [f"{name}:\n{examples[name]}{tb}" for name, tb in failures.items()],
        )

    @unittest.skipUnless(
        CHROMIUM.exists(),
        f"{CHROMIUM} is absent: MathJax's output is not checked (it runs only in a browser)",
    )
    def test_mathjax_typesets_every_page(self):
        found = []
        for name in sorted(self.pages):
            dom = self._dump_dom(self.root / name)
            page = _parse(dom)
            found += [f"{name}:{line}: MathJax error {w!r}" for line, w in page.mathjax_errors]
            found += [f"{name}:{line}: undefined macro {m!r}" for line, m in page.undefined_macros]
            found += [f"{name}:{line}: not typeset: {t!r}" for line, t in page.untypeset]
            # The built page's untypeset formulas are all of its formulas.
            if self.parsed[name].untypeset and not page.mathjax_output:
                found.append(f"{name}: has maths, and MathJax rendered none of it")
        self._report("maths that MathJax did not render", found)

    @unittest.skipUnless(
        CHROMIUM.exists(),
        f"{CHROMIUM} is absent: the copy buttons are not checked (a script adds them)",
    )
    def test_copy_buttons_on_input_only(self):
        # sphinx-copybutton adds its button in the browser, inside the block's
        # div.highlight. An output block ("none" lexer) must have none and every
        # other code block one: Note [Output blocks] in docs/_static/custom.css.
        block = re.compile(r'<div class="([^"]*\bhighlight-(\w+)\b[^"]*)">')
        found, outputs, inputs = [], 0, 0
        for name in sorted(self.pages):
            dom = self._dump_dom(self.root / name)
            starts = list(block.finditer(dom))
            for start, end in zip(starts, [*starts[1:], None]):
                segment = dom[start.end() : end.start() if end else len(dom)]
                segment = segment[: segment.find("</pre>") + 200]
                has_button = "copybtn" in segment
                lexer = start.group(2)
                if lexer == "none":
                    outputs += 1
                    if has_button:
                        found.append(f"{name}: an output block has a copy button")
                else:
                    inputs += 1
                    if not has_button:
                        found.append(f"{name}: a {lexer} block has no copy button")
        self._report("copy buttons in the wrong place", found)
        # Both kinds were there to check.
        self.assertGreater(outputs, 5)
        self.assertGreater(inputs, 20)

    def _dump_dom(self, path):
        # Each page is loaded once per class: the Chromium checks share it.
        doms = self.__class__.__dict__.get("_doms")
        if doms is None:
            doms = {}
            type(self)._doms = doms
        if path not in doms:
            doms[path] = self._load_in_chromium(path)
        return doms[path]

    def _load_in_chromium(self, path):
        with tempfile.TemporaryDirectory(prefix="chromium_") as profile:
            result = subprocess.run(
                [
                    str(CHROMIUM),
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    f"--user-data-dir={profile}",
                    # Time as the page sees it: enough for MathJax to load its
                    # extensions and typeset, without waiting that long.
                    "--virtual-time-budget=10000",
                    "--dump-dom",
                    path.as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        if result.returncode != 0 or "<html" not in result.stdout:
            raise AssertionError(f"chromium could not load {path}:\n{result.stderr[-2000:]}")
        return result.stdout


class TestPageParser(TestCase):
    r"""The checks above find what they look for (they pass on clean pages)."""

    def test_raw_maths(self):
        page = _parse(
            '<p>a \\(x\\) b</p><p><span class="math notranslate">\\(y\\)</span></p>'
            "<pre>re.compile(r'\\(')</pre><p>$$z$$</p>"
        )
        self.assertEqual([c for _, c in page.raw_math], ["a \\(x\\) b", "$$z$$"])
        self.assertEqual([c for _, c in page.untypeset], ["\\(y\\)"])

    def test_unlinked_xrefs(self):
        page = _parse(
            '<p><a href="x.html#f"><code class="xref py py-func"><span class="pre">f()'
            '</span></code></a> <code class="xref py py-class"><span class="pre">G'
            "</span></code></p>"
        )
        self.assertEqual([t for _, t in page.unlinked_xrefs], ["G"])

    def test_mathjax_errors(self):
        page = _parse(
            '<mjx-container><mjx-merror data-mjx-error="Missing close brace">'
            '</mjx-merror><mjx-assistive-mml><math><mtext mathcolor="red">\\mathrlap'
            "</mtext><mtext>text</mtext></math></mjx-assistive-mml></mjx-container>"
        )
        self.assertEqual([w for _, w in page.mathjax_errors], ["Missing close brace"])
        self.assertEqual([m for _, m in page.undefined_macros], ["\\mathrlap"])
        self.assertEqual(page.mathjax_output, 1)

    def test_ids_and_links(self):
        page = _parse('<a name="old"></a><div id="new"><img src="i.png"><a href="#old">x</a></div>')
        self.assertEqual(page.ids, {"old", "new"})
        self.assertEqual([v for _, _, v, _ in page.links], ["i.png", "#old"])

    def test_copied_code(self):
        self.assertEqual(
            _copied_code(">>> with x:\n...     y = 1\n>>> y\n1\n"), "with x:\n    y = 1\ny\n"
        )


class TestInventories(TestCase):
    r"""docs/_inventories: current, readable by Sphinx, and naming real objects."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        spec = importlib.util.spec_from_file_location(
            "make_inventories", INVENTORIES / "make_inventories.py"
        )
        cls.make = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cls.make)

    def test_current(self):
        message = "stale: run python docs/_inventories/make_inventories.py"
        self.assertEqual(self.make.main(["--check"]), 0, message)

    def _entries(self, filename):
        data = (INVENTORIES / filename).read_bytes()
        head, _, body = data.partition(b"zlib.\n")
        self.assertTrue(head.startswith(b"# Sphinx inventory version 2\n"), head)
        for line in zlib.decompress(body).decode().splitlines():
            name, role, _priority, uri, _display = line.split(" ", 4)
            yield name, role, uri.replace("$", name) if uri.endswith("$") else uri

    @unittest.skipIf(importlib.util.find_spec("sphinx") is None, "sphinx is not installed")
    def test_sphinx_reads_them(self):
        from sphinx.util.inventory import InventoryFile

        for filename, (_, _, entries) in self.make.INVENTORIES.items():
            data = (INVENTORIES / filename).read_bytes()
            inventory = InventoryFile.load(io.BytesIO(data), "https://example.org/", posixpath.join)
            for name, role, uri in entries:
                self.assertIn(name, inventory[role], (filename, role))
                item = inventory[role][name]
                # Sphinx 8.2 made the entries objects; before, they were tuples.
                found = item.uri if hasattr(item, "uri") else item[2]
                expected = uri[:-1] + name if uri.endswith("$") else uri
                self.assertEqual(found, "https://example.org/" + expected)

    def test_torch_names_exist(self):
        for name, role, uri in self._entries("torch.inv"):
            with self.subTest(name=name):
                self.assertIsNotNone(_lookup(name), f"{name} is not in the installed torch")
                self.assertFalse(uri.startswith("/"), uri)
                self.assertIn("#", uri)

    def test_python_names_exist(self):
        for name, role, uri in self._entries("python.inv"):
            with self.subTest(name=name):
                self.assertIsNotNone(_lookup(name), f"{name} is not in this Python")


def _lookup(name):
    # The object a dotted name denotes, or None: the longest importable module
    # prefix, then attributes. Builtins (and None itself) count as found.
    import builtins

    if name == "None":
        return True
    if "." not in name and hasattr(builtins, name):
        return getattr(builtins, name)
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj
    return None


if __name__ == "__main__":
    run_tests()
