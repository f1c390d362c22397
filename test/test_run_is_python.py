# Owner(s): ["module: nn"]
r"""``python -m torch_ortho_patch run`` gives a script what ``python`` gives it.

See Note [run is python] in torch_ortho_patch/__main__.py.
"""

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from torch.testing._internal.common_utils import run_tests, TestCase


REPO = Path(__file__).absolute().parent.parent

# What a script can see of how it was started.
PROBE = r"""
import json, sys

g = dict(globals())


def describe(value):
    if value is None or isinstance(value, (str, dict)):
        return value if not isinstance(value, dict) else sorted(value)
    if isinstance(value, type):
        return f"class {value.__module__}.{value.__qualname__}"
    if type(value).__name__ == "module":
        return f"module {value.__name__}"
    if type(value).__name__ == "ModuleSpec":
        return f"spec {value.name} {value.origin} {type(value.loader).__name__}"
    fields = {k: getattr(value, k, None) for k in ("name", "path", "archive")}
    return f"{type(value).__name__} {fields}"


import __main__

print("PROBE " + json.dumps({
    "argv": sys.argv,
    "path0": sys.path[0],
    "names": sorted(g),
    "globals": {k: describe(v) for k, v in g.items() if k.startswith("__")},
    "main is ours": __main__.__dict__ is globals(),
    "code file": sys._getframe().f_code.co_filename,
}, sort_keys=True))
"""


def probe(*args, cwd):
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise AssertionError(f"{args} failed:\n{result.stderr}")
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    return json.loads(line.removeprefix("PROBE "))


class TestRunIsPython(TestCase):
    def setUp(self):
        super().setUp()
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(os.path.realpath(tmp.name))
        (self.tmp / "sub").mkdir()
        (self.tmp / "sub" / "probe.py").write_text(PROBE)
        (self.tmp / "pkg").mkdir()
        (self.tmp / "pkg" / "__init__.py").write_text("")
        (self.tmp / "pkg" / "probe.py").write_text(PROBE)
        (self.tmp / "pkg" / "__main__.py").write_text(PROBE)
        (self.tmp / "app").mkdir()
        (self.tmp / "app" / "__main__.py").write_text(PROBE)
        with zipfile.ZipFile(self.tmp / "app.zip", "w") as z:
            z.writestr("__main__.py", PROBE)
        os.symlink(self.tmp / "sub" / "probe.py", self.tmp / "link.py")

    def assertSame(self, *args):
        python = probe(*args, cwd=self.tmp)
        ours = probe("-m", "torch_ortho_patch", "run", *args, cwd=self.tmp)
        self.assertEqual(ours, python, msg=args)
        return python

    def test_script(self):
        seen = self.assertSame("sub/probe.py", "a", "-m", "--b")
        # What python gives, for the record.
        self.assertEqual(seen["argv"], ["sub/probe.py", "a", "-m", "--b"])
        self.assertEqual(seen["globals"]["__file__"], str(self.tmp / "sub" / "probe.py"))
        self.assertEqual(seen["globals"]["__builtins__"], "module builtins")
        self.assertEqual(seen["path0"], str(self.tmp / "sub"))
        self.assertSame(str(self.tmp / "sub" / "probe.py"))
        # sys.path[0] follows the symlink, __file__ does not.
        self.assertSame("link.py", "x")

    def test_module(self):
        seen = self.assertSame("-m", "pkg.probe", "x", "-c", "y")
        self.assertEqual(seen["argv"], [str(self.tmp / "pkg" / "probe.py"), "x", "-c", "y"])
        self.assertSame("-m", "pkg", "x")  # a package's __main__
        self.assertSame("-mpkg.probe")

    def test_code(self):
        seen = self.assertSame("-c", PROBE, "x", "-m")
        self.assertEqual(seen["argv"], ["-c", "x", "-m"])
        self.assertEqual(seen["path0"], "")
        self.assertEqual(seen["code file"], "<string>")

    def test_directory_and_zip(self):
        self.assertSame("app", "x")
        self.assertSame("app.zip", "y")


if __name__ == "__main__":
    run_tests()
