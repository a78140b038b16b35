"""The imports of ``seq2seq/`` run one way: no cycles, each package only imports the layers
below it, ``decoding`` stays free of the rest, and the CTranslate2 path does not load torch.

Every module is read with ``ast``, imports inside functions included. ``from seq2seq.x
import y`` with ``y`` a module counts as importing ``seq2seq.x.y``; importing a module
also imports the packages above it (their ``__init__``), except those of the importer
itself, which Python has always started first. ``pytest -s`` prints a summary.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seq2seq"

# The layers, lowest first. A module may import its own layer's folder and any lower layer;
# "models" and "data" share a rank but do not import each other; no command imports a command.
LEAVES = ("seq2seq", "seq2seq.special", "seq2seq.errors", "seq2seq.settings", "seq2seq.device")
COMMANDS = ("train", "prepare", "evaluate", "translate", "average", "export", "serve")
LAYERS = (
    ("leaves",),
    ("models", "data"),
    ("decoding",),
    ("checkpoints",),
    ("inference",),
    ("training",),
    ("config",),
    ("cli",),
    ("serving",),
    ("commands",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}

# What decoding may import besides itself: the searches run on any model, nothing more.
DECODING_MAY_IMPORT = ("seq2seq.models", "seq2seq.special", "seq2seq.errors", "seq2seq.settings")

# Modules that translating an export goes through: no torch at module level, here or in
# anything they import at module level (torch loads only when a .pt is converted or run).
NO_TORCH = (
    "seq2seq.inference.translator",
    "seq2seq.inference.ctranslate2.format",
    "seq2seq.inference.ctranslate2.engine",
    "seq2seq.inference.transformers.format",
)

# Known violations in modules that are being changed elsewhere: (importer, imported, rule).
ALLOWED: set[tuple[str, str, str]] = set()


@dataclass(frozen=True)
class Import:
    """One import statement's target, as the importing module sees it."""

    target: str  # a dotted module name (seq2seq.x.y) or an outside module (torch, numpy.linalg)
    line: int
    module_level: bool  # run when the module is imported: not in a function nor under TYPE_CHECKING


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``seq2seq/a/b.py`` -> ``seq2seq.a.b``; ``seq2seq/a/__init__.py`` -> ``seq2seq.a``."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, module_level: bool):
    """Yield (import node, whether it runs at module import) for every import under ``node``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, module_level
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _walk(child, False)
        elif isinstance(child, ast.If) and _is_type_checking(child):
            yield from _walk(child, False)
        else:
            yield from _walk(child, module_level)


def read_imports(path: Path, name: str, modules: set[str]) -> list[Import]:
    """The imports of the module ``name`` at ``path``; ``modules`` are all of seq2seq's,
    to tell ``from package import submodule`` from ``from module import name``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node, module_level in _walk(tree, True):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno, module_level) for alias in node.names]
            continue
        base = node.module or ""
        if node.level:  # relative: from .x import y
            parent = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parent, base] if base else parent)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            found.append(Import(sub if sub in modules else base, node.lineno, module_level))
    return found


def read_package(root: Path = PACKAGE) -> dict[str, list[Import]]:
    """Every module of the package at ``root`` with its imports."""
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    return {name: read_imports(path, name, set(paths)) for name, path in paths.items()}


def layer(module: str) -> str:
    """The layer of a seq2seq module: ``leaves``, a package's name, or ``commands``."""
    parts = module.split(".")
    if module in LEAVES or (len(parts) == 2 and parts[1] not in RANK and parts[1] not in COMMANDS):
        return "leaves"  # a new module at the top counts as a leaf: it may import leaves only
    return "commands" if len(parts) == 2 and parts[1] in COMMANDS else parts[1]


def edges(graph: dict[str, list[Import]]) -> dict[str, list[tuple[str, Import]]]:
    """For each module, the seq2seq modules it imports, with the import that does it: the
    target and the packages above it that the importer is not inside."""
    out: dict[str, list[tuple[str, Import]]] = {}
    for module, imports in graph.items():
        inside = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}
        targets = []
        for imp in imports:
            if imp.target.split(".")[0] != "seq2seq":
                continue
            parts = imp.target.split(".")
            for i in range(len(parts), 0, -1):
                name = ".".join(parts[:i])
                if name in graph and name not in inside and name != module:
                    targets.append((name, imp))
        out[module] = targets
    return out


def layer_rule(module: str, target: str) -> str | None:
    """Why ``module`` may not import ``target``, or None when it may."""
    mine, theirs = layer(module), layer(target)
    if theirs == "commands":
        return "nothing in seq2seq imports a command"
    if mine == "decoding" and theirs != "decoding" and not target.startswith(DECODING_MAY_IMPORT):
        return "decoding imports only models, special, errors and settings"
    if mine == theirs:
        return None
    if RANK[mine] == RANK[theirs]:
        return f"{mine} and {theirs} do not import each other"
    if RANK[theirs] > RANK[mine]:
        return f"{mine} is below {theirs} in the layer order ({' -> '.join('/'.join(n) for n in LAYERS)})"
    return None


def cycles(graph_edges: dict[str, list[tuple[str, Import]]]) -> list[list[tuple[str, Import]]]:
    """Import cycles, each as its chain of (importer, import), one per strongly connected group."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for target, _ in graph_edges.get(node, []):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1 or any(t == node for t, _ in graph_edges.get(node, [])):
                groups.append(group)

    for node in sorted(graph_edges):
        if node not in index:
            connect(node)

    found = []
    for group in groups:  # one cycle through the group's first module, by a breadth-first search
        start = min(group)
        paths: dict[str, list[tuple[str, Import]]] = {start: []}
        queue = [start]
        cycle = None
        while queue and cycle is None:
            node = queue.pop(0)
            for target, imp in graph_edges[node]:
                if target == start:
                    cycle = [*paths[node], (node, imp)]
                    break
                if target in group and target not in paths:
                    paths[target] = [*paths[node], (node, imp)]
                    queue.append(target)
        found.append(cycle)
    return found


def torch_at_module_level(graph: dict[str, list[Import]], module: str) -> list[str] | None:
    """The chain of module-level imports from ``module`` to one that imports torch at
    module level (``["seq2seq.a line 3", "seq2seq.b line 7: torch"]``), or None."""
    seen, queue = {module}, [(module, [])]
    while queue:
        node, chain = queue.pop(0)
        for i in range(node.count("."), 0, -1):  # its packages' __init__ run first
            package = node.rsplit(".", node.count(".") - i + 1)[0]
            if package in graph and package not in seen:
                seen.add(package)
                queue.append((package, [*chain, f"{node} is in {package}"]))
        for imp in graph.get(node, []):
            if not imp.module_level:
                continue
            if imp.target.split(".")[0] == "torch":
                return [*chain, f"{node} line {imp.line}: torch"]
            parts = imp.target.split(".")
            for i in range(len(parts), 1, -1):
                name = ".".join(parts[:i])
                if name in graph and name not in seen:
                    seen.add(name)
                    queue.append((name, [*chain, f"{node} line {imp.line}"]))
    return None


def violations(graph: dict[str, list[Import]], allowed=frozenset()) -> list[str]:
    """Every broken rule, one line each: the module, the line, what it imports and the rule."""
    problems = []
    graph_edges = edges(graph)
    for module, targets in sorted(graph_edges.items()):
        reported = set()  # an import and the packages it passes through break a rule once
        for target, imp in targets:
            rule = layer_rule(module, target)
            if rule and (module, target, rule) not in allowed and (imp, rule) not in reported:
                reported.add((imp, rule))
                problems.append(f"{module} line {imp.line}: imports {target}: {rule}")
    for cycle in cycles(graph_edges):
        chain = ", ".join(f"{m} line {imp.line} imports {imp.target}" for m, imp in cycle)
        problems.append(f"import cycle: {chain}")
    for module in NO_TORCH:
        if module in graph and (chain := torch_at_module_level(graph, module)):
            problems.append(
                f"{module} loads torch at module level ({' -> '.join(chain)}): "
                "translating an export must not load torch; import it inside the function that needs it"
            )
    return problems


def test_imports_run_one_way():
    graph = read_package()
    assert len(graph) > 40 and all(layer(m) in RANK for m in graph), sorted(graph)
    problems = violations(graph, ALLOWED)
    assert not problems, "\n".join(problems)
    per_layer = {name: sum(layer(m) == name for m in graph) for names in LAYERS for name in names}
    statements = sum(len(imports) for imports in graph.values())
    checked = sum(len(targets) for targets in edges(graph).values())
    print(
        f"\n{len(graph)} modules: "
        + ", ".join(f"{name} {count}" for name, count in per_layer.items())
        + f"; {statements} imports read, {checked} links between seq2seq modules checked"
    )


def fake(**modules: str) -> dict[str, list[Import]]:
    """A module graph from ``name="target, target"`` (dots written as ``_``; a target
    ending in ``*`` is imported inside a function)."""
    graph = {}
    for name, targets in modules.items():
        imports = [
            Import(t.strip().rstrip("*").replace("_", "."), line, not t.strip().endswith("*"))
            for line, t in enumerate(targets.split(","), start=1)
            if t.strip()
        ]
        graph[name.replace("_", ".")] = imports
    return graph


@pytest.mark.parametrize(
    "graph, expected",
    [
        (fake(seq2seq="", seq2seq_errors="", seq2seq_models="seq2seq_errors"), []),
        (fake(seq2seq="", seq2seq_errors="seq2seq_models*", seq2seq_models=""), ["leaves is below models"]),
        (fake(seq2seq="", seq2seq_models="seq2seq_data", seq2seq_data=""), ["models and data do not"]),
        (fake(seq2seq="", seq2seq_cli="seq2seq_train", seq2seq_train=""), ["nothing in seq2seq imports a"]),
        (fake(seq2seq="", seq2seq_decoding="seq2seq_data", seq2seq_data=""), ["decoding imports only"]),
        (
            fake(
                seq2seq="",
                seq2seq_inference="",
                seq2seq_inference_a="seq2seq_inference_b*",
                seq2seq_inference_b="seq2seq_inference_a",
            ),
            ["import cycle: seq2seq.inference.a line 1 imports seq2seq.inference.b, seq2seq.inference.b"],
        ),
        (
            fake(
                seq2seq="",
                seq2seq_inference="",
                seq2seq_inference_translator="seq2seq_data_x",
                seq2seq_data="",
                seq2seq_data_x="numpy, torch_nn",
            ),
            [
                "seq2seq.inference.translator loads torch at module level "
                "(seq2seq.inference.translator line 1 -> seq2seq.data.x line 2: torch)"
            ],
        ),
        (fake(seq2seq="", seq2seq_inference="", seq2seq_inference_translator="torch*"), []),
    ],
)
def test_the_rules_catch_a_violation(graph, expected):
    """A fake module graph: each broken rule is reported, naming the module and the line."""
    problems = violations(graph)
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert start in problem, problems


def test_submodule_imports_count_their_packages(tmp_path):
    """``from seq2seq.x import y`` names the module seq2seq.x.y; it also imports seq2seq.x."""
    root = tmp_path / "seq2seq"
    (root / "models").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "models" / "__init__.py").write_text("")
    (root / "models" / "y.py").write_text("import torch\n")
    (root / "errors.py").write_text("def f():\n    from seq2seq.models import y\n")
    graph = read_package(root)
    assert graph["seq2seq.errors"] == [Import("seq2seq.models.y", 2, False)]
    assert [t for t, _ in edges(graph)["seq2seq.errors"]] == ["seq2seq.models.y", "seq2seq.models"]
    assert [p.split(":")[0] for p in violations(graph)] == ["seq2seq.errors line 2"]
