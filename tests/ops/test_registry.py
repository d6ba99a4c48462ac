"""The operator registry: names, errors, and plugins declared through the ``gdl.ops`` entry points."""

import sys
import textwrap

import pytest
import torch

import gdl.ops
from gdl.ops.core import registry


def test_available_is_sorted_and_holds_the_core_operators():
    names = gdl.ops.available()
    assert names == sorted(names)
    for name in ("knn", "radius", "kernel_conv", "kernel_solve", "fps", "grid_subsample", "nadaraya_watson"):
        assert name in names


def test_get_builds_a_module_with_its_parameters():
    op = gdl.ops.get("kernel_conv", kernel="cauchy", sigma=[0.5, 1.0], backend="torch")
    assert isinstance(op, torch.nn.Module)
    assert op.kernel == "cauchy" and op.sigmas == (0.5, 1.0) and op.backend == "torch"


def test_unknown_name_lists_close_names():
    with pytest.raises(KeyError, match="did you mean 'kernel_conv'"):
        gdl.ops.get("kernel_cnv")
    with pytest.raises(KeyError, match="available operators: .*knn"):
        gdl.ops.get("zzzzzz")


def test_register_rejects_bad_names_classes_and_duplicates():
    with pytest.raises(TypeError, match="non-empty string"):
        gdl.ops.register("")
    with pytest.raises(TypeError, match="nn.Module subclass"):
        gdl.ops.register("not_a_module")(object)
    with pytest.raises(ValueError, match="already taken"):

        @gdl.ops.register("knn")
        class OtherKNN(torch.nn.Module):
            pass

    assert "not_a_module" not in gdl.ops.available()


@pytest.fixture
def plugin_environment(tmp_path, monkeypatch):
    """An installed distribution (dist-info with entry points) and its module, on sys.path."""

    def install(module_source: str, entry_points: str):
        (tmp_path / "gdl_test_plugin.py").write_text(textwrap.dedent(module_source))
        dist_info = tmp_path / "gdl_test_plugin-0.1.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: gdl-test-plugin\nVersion: 0.1\n")
        (dist_info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, "gdl_test_plugin", raising=False)
        monkeypatch.setattr(registry, "_plugins_loaded", False)
        monkeypatch.setattr(registry, "_operators", dict(registry._operators))

    return install


def test_plugin_operator_is_registered_and_works(plugin_environment):
    plugin_environment(
        """
        import torch
        from gdl.ops.core.base import Operator

        class Doubler(Operator):
            '''y = 2 x.'''

            def forward(self, x):
                return 2 * x
        """,
        "[gdl.ops]\ndoubler = gdl_test_plugin:Doubler\n",
    )
    assert "doubler" in gdl.ops.available()
    op = gdl.ops.get("doubler", backend="torch")
    assert torch.equal(op(torch.ones(3)), torch.full((3,), 2.0))


def test_broken_plugin_only_warns(plugin_environment):
    plugin_environment(
        "raise ImportError('this plugin is broken')\n",
        "[gdl.ops]\nbroken = gdl_test_plugin:Missing\n",
    )
    with pytest.warns(RuntimeWarning, match="plugin 'broken'.*this plugin is broken"):
        names = gdl.ops.available()
    assert "broken" not in names and "knn" in names
