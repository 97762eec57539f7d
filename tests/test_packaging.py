"""The installed package: one version, the license, py.typed, the project's metadata."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import softmaxkit

ROOT = Path(__file__).resolve().parents[1]


def meson_version() -> str:
    pattern = r"project\(\s*'softmaxkit'.*?\bversion:\s*'([^']+)'"
    found = re.search(pattern, _read("meson.build"), re.S)
    assert found, "meson.build declares no version"
    return found.group(1)


def _read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads(_read("pyproject.toml"))


def test_one_version():
    assert softmaxkit.__version__ == importlib.metadata.version("softmaxkit") == meson_version()
    # meson.build is the only place the version is written.
    project = _pyproject()["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert not re.search(r"__version__\s*=\s*['\"]", _read("src/softmaxkit/__init__.py"))


@pytest.mark.parametrize("meson_build", ["7.8.9", None], ids=["checkout", "no-meson-build"])
def test_version_of_a_source_tree_that_was_never_built(tmp_path, meson_build):
    # A copy of the source tree, imported without the installed (or editable) package:
    # no _version.py there, so the version is that of the checkout's meson.build.
    shutil.copytree(
        ROOT / "src" / "softmaxkit",
        tmp_path / "src" / "softmaxkit",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "_version.py"),
    )
    if meson_build is not None:
        (tmp_path / "meson.build").write_text(
            f"project(\n  'softmaxkit',\n  'c',\n  version: '{meson_build}',\n)\n"
        )
    script = textwrap.dedent(
        f"""
        import sys
        # Only the standard finders: an editable install's finder would serve the
        # installed package whatever sys.path says.
        sys.meta_path[:] = [
            f for f in sys.meta_path if getattr(f, "__module__", "").startswith("_frozen")
        ]
        sys.path.insert(0, {str(tmp_path / "src")!r})
        import softmaxkit
        assert softmaxkit.__file__.startswith({str(tmp_path)!r}), softmaxkit.__file__
        print(softmaxkit.__version__)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (meson_build or "0+unknown")


def test_license_file_is_installed():
    license_text = _read("LICENSE")
    assert license_text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, The softmaxkit developers" in license_text
    distribution = importlib.metadata.distribution("softmaxkit")
    assert distribution.metadata["License-Expression"] == "BSD-3-Clause"
    assert distribution.metadata.get_all("License-File") == ["LICENSE"]
    installed = [f for f in distribution.files if f.name == "LICENSE"]
    assert len(installed) == 1 and installed[0].read_text(encoding="utf-8") == license_text


def test_py_typed_is_installed():
    package = importlib.resources.files("softmaxkit")
    assert (package / "py.typed").is_file()
    # The template of _version.py is not installed; the file written from it is.
    assert not (package / "_version.py.in").is_file()
    assert (package / "_version.py").is_file()


def test_project_urls_and_classifiers():
    metadata = importlib.metadata.metadata("softmaxkit")
    urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL"))
    assert set(urls) == {"Homepage", "Documentation", "Source", "Issues"}
    assert all(u.startswith("https://github.com/softmaxkit/softmaxkit") for u in urls.values())
    classifiers = set(metadata.get_all("Classifier"))
    for expected in (
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Mathematics",
        "Typing :: Typed",
        "Programming Language :: Python :: 3 :: Only",
    ):
        assert expected in classifiers
    assert any(c.startswith("Operating System :: ") for c in classifiers)
    # The Python versions named are those from requires-python on.
    lowest = re.fullmatch(r">=3\.(\d+)", metadata["Requires-Python"])
    assert lowest
    minors = sorted(
        int(c.rsplit(".", 1)[1])
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert minors[0] == int(lowest.group(1)) and minors == list(range(minors[0], minors[-1] + 1))
    # PEP 639: the license expression replaces the "License ::" classifiers.
    assert not any(c.startswith("License ::") for c in classifiers)
