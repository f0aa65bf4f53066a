"""Griffe extension: render the library's reStructuredText docstrings as Markdown.

The docstrings of numpyro-ebm are numpydoc with Sphinx markup. mkdocstrings parses the numpydoc
sections itself but renders the text as Markdown, so before that this extension rewrites, in
every docstring of the package (modules, classes, functions, attributes):

* ``:math:`x``` -> ``$x$`` and ``.. math::`` blocks -> ``$$ ... $$`` (pymdownx.arithmatex);
* ``:func:`~a.b.c``` and the other Python roles -> a code span (``c()``, ``a.b.c()``), linked
  to the object's API entry when the name resolves inside the package (relative names such as
  ``~.buffer.ReplayBuffer`` are looked up from the docstring's module outwards), plain code
  otherwise (``jax.jit``, ``arviz.InferenceData``);
* literal blocks (``text::`` + an indented block) and ``.. code::`` / ``.. code-block::``
  directives -> fenced code blocks;
* RST simple tables (``=====  =====`` borders) -> Markdown tables or, without a header row,
  bullet lists.

RST's ``double backticks`` are already Markdown code spans and ``*emphasis*`` is the same in
both, so they are left alone. Links are written as ``<autoref ... optional>`` elements, which
mkdocs-autorefs resolves to the rendered API entry and otherwise leaves as plain text: a name
that the API pages do not render never breaks a strict build.

Enabled in ``mkdocs.yml`` under ``plugins.mkdocstrings.handlers.python.options.extensions``.
"""

from __future__ import annotations

import html
import re
import textwrap
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:py:)?(?P<role>math|func|meth|class|mod|data|attr|obj|exc|const|ref|term)"
    r":`(?P<body>[^`]+)`"
)
_CALLABLE_ROLES = {"func", "meth"}
_SIMPLE_TABLE_BORDER = re.compile(r"^\s*=+(?:\s+=+)+\s*$")
_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\.\s+(?P<name>[\w-]+)::\s*(?P<argument>.*)$")
_FENCE_LANGUAGE = "python"
_LIST_ITEM = re.compile(r"^(?P<indent>\s*)(?:[*+-]|\d+[.)])\s")


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def _block_extent(lines: list[str], start: int, parent_indent: int) -> int:
    """Index just past the indented block that starts at or after ``start`` (blank lines
    before it skipped, trailing blank lines excluded)."""
    end = start
    last_content = start
    while end < len(lines):
        line = lines[end]
        if line.strip():
            if _indent_of(line) <= parent_indent:
                break
            last_content = end + 1
        end += 1
    return last_content


def _content_indent(lines: list[str], i: int) -> int:
    """Indentation for a block that belongs to the paragraph ending at line ``i``: inside a
    list item, four columns past the item's marker column (what Python-Markdown nests)."""
    j = i
    while j >= 0 and lines[j].strip():
        item = _LIST_ITEM.match(lines[j])
        if item:
            return len(item["indent"]) + 4
        if _indent_of(lines[j]) < _indent_of(lines[i]):
            break
        j -= 1
    return _indent_of(lines[i])


def _dedented(lines: list[str]) -> list[str]:
    return textwrap.dedent("\n".join(lines)).strip("\n").split("\n")


def _fence(indent: str, body: list[str], language: str) -> list[str]:
    return ["", f"{indent}```{language}", *[f"{indent}{line}" for line in body], f"{indent}```", ""]


def _math_block(indent: str, body: list[str]) -> list[str]:
    return ["", f"{indent}$$", *[f"{indent}{line}" for line in body], f"{indent}$$", ""]


def _simple_table(lines: list[str]) -> list[str]:
    """Convert an RST simple table (its lines, borders included) to Markdown."""
    indent = " " * _indent_of(lines[0])
    border = lines[0]
    columns = [(m.start(), m.end()) for m in re.finditer(r"=+", border)]
    borders = [i for i, line in enumerate(lines) if _SIMPLE_TABLE_BORDER.match(line)]

    def cells(line: str) -> list[str]:
        out = []
        for k, (start, end) in enumerate(columns):
            stop = columns[k + 1][0] if k + 1 < len(columns) else None
            out.append(line[start:stop].strip() if stop is not None else line[start:].strip())
            del end
        return out

    has_header = len(borders) >= 3
    header = [cells(line) for line in lines[borders[0] + 1 : borders[1]]] if has_header else []
    body_start = borders[1] + 1 if has_header else borders[0] + 1
    rows = [cells(line) for line in lines[body_start : borders[-1]] if line.strip()]
    if not has_header and len(columns) == 2:
        return ["", *[f"{indent}* {name}: {text}" for name, text in rows], ""]
    titles = header[0] if header else [""] * len(columns)
    out = ["", indent + "| " + " | ".join(titles) + " |"]
    out.append(indent + "|" + " --- |" * len(columns))
    out += [indent + "| " + " | ".join(row) + " |" for row in rows]
    return [*out, ""]


def _is_section_header(lines: list[str], i: int) -> bool:
    return (
        i + 1 < len(lines)
        and bool(lines[i].strip())
        and re.fullmatch(r"\s*-{3,}\s*", lines[i + 1]) is not None
        and _indent_of(lines[i]) == _indent_of(lines[i + 1])
    )


def prose_returns(text: str) -> str:
    """Numpydoc reads the first line of a ``Returns`` / ``Yields`` entry as a type. Where the
    docstring writes a sentence there instead (``Array of shape ...``, a code span, a line
    that wraps), turn the section into one untyped entry, ``:`` then the indented text, so
    that the sentence is rendered as the description (the type falls back to the signature's
    return annotation)."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not (_is_section_header(lines, i) and lines[i].strip() in ("Returns", "Yields")):
            out.append(lines[i])
            i += 1
            continue
        out += lines[i : i + 2]
        start = end = i + 2
        while end < len(lines) and not _is_section_header(lines, end):
            end += 1
        body = lines[start:end]
        content = [k for k, line in enumerate(body) if line.strip()]
        if content:
            first = body[content[0]]
            base = _indent_of(first)
            wraps = len(content) > 1 and _indent_of(body[content[1]]) == base
            if wraps or "`" in first or "$" in first or first.rstrip().endswith("."):
                indent = " " * base
                body = [
                    *body[: content[0]],
                    f"{indent}:",
                    *[
                        f"{indent}    {line[base:]}" if line.strip() else line
                        for line in body[content[0] :]
                    ],
                ]
        out += body
        i = end
    return "\n".join(out)


def convert_blocks(text: str) -> str:
    """Rewrite the block-level RST constructs (math, code, literal blocks, simple tables)."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence = not in_fence
            out.append(line)
            i += 1
            continue
        if in_fence:
            out.append(line)
            i += 1
            continue
        directive = _DIRECTIVE.match(line)
        if directive and directive["name"] in ("math", "code", "code-block", "sourcecode"):
            indent = directive["indent"]
            end = _block_extent(lines, i + 1, len(indent))
            body = [directive["argument"]] if directive["argument"].strip() else []
            if directive["name"] == "math":
                content = lines[i + 1 : end]
                body += _dedented(content) if any(s.strip() for s in content) else []
                out += _math_block(indent, body)
            else:
                language = directive["argument"].strip() or _FENCE_LANGUAGE
                out += _fence(indent, _dedented(lines[i + 1 : end]), language)
            i = end
            continue
        if _SIMPLE_TABLE_BORDER.match(line):
            borders, j = [i], i + 1
            while j < len(lines) and (lines[j].strip() or len(borders) < 2):
                if _SIMPLE_TABLE_BORDER.match(lines[j]):
                    borders.append(j)
                j += 1
            last = borders[-1]
            # a third border closes a table whose second border ended the header
            if len(borders) >= 2:
                out += _simple_table(lines[i : last + 1])
                i = last + 1
                continue
        if stripped.endswith("::") and not stripped.startswith(".."):
            indent = _indent_of(line)
            end = _block_extent(lines, i + 1, indent)
            block = lines[i + 1 : end]
            if any(s.strip() for s in block):
                if stripped == "::":
                    pass  # the marker alone on its line disappears
                elif stripped.endswith(" ::"):
                    out.append(line.rstrip()[:-3])
                else:
                    out.append(line.rstrip()[:-1])  # "text::" reads "text:"
                fence_indent = " " * _content_indent(lines, i)
                out += _fence(fence_indent, _dedented(block), _FENCE_LANGUAGE)
                i = end
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


class _Resolver:
    """Find the canonical path of a name used in a docstring of ``obj``'s package."""

    def __init__(self, package: griffe.Module):
        self.package = package

    def lookup(self, path: str) -> str | None:
        root = self.package.path
        if path == root:
            return root
        if not path.startswith(root + "."):
            return None
        try:
            found = self.package[path[len(root) + 1 :]]
        except (KeyError, ValueError, griffe.AliasResolutionError):
            return None
        try:
            target = found.final_target if found.is_alias else found
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
        return target.path if target.path.startswith(root) else None

    def resolve(self, name: str, obj: griffe.Object) -> str | None:
        relative = name.startswith(".")
        name = name.lstrip(".")
        scopes = []
        scope: Any = obj
        while scope is not None:
            scopes.append(scope.path)
            scope = scope.parent
        candidates = [f"{s}.{name}" for s in scopes]
        if not relative:
            candidates.insert(0, name)
        for candidate in candidates:
            found = self.lookup(candidate)
            if found is not None:
                return found
        return None


def convert_roles(text: str, resolve=lambda name: None) -> str:
    """Rewrite the inline roles of ``text`` outside code fences and math blocks."""

    def role(match) -> str:
        kind, body = match["role"], match["body"]
        if kind == "math":
            return f"${body.strip()}$"
        explicit = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", body)
        if explicit:
            title, target = explicit["title"], explicit["target"]
        else:
            target = body.lstrip("~!")
            shown = target.lstrip(".")
            title = shown.rsplit(".", 1)[-1] if body.startswith("~") else shown
            if kind in _CALLABLE_ROLES:
                title += "()"
        path = resolve(target.lstrip("~!"))
        if path is None:
            return f"`{title}`"
        return (
            f'<autoref identifier="{html.escape(path)}" optional>'
            f"<code>{html.escape(title)}</code></autoref>"
        )

    # roles may wrap over lines: substitute over each run of lines outside fences and math
    # blocks; a wrapped role is joined onto one line (it is one span of text either way)
    out: list[str] = []
    run: list[str] = []
    in_block = False

    def flush() -> None:
        if run:
            joined = _ROLE.sub(lambda m: role(_Unwrapped(m)), "\n".join(run))
            out.extend(joined.split("\n"))
            run.clear()

    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("```") or stripped == "$$":
            flush()
            in_block = not in_block
            out.append(line)
        elif in_block:
            out.append(line)
        else:
            run.append(line)
    flush()
    return "\n".join(out)


class _Unwrapped:
    """A role match whose groups have their line breaks (and the indentation after them)
    collapsed to single spaces."""

    def __init__(self, match: re.Match):
        self.match = match

    def __getitem__(self, name: str) -> str:
        return re.sub(r"\s*\n\s*", " ", self.match[name])


def rst_to_markdown(text: str, resolve=lambda name: None) -> str:
    """The whole conversion of one docstring."""
    return convert_roles(convert_blocks(prose_returns(text)), resolve)


class RstToMarkdown(griffe.Extension):
    """Convert every docstring of a loaded package from RST markup to Markdown."""

    def __init__(self) -> None:
        super().__init__()
        self._done: set[int] = set()

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Griffe >= 2: the package is fully loaded."""
        if id(pkg) in self._done:
            return
        self._done.add(id(pkg))
        resolver = _Resolver(pkg)
        seen: set[int] = set()

        def visit(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = rst_to_markdown(
                    obj.docstring.value, lambda name: resolver.resolve(name, obj)
                )
            for member in obj.members.values():
                if not member.is_alias:
                    visit(member)

        visit(pkg)

    # Griffe 1.x names the same event on_package_loaded
    on_package_loaded = on_package
