"""The package's layers, checked from the source: a stage module never imports another stage module (the
orchestrators do: the demo stage, api.py, cli.py, session.py), and nothing else imports the stages."""

import ast
from pathlib import Path

import discl

PACKAGE = Path(discl.__file__).parent
ORCHESTRATORS = {"discl.api", "discl.cli", "discl.session", "discl.stages.demo"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, as absolute names (``from . import x`` counts as ``package.x``), including
    imports inside functions."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out.add(module)
            out |= {f"{module}.{alias.name}" for alias in node.names}  # `from . import score` imports a module
    return out


def _stage_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((PACKAGE / "stages").glob("*.py")) if p.name != "__init__.py"}


def _importers_of_stages(paths) -> dict[str, list[str]]:
    stages = set(_stage_modules())
    bad = {}
    for path in paths:
        name = _module_name(path)
        found = sorted(m for m in imported_modules(path) if m in stages and m != name)
        if found:
            bad[name] = found
    return bad


def test_no_stage_module_imports_another():
    stages = _stage_modules()
    assert "discl.stages.score" in stages and "discl.stages.demo" in stages  # the check sees the stages
    bad = _importers_of_stages(p for name, p in stages.items() if name not in ORCHESTRATORS)
    assert bad == {}, f"stage modules importing other stages (move what they share out of stages/): {bad}"


def test_only_the_orchestrators_import_the_stages():
    others = [p for p in sorted(PACKAGE.rglob("*.py"))
              if "stages" not in p.relative_to(PACKAGE).parts and _module_name(p) not in ORCHESTRATORS]
    assert len(others) > 50
    bad = _importers_of_stages(others)
    bad |= {_module_name(p): ["discl.stages"] for p in others if "discl.stages" in imported_modules(p)}
    assert bad == {}, f"modules outside the orchestrators importing stages: {bad}"


def test_the_import_parser_sees_relative_lazy_and_absolute_imports():
    stage = PACKAGE / "stages" / "mine.py"
    found = imported_modules(stage)
    assert {"discl.mining", "discl.model_cache", "discl.rundir"} <= found
    assert "discl.scoring.zero_shot" in found  # imported inside a function
    demo = imported_modules(PACKAGE / "stages" / "demo.py")
    assert "discl.stages.score" in demo  # `from .score import run_score`, allowed in the demo only
    assert "discl.stages.evaluate" in imported_modules(PACKAGE / "api.py")
