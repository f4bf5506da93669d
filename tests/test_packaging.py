"""What the sdist and the wheel ship, built with hatchling in-process (a few seconds, no network)."""

import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import img2vid

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("hatchling")
if not (ROOT / "pyproject.toml").is_file():
    pytest.skip("not a source tree", allow_module_level=True)


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> list[str]:
    from hatchling.builders.sdist import SdistBuilder

    (path,) = SdistBuilder(str(ROOT)).build(directory=str(tmp_path_factory.mktemp("sdist")))
    with tarfile.open(path) as archive:
        top = f"img2vid-{img2vid.__version__}/"
        return [name.removeprefix(top) for name in archive.getnames()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    from hatchling.builders.wheel import WheelBuilder

    (path,) = WheelBuilder(str(ROOT)).build(directory=str(tmp_path_factory.mktemp("wheel")))
    return zipfile.ZipFile(path)


def test_sdist_ships_what_its_tests_examples_and_docs_read(sdist):
    for name in ["LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "mkdocs.yml", "img2vid/__init__.py",
                 "docs/api.md", "docs/sphinx_roles.py", "tests/conftest.py"]:
        assert name in sdist
    for folder in ["examples", "benchmarks", "docs", "tests"]:
        shipped = {n for n in sdist if n.startswith(f"{folder}/")}
        on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / folder).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts}
        assert on_disk <= shipped, sorted(on_disk - shipped)


def test_wheel_ships_the_package_and_its_license_only(wheel):
    names = wheel.namelist()
    assert {n.split("/")[0] for n in names} == {"img2vid", f"img2vid-{img2vid.__version__}.dist-info"}
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "img2vid/py.typed" in names


def test_wheel_metadata_tells_the_truth(wheel):
    (path,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = Parser().parsestr(wheel.read(path).decode())
    assert metadata["Version"] == img2vid.__version__  # one version source: img2vid/__init__.py
    assert metadata["License-Expression"] == "MIT"
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert {"Documentation", "Source", "Changelog"} <= set(urls)
    assert len({url.split("/")[3] for url in urls.values() if "github.com" in url}) == 1  # one owner
