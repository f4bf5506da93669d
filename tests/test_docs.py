"""The Python snippets of the README and the docs run as written, so they never rot.

Blocks fenced ``python`` run; blocks fenced ``py`` are illustrations that need what a test cannot have
(downloaded weights, a user's checkpoint).
"""

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_python_snippets_run(page):
    namespace: dict = {}
    for block in python_blocks(page):  # blocks of a page share one namespace, as a reader's session
        exec(compile(block, str(page), "exec"), namespace)


# --- The built site: mkdocs --strict, API docstrings rendered, every name the pages give resolves ---

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|mod|obj|exc|const):")
NAME = re.compile(r"\b(?:img2vid|i2v)(?:\.[A-Za-z_]\w*)+")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    return out


def test_site_shows_no_raw_sphinx_role(site):
    pages = sorted(site.glob("**/index.html"))
    assert len(pages) >= 10
    raw = {str(p.relative_to(site)): ROLE.findall(p.read_text()) for p in pages}
    assert not {page: found for page, found in raw.items() if found}


def test_api_examples_render_as_code(site):
    html = (site / "api" / "index.html").read_text()
    # mkdocstrings' Google parser knows "Examples:"; an "Example:" section renders as nested block quotes
    assert "<blockquote" not in html
    examples = re.findall(r"<p><span class=\"doc-section-title\">Examples:</span></p>(.*?)</div>", html, re.S)
    assert len(examples) >= 8
    assert all('class="highlight"' in example and "&gt;&gt;&gt;" in example for example in examples)


def test_api_cross_references_link(site):
    html = (site / "api" / "index.html").read_text()
    assert re.search(r'<a class="autorefs autorefs-internal"[^>]*href="#img2vid\.Genotype"><code>Genotype</code>',
                     html)
    assert "<autoref" not in html  # every optional cross-reference was resolved or turned into code


def test_api_documents_each_class_once(site):
    html = (site / "api" / "index.html").read_text()
    ids = re.findall(r'<h[2-6] id="(img2vid\.[\w.]+)"', html)
    # a class documented twice, e.g. under its module and under the package that re-exports it
    classes = [i.rsplit(".", 1)[-1] for i in ids if i.rsplit(".", 1)[-1][0].isupper()]
    assert len(ids) > 50 and len(classes) == len(set(classes)), sorted({c for c in classes if classes.count(c) > 1})


def dotted_names(page: Path) -> list[str]:
    """The ``img2vid.x.y`` names a page tells a reader to type, ``i2v.`` read as ``img2vid.``."""
    text = page.read_text()
    # a ``::: path`` directive with a ``heading:`` option shows (and documents) the heading's name
    text = re.sub(r"^::: (\S+)\n    options:\n(?:      .*\n)*?      heading: (\S+)\n", r"::: \2\n", text, flags=re.M)
    names = {re.sub(r"^i2v\b", "img2vid", name) for name in NAME.findall(text)}
    return sorted(name for name in names if name != "img2vid.egg")


def resolve(name: str) -> object:
    """The object ``name`` gives after ``import img2vid``: attributes from the top, as a user reads them.

    The longest importable module prefix is imported first (so ``img2vid.experiments.config`` becomes an
    attribute), then each part is read with ``getattr``: a package attribute that hides its submodule
    (``img2vid.temporalize`` is the function) does not resolve to the submodule's contents.
    """
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        try:
            importlib.import_module(".".join(parts[:end]))
            break
        except ImportError:
            continue
    obj = importlib.import_module(parts[0])
    for part in parts[1:]:
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("page", [p for p in PAGES if dotted_names(p)], ids=lambda p: p.name)
def test_every_dotted_name_resolves(page):
    missing = []
    for name in dotted_names(page):
        try:
            resolve(name)
        except AttributeError:
            missing.append(name)
    assert not missing, f"{page.name} names what does not exist: {missing}"


def test_resolve_reads_attributes_as_a_user_does():
    assert resolve("img2vid.fusion.TemporalShift").__name__ == "TemporalShift"
    assert callable(resolve("img2vid.experiments.config.preset"))
    with pytest.raises(AttributeError):
        resolve("img2vid.temporalize.temporalize")  # the package's temporalize is the function
    assert dotted_names(ROOT / "docs" / "api.md").count("img2vid.temporalize") == 1


def test_results_page_uses_the_layout_results_markdown_renders():
    spec = importlib.util.spec_from_file_location("results_markdown", ROOT / "benchmarks" / "results_markdown.py")
    results_markdown = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results_markdown)
    chain = ",".join(["translate_x:0.05"] * 10)
    search = {"seed": 0, "genotype": chain, "argmax": chain, "network_val_accuracy": 0.7,
              "baseline_val_accuracy": 0.64, "selection_val_drop": 0.02, "margins": [{"within_noise": True}] * 10,
              "search_s": 814.0, "time_ratio": 5.92}
    result = {"config": {"dataset": "digits", "per_class": 10, "network": "small", "width": 12, "T": 5, "epochs": 200,
                         "lr": 0.05, "batch_size": 32, "seeds": 5, "search_seeds": 1},
              "machine": {"commit": "89c1c95", "processor": "x86_64", "cpu_count": 2, "torch_threads": 1,
                          "torch": "2.14.1", "device": "cpu"},
              "data": {"test": 1597}, "wall_s": 4998.0, "verdict": "Against the baseline ...",
              "table": [{"arm": "baseline", "test_acc_mean": 0.567, "test_acc_std": 0.014, "wall_s": 94.0}],
              "search": search}
    rendered = results_markdown.render(result).splitlines()
    assert "`89c1c95`, x86_64, 2 cores" in rendered[0]  # a run recorded before the CPU was
    result["machine"]["cpu"] = "AMD EPYC (AVX2)"
    assert "`89c1c95`, AMD EPYC (AVX2), 2 cores" in results_markdown.render(result).splitlines()[0]
    page = (ROOT / "docs" / "results.md").read_text().splitlines()
    search_header = next(line for line in rendered if line.startswith("| search seed"))
    assert search_header in page and all(len(line) <= 120 for line in rendered if line.startswith("| 0 "))
    assert f"- 0: `{chain}`; arg-max `{chain}`" in rendered
    # every search table of the page has the rendered layout: no genotype wraps inside a table cell
    assert not [line for line in page if line.startswith("| search seed") and line != search_header]
    assert not [line for line in page if line.startswith("|") and "`" in line and "," in line]
