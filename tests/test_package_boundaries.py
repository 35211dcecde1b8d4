"""What ships to FC (`processor/`, `checkpoints/`, `common/`) never imports the local stack (`devstack/`)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_shipped_packages_do_not_import_devstack():
    offenders = {str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.split(".")[0] == "devstack")
                 for package in ("processor", "checkpoints", "common") for path in (ROOT / package).rglob("*.py")}
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_checkpoint_stores_and_common_do_not_import_processor():
    """Checkpoint stores depend on `common/` only, so they can be used (and tested) without the processor."""
    offenders = {str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path)
                                                     if m.split(".")[0] == "processor")
                 for package in ("checkpoints", "common") for path in (ROOT / package).rglob("*.py")}
    assert {path: mods for path, mods in offenders.items() if mods} == {}
