"""Every code block of README.md and docs/**/*.md, as a reader would run it.

The rules a block follows (the README's own writers keep to them):
- A fenced block says what it holds. ```` ```python ````: IPython cells (magics included), run
  verbatim, in order, in one Jupyter kernel per file, in a fresh folder. ```` ```bash ```` (or sh,
  console, shell): shell commands; a block of `hfmagic ...` lines runs through bash, any other
  command (make, pip, ray start) makes it a block that is checked and not run. ```` ```text ```` (or any
  other language: json, ...) is not code. A fence without a language is refused: say which.
- `<!-- docs-test: skip REASON -->` on the line before a fence (blank lines between are allowed)
  keeps that block from running, and the test reports it skipped with REASON: say what it needs
  (a GPU, a Ray cluster, a folder of your own).
- Indented blocks are synopses (`%export_onnx MODEL [--levels ...]`, `make test`): neither checked
  nor run.

Two tiers. The quick one checks every block, skipped ones too, in a second: each Python block is
transformed by IPython and compiled, each magic is one the shell knows, and each hfmagic magic's
line (`%hfmagic`'s subcommands too) is read by the magic's own parser with nothing left over; each
`hfmagic` command line by the command's. The slow one runs them: the README's session loads and
builds the real demo models, exports, benchmarks, evaluates and searches (`%optimize`), tens of minutes.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support.paths import REPO

ROOT = REPO
PYTHON, SHELL = {"python", "ipython", "py"}, {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)\s*$")
SKIP = re.compile(r"^<!--\s*docs-test:\s*skip\s+(.+?)\s*-->$")
CELL_TIMEOUT = 3600  # one block: the README's session block runs a whole %optimize search


@dataclass
class Block:
    file: str  # relative to the repository
    line: int  # the fence's line, counted from 1
    lang: str
    code: str
    skip: str | None  # the reason its marker gives

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def markdown_files(root: Path = ROOT) -> list[Path]:
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("**/*.md"))] if p.is_file()]


def blocks_of(path: Path, root: Path = ROOT) -> list[Block]:
    lines = path.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence.group(1)), len(lines))
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = SKIP.match(before)
        found.append(Block(str(path.relative_to(root)), i + 1, fence.group(2).lower(), "\n".join(lines[i + 1:end]),
                           marker.group(1) if marker else None))
        i = end + 1
    return found


def shell_commands(block: Block) -> list[str]:
    return [line.strip().removeprefix("$ ") for line in block.code.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def not_run(block: Block) -> str | None:
    """Why the slow tier does not run this block, or None."""
    if block.skip:
        return block.skip
    if block.lang in SHELL:
        others = [c.split()[0] for c in shell_commands(block) if not c.startswith("hfmagic ")]
        return f"shell commands other than hfmagic ({', '.join(others)})" if others else None
    return None if block.lang in PYTHON else f"a {block.lang} block: not code"


BLOCKS = [block for path in markdown_files() for block in blocks_of(path)]

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target): the targets a reader follows
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """``(number, line)`` of a page's lines outside fenced and indented code blocks."""
    out, fence = [], None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        opened = FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)
        elif fence is not None and line.strip() == fence:
            fence = None
        elif fence is None and not line.startswith("    "):
            out.append((number, line))
    return out


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation but - and _ dropped,
    spaces as -, a repeated heading's anchor numbered (-1, -2, ...)."""
    seen: dict[str, int] = {}
    for _, line in prose_lines(path):
        heading = HEADING.match(line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            seen[slug if slug not in seen else f"{slug}-{seen[slug]}"] = 0
            seen[slug] = seen.get(slug, 0) + 1
    return set(seen)


def broken_links(path: Path) -> list[str]:
    """Each relative link of a page whose file, or whose heading after #, does not exist."""
    broken = []
    for number, line in prose_lines(path):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # https:, mailto:: not a file here
                continue
            file, _, anchor = target.partition("#")
            where = (path.parent / file).resolve() if file else path
            if not where.exists():
                broken.append(f"{path.name}:{number}: {target} (no such file)")
            elif anchor and where.suffix == ".md" and anchor not in anchors(where):
                broken.append(f"{path.name}:{number}: {target} (no such heading in {where.name})")
    return broken


LINKED = [*markdown_files(), ROOT / "benchmarks" / "README.md"]


@pytest.mark.parametrize("path", LINKED, ids=[str(p.relative_to(ROOT)) for p in LINKED])
def test_every_link_between_the_pages_leads_somewhere(path):
    assert not broken_links(path), "\n".join(broken_links(path))


def test_the_link_check_finds_a_missing_page_and_a_missing_heading(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# `%hfmagic`: the run store\n\n## Reports\n\n## Reports\n")
    (tmp_path / "README.md").write_text(
        "[a](docs/a.md) [b](docs/a.md#hfmagic-the-run-store) [c](docs/a.md#reports-1) [d](https://x.org/y)\n"
        "```text\n[in code](docs/none.md)\n```\n[e](docs/b.md) [f](docs/a.md#nothing) [g](#here)\n")
    assert broken_links(tmp_path / "README.md") == [
        "README.md:5: docs/b.md (no such file)", "README.md:5: docs/a.md#nothing (no such heading in a.md)",
        "README.md:5: #here (no such heading in README.md)"]


def test_the_rules_find_every_block_marker_and_docs_page(tmp_path):
    """The extraction itself, on a README and a docs/ page written here (docs/ is picked up when it exists)."""
    (tmp_path / "README.md").write_text("intro\n\n    %export_onnx MODEL [--levels L]\n\n```python\n%hfmagic status\n```\n\n"
                                        "<!-- docs-test: skip needs a Ray cluster -->\n\n```python\n%benchmark d --cluster "
                                        "h:6379\n```\n```bash\nhfmagic status\n```\n```bash\nmake demo\n```\n")
    (tmp_path / "docs" / "guide").mkdir(parents=True)
    (tmp_path / "docs" / "guide" / "page.md").write_text("```text\noutput\n```\n")
    files = markdown_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["README.md", "docs/guide/page.md"]
    found = [b for p in files for b in blocks_of(p, tmp_path)]
    assert [(b.id, b.lang, b.code, not_run(b)) for b in found] == [
        ("README.md:5", "python", "%hfmagic status", None),
        ("README.md:11", "python", "%benchmark d --cluster h:6379", "needs a Ray cluster"),
        ("README.md:14", "bash", "hfmagic status", None),
        ("README.md:17", "bash", "make demo", "shell commands other than hfmagic (make)"),
        ("docs/guide/page.md:1", "text", "output", "a text block: not code")]


def magic_calls(shell, code: str) -> list[tuple[str, str]]:
    """``(magic, line)`` of every line magic in a cell, as IPython's transformer writes them: the
    cell must transform and compile."""
    source = shell.transform_cell(code)
    tree = ast.parse(source)  # a SyntaxError names the line
    compile(tree, "<block>", "exec")
    calls = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("run_line_magic", "run_cell_magic")):
            calls.append(tuple(ast.literal_eval(arg) for arg in node.args[:2]))
    return calls


def check_magic(shell, name: str, line: str) -> None:
    """The magic exists; an hfmagic magic's line is read by its own parser, with nothing left over."""
    from hfmagic.surface.commands.admin import ShowHelp, parse_subcommand

    assert shell.find_line_magic(name) or shell.find_cell_magic(name), f"%{name} is no magic"
    hfm = shell.magics_manager.registry["HFMagics"]
    if name not in hfm.magics["line"]:
        return
    try:
        args = hfm.parse(name, line)  # a UsageError (unrecognized arguments: ...) fails the test
        if name == "hfmagic" and args.subcommand != "help":
            parse_subcommand(args)
    except ShowHelp:  # -h: its help is what it shows
        pass


def check_command_line(command: str) -> None:
    from hfmagic.surface.cli import commands
    from hfmagic.surface.commands.admin import ShowHelp, parser_for, subcommand

    argv = shlex.split(command, comments=True)[1:]
    table = commands()
    assert argv and argv[0] in table, f"hfmagic {argv[:1]} is no command: {', '.join(table)}"
    cmd = table[argv[0]] if not isinstance(table[argv[0]], str) else subcommand(argv[0])
    try:
        parser_for(cmd, f"hfmagic {argv[0]}").parse_args(argv[1:])
    except ShowHelp:
        pass


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_every_block_reads(shell, block):
    """The quick tier: every block, skipped ones too, is code that IPython, the magics and the
    command line read without an error."""
    assert block.lang, f"{block.id}: the fence names no language; write ```python, ```bash or ```text"
    if block.lang in PYTHON:
        for name, line in magic_calls(shell, block.code):
            check_magic(shell, name, line)
    elif block.lang in SHELL:
        for command in shell_commands(block):
            if command.startswith("hfmagic "):
                check_command_line(command)


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """One Jupyter kernel per markdown file, started on its first block, in a fresh folder (the
    kernel inherits conftest's environment: every cache and tool folder is temporary)."""
    from contextlib import ExitStack

    import nbformat
    from nbclient import NotebookClient

    started: dict[str, tuple[NotebookClient, Path]] = {}

    def kernel(file: str):
        if file not in started:
            folder = tmp_path_factory.mktemp(Path(file).stem)
            client = NotebookClient(nbformat.v4.new_notebook(), timeout=CELL_TIMEOUT, kernel_name="python3",
                                    resources={"metadata": {"path": str(folder)}})
            stack.enter_context(client.setup_kernel())
            started[file] = client, folder
        return started[file]

    with ExitStack() as stack:
        yield kernel


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_every_block_runs(kernels, block):
    """The slow tier: each block verbatim, in order, in its file's kernel (an error, a UsageError
    included, fails it); a block that cannot run here is skipped with its reason."""
    why = not_run(block)
    if why:
        pytest.skip(f"{block.id}: {why}")
    client, folder = kernels(block.file)
    if block.lang in SHELL:
        # `hfmagic` is the package of the interpreter running the tests (make test runs .venv/bin/python
        # with .venv/bin off PATH; a console script may belong to another checkout), as the CLI tests run it
        hfmagic = 'hfmagic() { "$DOCS_TEST_PYTHON" -m hfmagic "$@"; }; '
        for command in shell_commands(block):
            done = subprocess.run(["bash", "-c", hfmagic + command], cwd=folder, capture_output=True, text=True,
                                  env=dict(os.environ, DOCS_TEST_PYTHON=sys.executable), timeout=CELL_TIMEOUT)
            assert done.returncode == 0, f"{command}: {done.stderr}"
        return
    import nbformat

    cell = nbformat.v4.new_code_cell(block.code)
    client.nb.cells.append(cell)
    client.execute_cell(cell, len(client.nb.cells) - 1)  # CellExecutionError names the error and the line
