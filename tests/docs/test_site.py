"""The documentation site builds without a warning: a renamed module, class or argument named in the
docs, a broken link or a missing page fails here."""

import os
import subprocess
import sys

from tests.docs.markdown_blocks import ROOT


def test_mkdocs_build_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "api" / "ops" / "index.html").is_file()
