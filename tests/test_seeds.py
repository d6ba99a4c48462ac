"""Seeds fixed per test: the same inputs on every run, replayable and explorable with GDL_TEST_SEED."""

import zlib

import pytest
import torch

from tests.conftest import SEED_VARIABLE, seed_for


def test_seed_is_the_crc32_of_the_test_id_unless_asked_otherwise(monkeypatch):
    monkeypatch.delenv(SEED_VARIABLE, raising=False)
    assert seed_for("tests/a.py::test_b[x]") == zlib.crc32(b"tests/a.py::test_b[x]") == seed_for("tests/a.py::test_b[x]")
    assert seed_for("tests/a.py::test_b[x]") != seed_for("tests/a.py::test_b[y]")
    monkeypatch.setenv(SEED_VARIABLE, "17")
    assert seed_for("tests/a.py::test_b[x]") == 17
    monkeypatch.setenv(SEED_VARIABLE, "random")
    assert len({seed_for("tests/a.py::test_b[x]") for _ in range(5)}) > 1
    monkeypatch.setenv(SEED_VARIABLE, "seventeen")
    with pytest.raises(pytest.UsageError, match="must be an integer or 'random'"):
        seed_for("tests/a.py::test_b[x]")


def test_generator_and_global_generators_start_from_this_tests_seed(request, generator, test_seed):
    assert test_seed == seed_for(request.node.nodeid)
    expected = torch.Generator().manual_seed(test_seed)
    assert torch.equal(torch.rand(4, generator=generator), torch.rand(4, generator=expected))
    assert torch.equal(torch.rand(4), torch.rand(4, generator=torch.Generator().manual_seed(test_seed)))
