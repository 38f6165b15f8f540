"""The package's layers import one way (pyproject.toml's import-linter contract): a change that imports upward fails here."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--config", str(config), "--no-cache"], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_layers_import_one_way():
    done = lint(REPO / "pyproject.toml")
    assert done.returncode == 0 and "1 kept, 0 broken" in done.stdout, done.stdout + done.stderr


def test_the_contract_catches_an_upward_import(tmp_path):
    """The same tool on a contract that puts common above stage 1: stage 1 imports common, so it must break."""
    config = tmp_path / "upside_down.toml"
    config.write_text('[tool.importlinter]\nroot_package = "dfer_pd"\n\n[[tool.importlinter.contracts]]\n'
                      'name = "upside down"\ntype = "layers"\nlayers = ["dfer_pd.common", "dfer_pd.stage1"]\n')
    done = lint(config)
    assert done.returncode != 0 and "0 kept, 1 broken" in done.stdout, done.stdout + done.stderr
    assert "dfer_pd.stage1" in done.stdout and "dfer_pd.common" in done.stdout


def test_stage2_parser_settings_load_no_image_library_or_torch():
    """`dfer-pd train-pd --help` builds its parser from the face and stage-2 settings: they import nothing heavy."""
    code = ("import sys; import dfer_pd.commands.train_pd; "
            "print(sorted(m for m in ('cv2', 'av', 'PIL', 'dlib', 'torch', 'lightning') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def module_cycles(package: str = "dfer_pd") -> list[list[str]]:
    """Groups of modules that import each other in a circle (strongly connected parts of the import graph),
    lazy imports inside functions included (grimp reads every import statement; `if TYPE_CHECKING:` blocks,
    which never run, are left out)."""
    import grimp

    graph = grimp.build_graph(package, exclude_type_checking_imports=True)
    order, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(module: str) -> None:  # Tarjan's algorithm
        order[module] = low[module] = len(order)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in order:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], order[imported])
        if low[module] == order[module]:
            part = []
            while not part or part[-1] != module:
                part.append(stack.pop())
                on_stack.discard(part[-1])
            if len(part) > 1:
                cycles.append(sorted(part))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in order:
            visit(module)
    return cycles


def test_no_module_imports_itself_through_others():
    assert module_cycles() == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    package = tmp_path / "circle"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from circle import b\n")
    (package / "b.py").write_text("from circle import a\n")
    (package / "c.py").write_text("from circle import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert module_cycles("circle") == [["circle.a", "circle.b"]]
