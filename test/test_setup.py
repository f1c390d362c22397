# Owner(s): ["module: nn"]
r"""``.ci/setup``, with which the README's two commands start."""

import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

from torch.testing._internal.common_utils import run_tests, TestCase


REPO = Path(__file__).absolute().parent.parent

# Stands in for .venv/bin/python: logs each pip call, and answers the check
# that .venv is current with "yes" once pip has installed something.
FAKE_PYTHON = """\
#!/usr/bin/env bash
case "$1" in
  -m)
    if [ "$2" = pip ]; then
      echo "pip ${*:3}" >> "$FAKE_LOG"
      touch "$FAKE_STATE"
      exit 0
    fi ;;
  -I)
    cat > /dev/null
    [ -f "$FAKE_STATE" ] && exit 0 || exit 1 ;;
esac
echo "unexpected: $*" >&2
exit 3
"""


@unittest.skipIf(shutil.which("bash") is None, "bash is needed")
class TestSetup(TestCase):
    def setUp(self):
        super().setUp()
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name) / "repo"
        (self.root / ".ci").mkdir(parents=True)
        shutil.copy(REPO / ".ci" / "setup", self.root / ".ci" / "setup")
        shutil.copy(REPO / "pyproject.toml", self.root / "pyproject.toml")
        bin_dir = self.root / ".venv" / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "python").write_text(FAKE_PYTHON)
        (bin_dir / "python").chmod(0o755)
        self.log = Path(tmp.name) / "log"
        self.state = Path(tmp.name) / "installed"
        self.log.write_text("")

    def setup(self):
        env = dict(os.environ, FAKE_LOG=str(self.log), FAKE_STATE=str(self.state))
        result = subprocess.run(
            ["bash", ".ci/setup"], cwd=self.root, env=env, capture_output=True, text=True
        )
        self.assertEqual(result.returncode, 0, msg=result.stderr)
        return result.stdout + result.stderr

    def pip_calls(self):
        return self.log.read_text().splitlines()

    def test_does_nothing_when_current(self):
        self.setup()
        self.assertExpectedInline(
            "\n".join(self.pip_calls()),
            """\
pip install -q --disable-pip-version-check torch==2.13.0
pip install -q --disable-pip-version-check -e .[test,docs]""",
        )
        for _ in range(2):
            self.assertEqual(self.setup(), "")
            self.assertEqual(len(self.pip_calls()), 2)

    def test_installs_again_when_out_of_date(self):
        self.setup()
        # pyproject.toml changed: its requirements may have.
        with open(self.root / "pyproject.toml", "a") as f:
            f.write("\n# changed\n")
        self.setup()
        self.assertEqual(len(self.pip_calls()), 4)
        self.assertEqual(self.setup(), "")
        self.assertEqual(len(self.pip_calls()), 4)
        # .venv no longer has this checkout (or torch 2.13.0).
        self.state.unlink()
        self.setup()
        self.assertEqual(len(self.pip_calls()), 6)
        # A setup that failed half way is not taken for a current one.
        (self.root / ".venv" / ".setup-done").unlink()
        self.setup()
        self.assertEqual(len(self.pip_calls()), 8)


if __name__ == "__main__":
    run_tests()
