"""The documentation: ``mkdocs build --strict`` succeeds, and the API pages render the
docstrings' reStructuredText (roles, math, literal blocks) instead of showing it raw."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RAW_RST = re.compile(r":(?:func|meth|class|mod|data|attr|obj|exc|math):`|\.\. (?:math|code)::")


def _extension():
    path = ROOT / "docs" / "_ext" / "rst_to_markdown.py"
    spec = importlib.util.spec_from_file_location("rst_to_markdown", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"
    return out


def test_build_is_strict_clean_and_complete(site):
    for page in ("index.html", "getting-started/index.html", "api/energy/index.html"):
        assert (site / page).is_file(), page
    for page in ("concepts", "examples", "benchmarks", "scaling"):
        assert (site / page).is_dir(), page
    # the example pages embed their figures (a missing image fails the strict build)
    for page in (site / "examples").glob("*/index.html"):
        assert "<img" in page.read_text(), page


def test_every_public_module_has_an_api_page():
    package = ROOT / "numpyro_ebm"
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in package.rglob("*.py")
        if not any(part.startswith("_") for part in path.relative_to(package).parts)
    }
    documented = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        documented |= set(re.findall(r"^::: (numpyro_ebm[\w.]*)", page.read_text(), re.M))
    # packages whose modules each have their own block count as documented
    missing = {
        m for m in modules - documented if not any(d.startswith(m + ".") for d in documented)
    }
    assert not missing, f"public modules without an API page: {sorted(missing)}"


def test_api_pages_have_no_raw_rst(site):
    pages = sorted((site / "api").rglob("*.html"))
    assert len(pages) >= 15
    for page in pages:
        raw = RAW_RST.findall(page.read_text())
        assert not raw, f"{page.relative_to(site)} shows raw RST: {raw[:5]}"


def test_api_math_and_cross_references_render(site):
    html = (site / "api" / "energy" / "index.html").read_text()
    # inline and display math become arithmatex spans and blocks, typeset by KaTeX
    assert r'<span class="arithmatex">\(E(x) \in \mathbb{R}\)</span>' in html
    assert re.search(r'<div class="arithmatex">\\\[\s*p_T\(x\) = \\frac', html)
    # :func:`potential_fn` (same module) and :func:`numpyro_ebm.sample` (a re-export) link to
    # their API entries; the literal block of energy_factor is highlighted code
    assert 'href="#numpyro_ebm.energy.potential_fn"><code>potential_fn()</code></a>' in html
    assert 'href="../sampling/#numpyro_ebm.sampling.sample"' in html
    assert re.search(r'<div class="highlight"><pre>.{0,300}?<span class="k">def</span>', html, re.S)


def test_pages_load_nothing_from_the_network(site):
    for page in site.rglob("*.html"):
        html = page.read_text()
        remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', html)
        remote = [url for url in remote if not url.startswith("https://github.com")]
        assert not remote, f"{page.relative_to(site)} loads {remote}"
    assert (site / "assets" / "katex" / "katex.min.js").is_file()


def test_rst_conversion_rules():
    ext = _extension()
    text = """Intro :math:`E(x)` and :func:`~a.b.fn`, :class:`a.B`, ``code``.

.. math::

    x = \\frac{1}{2}

Example::

    y = f(x)

* item (:func:`g`)::

      z = 1

=======  ==========
``one``  first row
``two``  second row
=======  ==========
"""
    out = ext.rst_to_markdown(text)
    assert "Intro $E(x)$ and `fn()`, `a.B`, ``code``." in out
    assert "$$\nx = \\frac{1}{2}\n$$" in out
    assert "Example:\n\n```python\ny = f(x)\n```" in out
    assert "* item (`g()`):\n\n    ```python\n    z = 1\n    ```" in out
    assert "* ``one``: first row\n* ``two``: second row" in out
    assert not RAW_RST.search(out)
    # a resolvable name becomes an optional autoref (plain text if its page is not built)
    linked = ext.convert_roles(":func:`~pkg.mod.fn`", lambda name: "pkg.mod.fn")
    assert linked == '<autoref identifier="pkg.mod.fn" optional><code>fn()</code></autoref>'
    # a role wrapped over two lines is still converted
    assert ext.convert_roles(":math:`a +\n    b`") == "$a + b$"
