"""The tests' own layout (docs/testing.md): unit tests under tests/unit/<package>/, integration tests
under tests/integration/<what they go through>/, shared helpers in tests/support/ and fixtures in
tests/conftest.py; no test module imports another."""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def modules():
    return sorted(TESTS.rglob("test_*.py"))


def test_no_test_module_imports_another():
    found = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if not node.level else ["(relative)"]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name == "(relative)" or (name == "tests" or name.startswith("tests.")) \
                        and not name.startswith("tests.support"):
                    found.append(f"{path.relative_to(TESTS)}:{node.lineno} imports {name}")
    assert not found, "a test module imports another (put shared code in tests/support or conftest.py):\n" \
        + "\n".join(found)


def test_every_test_module_is_a_unit_or_an_integration_test():
    outside = [str(p.relative_to(TESTS)) for p in modules()
               if p.relative_to(TESTS).parts[0] not in ("unit", "integration")]
    assert not outside, f"test modules outside tests/unit and tests/integration: {outside}"
    loose = [str(p.relative_to(TESTS)) for p in TESTS.glob("*.py") if p.name not in ("__init__.py", "conftest.py")]
    assert not loose, f"Python files at the top of tests/ (helpers go in tests/support): {loose}"


def test_every_test_folder_is_a_package():
    """tests/ is imported as a package (``tests.support``); a folder without __init__.py would make two
    test modules of one name (unit/tasks/test_x.py, integration/kernel/test_x.py) clash."""
    folders = {TESTS / "support"}
    for path in modules():
        folders |= {path.parent, *[d for d in path.parents if TESTS in d.parents]}
    missing = sorted(str(f.relative_to(TESTS)) for f in folders if not (f / "__init__.py").exists())
    assert not missing, f"folders without __init__.py: {missing}"
