"""Every code block of README.md and docs/ runs (or is parsed), in a scratch folder that sees the
repository's scripts, configs and shipped samples; runs write their logs and outputs there.

The python blocks of a page run in order, in one namespace, in a Python process of their own (so that
what they register or set stays out of the other tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.docs.markdown_blocks import PARSE, ROOT, RUN, SHOWN, code_blocks, markdown_pages

LINKED = ("train.py", "eval.py", "configs", "benchmarks", "gdl", "docs", "mkdocs.yml")
BLOCK_TIMEOUT_S = 600


def scratch_folder(tmp_path):
    """Links the repository's scripts, configs, samples and docs into ``tmp_path``; the environment
    the blocks run in (this Python first on PATH, run folders under ``tmp_path``)."""
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["GDL_PROJECT_ROOT"] = str(tmp_path)  # train.py's logs/ and caches
    env["WANDB_MODE"] = "offline"
    return env


def run_shell(block, folder, env):
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block.code],
        cwd=folder, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-4000:]
        pytest.fail(f"{block.where()}: exit status {done.returncode}\n{block.code}\n{output}")


PYTHON_RUNNER = """
import json, sys
namespace = {"__name__": "__main__"}
for where, code in json.load(open(sys.argv[1])):
    print("running", where, flush=True)
    exec(compile(code, where, "exec"), namespace)
"""


def run_python(blocks, folder, env):
    """Runs the python blocks of a page in one process, in order; fails naming the block that raised."""
    if not blocks:
        return
    listing = folder / "python_blocks.json"
    listing.write_text(json.dumps([(block.where(), block.code) for block in blocks]))
    done = subprocess.run(
        [sys.executable, "-c", PYTHON_RUNNER, str(listing)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S * len(blocks),
    )
    if done.returncode != 0:
        pytest.fail(f"a python block failed:\n{(done.stdout + done.stderr)[-4000:]}")


def check_parses(block):
    if block.language == "toml":
        tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
        parse = tomllib.loads
    else:
        parse = yaml.safe_load
    try:
        parse(block.code)
    except Exception as error:
        pytest.fail(f"{block.where()}: not valid {block.language}: {error}")


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda path: str(path.relative_to(ROOT)))
def test_code_blocks_run(page, tmp_path):
    """Shell blocks first run in page order, then the page's python blocks (which may read what the
    shell blocks wrote)."""
    env = scratch_folder(tmp_path)
    blocks = code_blocks(page)
    for block in blocks:
        assert block.language in RUN + PARSE + SHOWN, f"{block.where()}: unknown language {block.language!r}"
    run = [block for block in blocks if not block.skip and block.language not in SHOWN]
    for block in run:
        if block.language == "bash":
            run_shell(block, tmp_path, env)
        elif block.language in PARSE:
            check_parses(block)
    run_python([block for block in run if block.language == "python"], tmp_path, env)


def test_readme_is_short_and_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    first_blocks = [block.code for block in code_blocks(ROOT / "README.md")[:2]]
    assert "python train.py" in first_blocks[0]
    assert "bash .ci/run" in first_blocks[1]
