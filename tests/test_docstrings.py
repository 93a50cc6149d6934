"""Every module, class and public function (nested ones included) of the
library, the recipes and the bench tools has a docstring: SpeechBrain's
docstring rule (``tests/utils/check_docstrings.py`` in its repository),
applied to the syntax tree, so that signatures over several lines are
checked too."""

import ast
import glob
import os

from conftest import REPO

SOURCES = sorted(
    path
    for pattern in (
        "speechbrain_turbo/**/*.py",
        "recipes/*/turbo/*.py",
        "bench/*.py",
        "setup.py",
    )
    for path in glob.glob(os.path.join(REPO, pattern), recursive=True)
    if "__" not in os.path.basename(path)
)


def undocumented(path):
    """Names (with line numbers) of what lacks a docstring in ``path``."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    missing = [] if ast.get_docstring(tree) else ["the module"]
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    for node in ast.walk(tree):
        if isinstance(node, kinds) and not node.name.startswith("_"):
            if ast.get_docstring(node) is None:
                missing.append(f"{node.name} (line {node.lineno})")
    return missing


def test_every_module_class_and_function_has_a_docstring():
    assert len(SOURCES) > 40
    missing = {
        os.path.relpath(path, REPO): names
        for path in SOURCES
        if (names := undocumented(path))
    }
    assert not missing, f"add docstrings to: {missing}"
