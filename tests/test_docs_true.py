"""The docs name what exists: docs/architecture.md's tree is the package, every ``lfbtool.x.y`` name and
repository path in the docs and comments exists, and no module outgrows 400 lines.

Read statically (ast, no imports), so these run in milliseconds and import no torch.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lfbtool"
MAX_LINES = 400
TREE_MARK = "<!-- tree: every lfbtool module, one per line -->"

DOTTED = re.compile(r"(?<![\w./])lfbtool(?:\.[A-Za-z_]\w*)+")
#: A repository path: starts with a top-level directory of the repository or a package of lfbtool.
PATH = re.compile(r"(?<![\w./-])((?:[\w-]+/)+[\w.-]+\.(?:py|md|toml|txt))\b")
#: Dotted names that are examples of the pattern, not references.
NOT_REFERENCES = {"lfbtool.__file__"}


def package_modules() -> set[str]:
    return {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def documented_tree(text: str) -> list[str]:
    """The module paths of the tree block that follows TREE_MARK: lines starting in column 0."""
    after = text.split(TREE_MARK, 1)[1]
    block = after.split("```", 2)[1]
    entries = []
    for line in block.splitlines()[1:]:  # the first line is the fence's info string
        if line and not line[0].isspace():
            entries.append(line.split()[0])
    return entries


def test_architecture_tree_is_the_package() -> None:
    entries = documented_tree((ROOT / "docs" / "architecture.md").read_text())
    assert len(entries) == len(set(entries)), "a module is listed twice in docs/architecture.md"
    modules = package_modules()
    missing = sorted(modules - set(entries))
    stale = sorted(set(entries) - modules)
    assert not missing and not stale, (
        f"docs/architecture.md's tree differs from the package: not listed {missing}; no such module {stale}")


def test_documented_tree_parser() -> None:
    text = f"intro\n{TREE_MARK}\n```\nlfbtool/a.py   one\n                more words b.py\nlfbtool/b/c.py two\n```\nafter"
    assert documented_tree(text) == ["lfbtool/a.py", "lfbtool/b/c.py"]


def test_no_module_over_400_lines() -> None:
    long = {path: n for path in package_modules() if (n := len((ROOT / path).read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by idea): {long}"


def _scanned_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for top in ("lfbtool", "benchmarks", "examples"):
        files += sorted(p for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts)
    files += sorted((ROOT / "examples").glob("*.toml"))
    files += [ROOT / "Makefile", ROOT / "pyproject.toml"]
    return files


def _collect(body: list[ast.stmt], names: dict[str, dict | None]) -> None:
    """Top-level names of a module (or a class body): defs, classes (with their members), assignments,
    imports, ``__all__`` entries, including those under if / try (TYPE_CHECKING, fallbacks)."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = None
        elif isinstance(node, ast.ClassDef):
            members: dict[str, dict | None] = {}
            _collect(node.body, members)
            for sub in ast.walk(node):  # attributes set on self in methods
                if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == "self":
                    members.setdefault(sub.attr, None)
            names[node.name] = members
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        names[leaf.id] = None
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                for name in ast.literal_eval(node.value):
                    names.setdefault(name, None)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = None
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            _collect(node.body, names)
            _collect(getattr(node, "orelse", []), names)
            for handler in getattr(node, "handlers", []):
                _collect(handler.body, names)


@cache
def _module_names(path: Path) -> dict[str, dict | None]:
    names: dict[str, dict | None] = {}
    _collect(ast.parse(path.read_text()).body, names)
    return names


def name_exists(dotted: str) -> bool:
    """``lfbtool.a.b.c``: the longest prefix that is a module, then a top-level name of it, then at
    most one member of that name when it is a class."""
    parts = dotted.split(".")
    depth = 1
    while depth < len(parts) and (
        (ROOT.joinpath(*parts[: depth + 1]) / "__init__.py").exists()
        or ROOT.joinpath(*parts[: depth + 1]).with_suffix(".py").exists()
    ):
        depth += 1
    rest = parts[depth:]
    if not rest:
        return True
    module = ROOT.joinpath(*parts[:depth])
    names = _module_names(module / "__init__.py" if module.is_dir() else module.with_suffix(".py"))
    if rest[0] not in names:
        return False
    if len(rest) == 1:
        return True
    members = names[rest[0]]
    return len(rest) == 2 and members is not None and rest[1] in members


def path_exists(path: str) -> bool | None:
    """True / False for a path inside this repository (or lfbtool/); None for someone else's path."""
    first = path.split("/", 1)[0]
    tops = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")}
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    if first in tops:
        return (ROOT / path).exists()
    if first in packages:
        return (PACKAGE / path).exists()
    return None


def stale_references() -> list[str]:
    found = []
    for file in _scanned_files():
        text = file.read_text()
        for match in DOTTED.finditer(text):
            name = match.group(0)
            if name not in NOT_REFERENCES and not name_exists(name):
                found.append(f"{file.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}: {name}")
        for match in PATH.finditer(text):
            if path_exists(match.group(1)) is False:
                found.append(f"{file.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(1)}")
        if "../shared/" in text:
            found.append(f"{file.relative_to(ROOT)}: ../shared/ is not part of the repository")
    return found


def test_docs_and_comments_name_what_exists() -> None:
    stale = stale_references()
    assert not stale, "references to modules, names or files that do not exist:\n" + "\n".join(stale)


@pytest.mark.parametrize(("name", "exists"), [
    ("lfbtool.bank.format.FORMAT_VERSION", True),
    ("lfbtool.bank.writer.BankWriter.close", True),
    ("lfbtool.gradcam", True),  # a lazy public name of the root (in __all__)
    ("lfbtool.gradcam.gradcam", False),  # the function has no such attribute
    ("lfbtool.grad_cam", False),
    ("lfbtool.bank.writer.BankWriter.no_such_method", False),
    ("lfbtool.recognize_job", False),
])
def test_name_resolution(name: str, exists: bool) -> None:
    assert name_exists(name) is exists


@pytest.mark.parametrize(("path", "exists"), [
    ("lfbtool/bank/format.py", True),
    ("bank/format.py", True),
    ("bank/shards.py", False),
    ("lfbtool/safe_pickle.py", False),
    ("docs/no-such.md", False),
    ("mmaction/models/backbones/vit_mae.py", None),
])
def test_path_resolution(path: str, exists: bool | None) -> None:
    assert path_exists(path) is exists


def test_docs_name_the_current_bank_format_version() -> None:
    from lfbtool.bank.format import FORMAT_NAME, FORMAT_VERSION

    readme = next(line for line in (ROOT / "README.md").read_text().splitlines() if "docs/bank-format.md` —" in line)
    heading = (ROOT / "docs" / "bank-format.md").read_text().splitlines()[0]
    for where, text in (("README.md", readme), ("docs/bank-format.md", heading)):
        found = re.search(rf"`{FORMAT_NAME}`,? version (\d+)", text)
        assert found and int(found.group(1)) == FORMAT_VERSION, f"{where} names another format version: {text}"


def documented_package_arrows(text: str) -> set[tuple[str, str]]:
    """``a --> b & c`` lines of the mermaid block in docs/architecture.md as (a, b), (a, c)."""
    block = text.split("```mermaid", 1)[1].split("```", 1)[0]
    arrows = set()
    for line in block.splitlines():
        if "-->" in line:
            source, targets = line.split("-->")
            arrows |= {(source.strip(), target.strip()) for target in targets.split("&")}
    return arrows


def package_arrows() -> set[tuple[str, str]]:
    """Package -> package imports of lfbtool (modules of the root package left out)."""
    from tests.test_imports import import_graph

    def package(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else None

    return {(package(a), package(b)) for a, targets in import_graph().items() for b in targets
            if package(a) and package(b) and package(a) != package(b)}


def test_architecture_diagram_is_the_import_graph() -> None:
    documented = documented_package_arrows((ROOT / "docs" / "architecture.md").read_text())
    actual = package_arrows()
    assert documented == actual, (f"docs/architecture.md's diagram differs from the imports: missing "
                                  f"{sorted(actual - documented)}; not imported {sorted(documented - actual)}")


def test_diagram_parser() -> None:
    assert documented_package_arrows("x\n```mermaid\ngraph TD\n  a --> b & c\n  c --> b\n```\n") == {
        ("a", "b"), ("a", "c"), ("c", "b")}


#: Options of other programs named in the docs (torchrun's) and options the docs say do not exist.
FOREIGN_OPTIONS = {"--nproc_per_node", "--nnodes", "--node_rank", "--rdzv_backend", "--rdzv_endpoint", "--rdzv_id",
                   "--rdzv_", "--master_addr", "--master_port", "--standalone", "--break-lock"}


def test_documented_options_exist() -> None:
    """Every ``--option`` in README and docs/ is an option of some lfbtool command (lines about the
    benchmark scripts, which have their own options, aside)."""
    import typer.main

    from lfbtool.cli import app

    command = typer.main.get_command(app)
    options = {"--help"} | {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    for sub in command.commands.values():
        options |= {o for p in sub.params for o in (*p.opts, *p.secondary_opts)}
    unknown = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if "benchmarks/" in line:
                continue
            for found in re.finditer(r"(?<![\w-])--[a-z][\w-]*", line):
                if found.group(0) not in options | FOREIGN_OPTIONS:
                    unknown.append(f"{doc.relative_to(ROOT)}:{number}: {found.group(0)}")
    assert not unknown, "options no lfbtool command has:\n" + "\n".join(unknown)


def test_readme_lists_every_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    unlisted = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if f"- `docs/{p.name}` —" not in readme]
    assert not unlisted, f"README's Documentation list lacks {unlisted}"
