"""The real-time layer stands alone: nothing in `realtime` imports a project (the demo, its
`config`) or the ops dashboard built on it (`realtime_ops`)."""

import ast
from pathlib import Path

import realtime

FORBIDDEN = ("demo", "config", "realtime_ops", "ops")


def test_the_layer_imports_no_project_and_not_the_ops_dashboard():
    found = []
    for path in Path(realtime.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not found, f"the real-time layer imports a project or the ops app: {found}"
