"""The package's imports run only downward through the layers that
docs/architecture.md draws.

The layer table is read from docs/architecture.md (its "Layers" table), so
the drawing and this check are one fact. Every import statement of every
module of ``pspnet/`` counts, those inside functions included (an import
moved into a function still ties the two modules). The checks:

- every module of the package is in exactly one layer, and every entry of
  the table names modules that exist;
- no module imports one of a higher layer;
- no circle of imports, also inside a layer;
- nothing in the package imports the scripts, the tests, the benchmarks or
  the cross-checks;
- the side folders reach the package without editing ``sys.path``.

Each check is a function that returns its problems; the last tests feed
each one a broken tree, so that none of them passes vacuously.
"""

import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = 'pspnet'
ARCHITECTURE = os.path.join('docs', 'architecture.md')
#: Folders beside the package that run against it as modules.
SIDE_FOLDERS = ('benchmarks', 'crosscheck', 'tools')
#: First-party code outside the package, which the package must not import.
OUTSIDE = ('tests', 'benchmarks', 'crosscheck', 'tools')

LAYER_ROW = re.compile(r'^\|\s*(\d+)\s*\|([^|]*)\|(.*)\|\s*$')
CODE = re.compile(r'`([^`]+)`')


def module_name(path):
    """``pspnet/datasets/base.py`` -> ``pspnet.datasets.base``;
    ``pspnet/links/__init__.py`` -> ``pspnet.links``."""
    parts = os.path.splitext(path)[0].split('/')
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join(parts)


def package_modules(root):
    """Module name -> path relative to ``root``, for every ``.py`` file of
    the package."""
    modules = {}
    for folder, dirs, files in os.walk(os.path.join(root, PACKAGE)):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.relpath(os.path.join(folder, name), root)
                modules[module_name(path.replace(os.sep, '/'))] = path
    return modules


def imported_names(source, module, is_package):
    """Every module name an import statement of ``source`` names, with
    the line: ``import a.b`` gives ``a.b``; ``from a import b`` gives
    ``a.b`` and ``a`` (the caller keeps the first that is a module)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((node.lineno, [alias.name]))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = module.split('.')
                if not is_package:
                    parts = parts[:-1]
                parts = parts[:len(parts) - node.level + 1]
                base = '.'.join(parts + ([base] if base else []))
            for alias in node.names:
                found.append((node.lineno, [base + '.' + alias.name, base]))
    return found


def import_edges(root, modules):
    """(importer, imported, line) for every import between first-party
    modules: the package's own, and those of the folders beside it."""
    edges = []
    for module, path in sorted(modules.items()):
        with open(os.path.join(root, path)) as f:
            source = f.read()
        is_package = path.endswith('__init__.py')
        for line, candidates in imported_names(source, module, is_package):
            for name in candidates:
                if name in modules:
                    edges.append((module, name, line))
                    break
                top = name.split('.')[0]
                if top in OUTSIDE or (top == name and os.path.isfile(
                        os.path.join(root, top + '.py'))):
                    edges.append((module, name, line))
                    break
    return edges


def read_layers(root):
    """The layer table of docs/architecture.md: a list of (number, name,
    entries), entries being the package paths in the row's code spans (a
    folder ends in ``/``)."""
    layers = []
    with open(os.path.join(root, ARCHITECTURE)) as f:
        in_section = False
        for line in f:
            if line.startswith('## '):
                in_section = line.strip() == '## Layers'
                continue
            match = LAYER_ROW.match(line) if in_section else None
            if match:
                entries = [e for e in CODE.findall(match.group(3))
                           if e.startswith(PACKAGE + '/')]
                layers.append((int(match.group(1)),
                               match.group(2).strip(), entries))
    return layers


def layer_problems(root, modules, layers):
    """Modules in no layer or in two, entries that name nothing, layers
    out of order; returns (problems, module -> layer number)."""
    problems = []
    numbers = [number for number, _, _ in layers]
    if not layers:
        problems.append('{} has no layer table'.format(ARCHITECTURE))
    if numbers != sorted(numbers, reverse=True) or \
            len(set(numbers)) != len(numbers):
        problems.append('the layers of {} are not numbered from the top '
                        'down: {}'.format(ARCHITECTURE, numbers))
    layer_of = {}
    for number, name, entries in layers:
        for entry in entries:
            if entry.endswith('/'):
                prefix = module_name(entry.rstrip('/'))
                members = [m for m in modules
                           if m == prefix or m.startswith(prefix + '.')]
            else:
                members = [m for m in modules
                           if modules[m].replace(os.sep, '/') == entry]
            if not members:
                problems.append('{} layer {} ({}) names {}, which is no '
                                'module of the package'.format(
                                    ARCHITECTURE, number, name, entry))
            for member in members:
                if member in layer_of and layer_of[member] != number:
                    problems.append('{} is in layers {} and {}'.format(
                        member, layer_of[member], number))
                layer_of[member] = number
    for module in sorted(set(modules) - set(layer_of)):
        problems.append('{} ({}) is in no layer of {}; add it to the table'
                        .format(module, modules[module], ARCHITECTURE))
    return problems, layer_of


def upward_problems(edges, layer_of, modules):
    """Imports of a higher layer, and imports of code outside the
    package."""
    problems = []
    for importer, imported, line in edges:
        where = '{}:{}'.format(modules[importer], line)
        if imported not in modules:
            problems.append('{} imports {}, which is outside the package '
                            '(scripts, tests, benchmarks); move the code '
                            'into the package'.format(where, imported))
        elif layer_of.get(imported, -1) > layer_of.get(importer, -1):
            problems.append('{} ({}, layer {}) imports {} of the higher '
                            'layer {}'.format(
                                where, importer, layer_of.get(importer),
                                imported, layer_of.get(imported)))
    return problems


def cycle_problems(edges):
    """One problem per circle of imports (a strongly connected set of two
    or more modules, or a module importing itself)."""
    graph = {}
    for importer, imported, _ in edges:
        graph.setdefault(importer, set()).add(imported)
        graph.setdefault(imported, set())
    index, low, stack, on_stack, circles = {}, {}, [], set(), []
    counter = [0]

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return ['a circle of imports: {}'.format(' -> '.join(circle))
            for circle in circles]


SYS_PATH_EDIT = re.compile(r'sys\.path\s*(\.insert|\.append|\[|\+=|=)'
                           r'|PYTHONPATH=')


def side_folder_problems(root):
    """Files of the side folders that edit ``sys.path`` to reach the
    package or the test helpers (they run as modules instead)."""
    problems = []
    for folder in SIDE_FOLDERS:
        for base, dirs, files in os.walk(os.path.join(root, folder)):
            dirs[:] = [d for d in dirs if d != '__pycache__']
            for name in sorted(files):
                if not name.endswith(('.py', '.sh')):
                    continue
                path = os.path.join(base, name)
                with open(path) as f:
                    for number, line in enumerate(f, 1):
                        if SYS_PATH_EDIT.search(line):
                            problems.append('{}:{} edits the import path: '
                                            '{}'.format(
                                                os.path.relpath(path, root),
                                                number, line.strip()))
    return problems


def all_problems(root):
    modules = package_modules(root)
    problems, layer_of = layer_problems(root, modules, read_layers(root))
    edges = import_edges(root, modules)
    return (problems + upward_problems(edges, layer_of, modules)
            + cycle_problems(edges))


@pytest.fixture(scope='module')
def tree():
    modules = package_modules(ROOT)
    layers = read_layers(ROOT)
    return modules, layers, import_edges(ROOT, modules)


def test_every_module_has_one_layer(tree):
    modules, layers, _ = tree
    assert len(layers) >= 5
    assert layer_problems(ROOT, modules, layers)[0] == []


def test_imports_run_only_downward(tree):
    modules, layers, edges = tree
    _, layer_of = layer_problems(ROOT, modules, layers)
    assert len(edges) > 100  # the reader sees the package's imports
    assert upward_problems(edges, layer_of, modules) == []


def test_no_circle_of_imports(tree):
    assert cycle_problems(tree[2]) == []


def test_side_folders_run_as_modules():
    assert side_folder_problems(ROOT) == []


# The checks fail on broken trees -----------------------------------------

ARCHITECTURE_TEXT = '''# Architecture

## Layers

| Layer | Name | Modules |
|---|---|---|
| 3 | top | `pspnet/__init__.py`, `pspnet/app.py` |
| 2 | middle | `pspnet/sub/` |
| 1 | base | `pspnet/errors.py`, `pspnet/util.py` |

## Elsewhere

| 0 | not a layer | `pspnet/ghost.py` |
'''

GOOD_TREE = {
    'pspnet/__init__.py': 'from pspnet.errors import UserError\n',
    'pspnet/errors.py': 'class UserError(ValueError):\n    pass\n',
    'pspnet/util.py': 'from pspnet.errors import UserError\n',
    'pspnet/sub/__init__.py': 'from pspnet.sub.a import f\n',
    'pspnet/sub/a.py': 'from pspnet import util\nfrom . import b\n',
    'pspnet/sub/b.py': 'import os\nfrom pspnet.errors import UserError\n',
    'pspnet/app.py': 'import pspnet\nfrom pspnet.sub import a\n',
    'demo.py': 'from pspnet import app\n',
    'benchmarks/bench.py': 'from pspnet import app\n',
}


def make_tree(root, edits=(), architecture=ARCHITECTURE_TEXT):
    files = dict(GOOD_TREE)
    files.update(edits)
    files[ARCHITECTURE] = architecture
    for path, text in files.items():
        full = os.path.join(str(root), path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, 'w') as f:
            f.write(text)
    return str(root)


def test_the_good_tree_passes(tmp_path):
    root = make_tree(tmp_path)
    assert all_problems(root) == []
    assert side_folder_problems(root) == []
    edges = import_edges(root, package_modules(root))
    assert ('pspnet.sub.a', 'pspnet.sub.b', 2) in edges  # relative import
    assert ('pspnet.app', 'pspnet', 1) in edges


@pytest.mark.parametrize('edits, expected', [
    # An import of a higher layer, at the top of the module...
    ({'pspnet/util.py': 'from pspnet.sub import a\n'},
     'pspnet/util.py:1 (pspnet.util, layer 1) imports pspnet.sub.a of the '
     'higher layer 2'),
    # ... or hidden in a function.
    ({'pspnet/errors.py': 'def f():\n    import pspnet.app\n'},
     'imports pspnet.app of the higher layer 3'),
    # The package root is the top layer's.
    ({'pspnet/sub/b.py': 'import pspnet\n'},
     'imports pspnet of the higher layer 3'),
    ({'pspnet/sub/b.py': 'from .. import app\n'},
     'imports pspnet.app of the higher layer 3'),
    # Scripts, tests and benchmarks are outside the package.
    ({'pspnet/app.py': 'import demo\n'}, 'imports demo, which is outside'),
    ({'pspnet/util.py': 'from tests.helpers import factory\n'},
     'imports tests.helpers.factory, which is outside'),
])
def test_an_upward_import_is_found(tmp_path, edits, expected):
    problems = all_problems(make_tree(tmp_path, edits))
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize('edits, expected', [
    # Two modules of one layer importing each other, one inside a function.
    ({'pspnet/sub/b.py': 'def f():\n    from pspnet.sub import a\n'},
     'a circle of imports: pspnet.sub.a -> pspnet.sub.b'),
    # Three modules across layers (the upward edge is also reported).
    ({'pspnet/errors.py': 'from pspnet import util\n',
      'pspnet/util.py': 'from pspnet.sub import b\n'},
     'a circle of imports: pspnet.errors -> pspnet.sub.b -> pspnet.util'),
    ({'pspnet/util.py': 'import pspnet.util\n'},
     'a circle of imports: pspnet.util'),
])
def test_a_circle_is_found(tmp_path, edits, expected):
    problems = all_problems(make_tree(tmp_path, edits))
    assert expected in problems, problems


def test_a_module_without_a_layer_is_found(tmp_path):
    problems = all_problems(make_tree(tmp_path, {'pspnet/new.py': ''}))
    assert problems == ['pspnet.new (pspnet/new.py) is in no layer of '
                        'docs/architecture.md; add it to the table']


def test_a_stale_or_doubled_entry_is_found(tmp_path):
    text = ARCHITECTURE_TEXT.replace('`pspnet/util.py`',
                                     '`pspnet/utils.py`, `pspnet/sub/a.py`')
    problems = all_problems(make_tree(tmp_path, architecture=text))
    assert any('names pspnet/utils.py, which is no module' in p
               for p in problems), problems
    assert 'pspnet.sub.a is in layers 2 and 1' in problems
    assert any(p.startswith('pspnet.util (') for p in problems)


def test_layers_out_of_order_are_found(tmp_path):
    text = ARCHITECTURE_TEXT.replace('| 3 | top', '| 0 | top')
    problems = all_problems(make_tree(tmp_path, architecture=text))
    assert any('not numbered from the top down' in p for p in problems)


@pytest.mark.parametrize('line', [
    "sys.path.insert(0, os.path.join(HERE, '..'))",
    'sys.path[:0] = [ROOT]',
    'sys.path.append(ROOT)',
    'PYTHONPATH=. python -m x',
])
def test_a_sys_path_edit_in_a_side_folder_is_found(tmp_path, line):
    root = make_tree(tmp_path, {'benchmarks/bench.py': 'import sys\n'
                                + line + '\n'})
    assert len(side_folder_problems(root)) == 1
