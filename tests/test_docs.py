"""The documentation against the code: README.md as a short signpost with
the commands .ci/run runs, every option of every script documented on its
page, every command of README.md, docs/, benchmarks/README.md and
crosscheck/README.md naming an existing script (or, with ``python -m``, an
existing module of the folders beside the package) and only its options,
every repository path, ``pspnet`` name and relative link resolving, and no
issue numbers.

Each check is a function that returns its problems (an empty list when the
documentation is right); the last tests feed each one a deliberately broken
copy, so that none of them can pass vacuously. No model runs: the scripts'
``--help`` (in subprocesses) and imports of the ``pspnet`` names the pages
cite (in one subprocess) are all that is executed.
"""

import ast
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Each script and the docs page that documents every one of its options.
SCRIPT_PAGES = {
    'demo.py': 'docs/demo.md',
    'eval_semantic_segmentation.py': 'docs/datasets.md',
    'train_multi.py': 'docs/training.md',
    'caffe2npz.py': 'docs/caffe.md',
    'export_onnx.py': 'docs/onnx.md',
    'prepare_dataset.py': 'docs/own-data.md',
}
README_MAX_LINES = 250
#: The first screen of README.md: setup, extras, demo and test commands.
FIRST_LINES = 80
TEST_COMMAND = '.venv/bin/python -m pytest'
EXTRAS_COMMAND = ('.venv/bin/pip install --no-build-isolation '
                  '-r requirements-extras.txt')

FENCE = re.compile(r'^\s*(```+|~~~+)\s*([\w+-]*)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
CODE_SPAN = re.compile(r'`([^`\n]+(?:\n[^`\n]+)*?)`')
LINK = re.compile(r'\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
#: ``python SCRIPT.py`` with any interpreter path (.venv/bin/python,
#: python3, /tmp/oracle-venv/bin/python); not ``python -m``/``-c``.
SCRIPT_CALL = re.compile(
    r'(?:^|(?<=[\s;&|(]))(?:[\w.~/$-]*/)?python(?:3(?:\.\d+)?)?\s+'
    r'(?!-)(\S+\.py)(?=\s|$)')
#: The folders beside the package whose Python files run as modules from
#: the repository root (``python -m benchmarks.bench_memory``), not as
#: scripts: they import ``pspnet`` and each other from the root.
SIDE_FOLDERS = ('benchmarks', 'crosscheck', 'tools')
#: ``python -m MODULE`` of a module of those folders, with any interpreter
#: path; not ``python -m pytest``, ``pip``, ``venv``...
MODULE_CALL = re.compile(
    r'(?:^|(?<=[\s;&|(`]))(?:[\w.~/$-]*/)?python(?:3(?:\.\d+)?)?\s+-m\s+'
    r'((?:' + '|'.join(SIDE_FOLDERS) + r')\.[\w.]+)(?=[\s`]|$)')
#: A script named in a code span and followed by options:
#: `demo.py --gpu 0`, `mpiexec -n 1 train_multi.py --dtype mixed16`.
SPAN_SCRIPT = re.compile(r'(?:^|(?<=\s))((?:[\w.-]+/)*[\w-]+\.py)(?=\s+-)')
FLAG = re.compile(r'(?:^|(?<=[\s\[]))(--?[A-Za-z][\w-]*)')
COMMAND_END = re.compile(r'\s(?:&&|\|\||\||;)\s|;\s')
#: A path of the repository in code: pspnet/..., tests/..., requirements*.
REPO_PATH = re.compile(
    r'(?<![\w./$-])((?:pspnet|tests|tools|benchmarks|crosscheck|docs|\.ci)/'
    r'[\w./-]*|requirements[\w-]*\.txt|pyproject\.toml)')
PSPNET_NAME = re.compile(r'(?<![\w./])pspnet(?:\.[A-Za-z_]\w*)+')
ISSUE = re.compile(r'\bissues?\s*#?\s*\d+', re.IGNORECASE)
SHELL_LANGUAGES = ('', 'bash', 'sh', 'shell', 'console')


# -- reading markdown ------------------------------------------------------

class Page(object):
    """A markdown file split into its code blocks and its prose."""

    def __init__(self, name, text):
        self.name = name
        self.text = text
        self.lines = text.splitlines()
        self.blocks = []  # (language, first line number, lines)
        prose = []
        block = None
        for number, line in enumerate(self.lines, 1):
            fence = FENCE.match(line)
            if block is None and fence:
                block = (fence.group(1)[0], fence.group(2).lower(), number,
                         [])
                prose.append('')
            elif block is not None:
                if fence and fence.group(1)[0] == block[0] \
                        and not fence.group(2):
                    self.blocks.append(block[1:])
                    block = None
                else:
                    block[3].append(line)
                prose.append('')
            else:
                prose.append(line)
        if block is not None:
            self.blocks.append(block[1:])
        #: The text outside code blocks, line numbers kept.
        self.prose = '\n'.join(prose)
        self.spans = [m.group(1).replace('\n', ' ')
                      for m in CODE_SPAN.finditer(self.prose)]
        self.headings = []  # (line number, level, text)
        for number, line in enumerate(prose, 1):
            m = HEADING.match(line)
            if m:
                self.headings.append((number, len(m.group(1)), m.group(2)))

    def code_text(self):
        """Everything in code: the spans and the blocks' lines."""
        return '\n'.join(self.spans + [line for block in self.blocks
                                       for line in block[2]])

    def anchors(self):
        """GitHub's anchors of the headings."""
        seen = {}
        result = set()
        for _, _, text in self.headings:
            slug = anchor(text)
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            result.add(slug if n == 0 else '{}-{}'.format(slug, n))
        return result

    def section(self, title):
        """The lines of the section under the heading ``title``, or None."""
        for i, (number, level, text) in enumerate(self.headings):
            if text == title:
                end = len(self.lines)
                for later, later_level, _ in self.headings[i + 1:]:
                    if later_level <= level:
                        end = later - 1
                        break
                return self.lines[number:end]
        return None


def anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading)
    text = text.replace('`', '').strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def doc_names(root):
    """README.md, docs/*.md, benchmarks/README.md and crosscheck/README.md,
    relative to root."""
    names = ['README.md', os.path.join('benchmarks', 'README.md'),
             os.path.join('crosscheck', 'README.md')]
    docs = os.path.join(root, 'docs')
    names += sorted(os.path.join('docs', name) for name in os.listdir(docs)
                    if name.endswith('.md'))
    return names


def read_pages(root):
    pages = {}
    for name in doc_names(root):
        with open(os.path.join(root, name), encoding='utf-8') as f:
            pages[name] = Page(name, f.read())
    return pages


# -- the scripts' options --------------------------------------------------

def help_options(help_text):
    """The option strings of an argparse ``--help`` text: the lines of the
    options' list, not the options their descriptions mention."""
    options = set()
    for line in help_text.splitlines():
        m = re.match(r'^  (-\S.*?)(?:\s{2,}|$)', line)
        if m:
            for part in m.group(1).split(', '):
                options.add(part.split()[0])
    return options


def subcommands(help_text):
    """The subcommands of an argparse ``--help`` text whose usage line
    ends in ``{a,b,c} ...``, or []."""
    m = re.search(r'^usage:[^\n]*\{([\w,-]+)\} \.\.\.', help_text, re.M)
    return m.group(1).split(',') if m else []


def run_help(script, *command):
    """The options of a script's ``--help``, with those of each of its
    subcommands' (``prepare_dataset.py coco --help``, ...)."""
    result = subprocess.run([sys.executable, script] + list(command)
                            + ['--help'], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=300)
    assert result.returncode == 0, (script, result.stderr[-2000:])
    options = help_options(result.stdout)
    for sub in ([] if command else subcommands(result.stdout)):
        options |= run_help(script, sub)
    return options


def source_options(path):
    """The option strings a Python file gives ``add_argument`` (for the
    benchmarks, the ChainerCV comparisons, tools): read, not run, as some
    need packages of another environment."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    options = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(
                node.func, 'attr', None) == 'add_argument':
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(
                        arg.value, str) and arg.value.startswith('-'):
                    options.add(arg.value)
    return options


@pytest.fixture(scope='module')
def script_options():
    """{script: its option strings}, from each script's ``--help``."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        found = dict(zip(SCRIPT_PAGES, pool.map(run_help, SCRIPT_PAGES)))
    for script, options in found.items():
        # The parse itself must have worked: every script has these.
        assert {'--help', '--version'} <= options, (script, options)
    return found


@pytest.fixture(scope='module')
def pages():
    return read_pages(ROOT)


def options_of(script, root, script_options):
    """The options of the script at ``script`` (relative to root), or None
    if there is no such file."""
    path = os.path.normpath(script)
    if path in script_options:
        return script_options[path]
    full = os.path.join(root, path)
    if not os.path.isfile(full):
        return None
    return source_options(full)


# -- the checks ------------------------------------------------------------

def ci_commands(ci_text):
    """(README section, command) of each ``# README.md, "X"`` comment of
    .ci/run and the command line after it."""
    pairs = []
    lines = ci_text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r'#\s*README\.md,\s*"([^"]+)"', line.strip())
        if m:
            for command in lines[i + 1:]:
                if command.strip() and not command.lstrip().startswith('#'):
                    pairs.append((m.group(1), command.strip()))
                    break
    return pairs


def readme_problems(readme, ci_text):
    """README.md: at most README_MAX_LINES lines; the setup command of
    .ci/run, the extras, a demo and the test command in its first
    FIRST_LINES lines; each section .ci/run quotes holds its command."""
    problems = []
    lines = readme.text.splitlines()
    if len(lines) > README_MAX_LINES:
        problems.append('README.md has {} lines, more than {}'.format(
            len(lines), README_MAX_LINES))
    first = [line.strip() for line in lines[:FIRST_LINES]]
    pairs = ci_commands(ci_text)
    setup = [c for _, c in pairs if c.startswith('python3.11 -m venv')]
    if not setup:
        problems.append('.ci/run has no "python3.11 -m venv" setup command '
                        'under a README.md comment')
    for command in setup + [EXTRAS_COMMAND, TEST_COMMAND]:
        if command not in first:
            problems.append('README.md lacks {!r} in its first {} lines'
                            .format(command, FIRST_LINES))
    if not any(re.search(r'(?:^|/)python3?\s+demo\.py\s', line)
               for line in first):
        problems.append('README.md has no demo.py command in its first {} '
                        'lines'.format(FIRST_LINES))
    for title, command in pairs:
        section = readme.section(title)
        if section is None:
            problems.append('.ci/run quotes README.md section "{}", which '
                            'does not exist'.format(title))
        elif command not in (line.strip() for line in section):
            problems.append('README.md section "{}" lacks the command .ci/run '
                            'runs: {}'.format(title, command))
    return problems


def undocumented_options(script_options, pages):
    """Options of a script that its page does not show in code."""
    problems = []
    all_code = '\n'.join(page.code_text() for name, page in pages.items()
                         if name.startswith('docs'))
    for script, options in sorted(script_options.items()):
        page = pages.get(SCRIPT_PAGES[script])
        code = page.code_text() if page is not None else ''
        for option in sorted(options):
            # --help is documented once for all scripts.
            text = all_code if option in ('-h', '--help') else code
            if not re.search(r'(?<![\w-]){}(?![\w-])'.format(
                    re.escape(option)), text):
                problems.append('{} {} is not documented in {}'.format(
                    script, option, SCRIPT_PAGES[script]
                    if option not in ('-h', '--help') else 'docs/'))
    return problems


def command_lines(page):
    """(line number, logical line) of the shell code blocks: backslash
    continuations joined, and the indented lines that go on a synopsis."""
    for language, first, lines in page.blocks:
        if language not in SHELL_LANGUAGES:
            continue
        logical = []
        for offset, line in enumerate(lines):
            if logical and logical[-1][1].endswith('\\'):
                logical[-1][1] = logical[-1][1][:-1] + ' ' + line.strip()
            elif (logical and line[:1].isspace() and line.strip()
                  and (SCRIPT_CALL.search(logical[-1][1])
                       or MODULE_CALL.search(logical[-1][1]))):
                logical[-1][1] += ' ' + line.strip()
            else:
                logical.append([first + 1 + offset, line])
        for number, line in logical:
            yield number, strip_comment(line)


def strip_comment(line):
    """The line without its shell comment (a # outside quotes at the start
    or after a space)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in '\'"':
            quote = c
        elif c == '#' and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def check_call(where, script, args, root, script_options, problems):
    options = options_of(script, root, script_options)
    if options is None:
        problems.append('{}: {} does not exist'.format(where, script))
        return
    args = COMMAND_END.split(args)[0]
    for flag in FLAG.findall(args):
        if flag.split('=')[0] not in options:
            problems.append('{}: {} has no option {}'.format(
                where, script, flag))


def module_path(module):
    """``benchmarks.bench_memory`` -> ``benchmarks/bench_memory.py``."""
    return os.path.join(*module.split('.')) + '.py'


def check_module_call(where, module, args, root, script_options, problems):
    """``python -m MODULE ARGS``: the module's file exists and declares
    every flag of ARGS."""
    path = module_path(module)
    if not os.path.isfile(os.path.join(root, path)):
        problems.append('{}: module {} does not exist (no {})'.format(
            where, module, path))
        return
    check_call(where, path, args, root, script_options, problems)


def check_script_call(where, script, args, root, script_options, problems):
    """``python SCRIPT.py ARGS``; a file of the folders beside the package
    must run as a module instead (as a script it finds no ``pspnet``)."""
    path = os.path.normpath(script)
    if path.split(os.sep)[0] in SIDE_FOLDERS:
        problems.append('{}: run {} as python -m {}'.format(
            where, script, os.path.splitext(path)[0].replace(os.sep, '.')))
    check_call(where, script, args, root, script_options, problems)


def command_problems(pages, root, script_options):
    """Every ``python SCRIPT.py ...`` and ``python -m MODULE ...`` (of the
    folders beside the package) of the code blocks, and every
    ``SCRIPT.py --option`` and ``python -m MODULE ...`` of the code spans,
    names an existing script or module and only its options."""
    problems = []
    for name, page in sorted(pages.items()):
        for number, line in command_lines(page):
            where = '{}:{}'.format(name, number)
            for m in SCRIPT_CALL.finditer(line):
                check_script_call(where, m.group(1), line[m.end():], root,
                                  script_options, problems)
            for m in MODULE_CALL.finditer(line):
                check_module_call(where, m.group(1), line[m.end():], root,
                                  script_options, problems)
        for span in page.spans:
            where = '{} `{}`'.format(name, span)
            for m in SPAN_SCRIPT.finditer(span):
                check_call(where, m.group(1), span[m.end():], root,
                           script_options, problems)
            for m in MODULE_CALL.finditer(span):
                check_module_call(where, m.group(1), span[m.end():], root,
                                  script_options, problems)
    return problems


def path_problems(pages, root):
    """Repository paths in code (pspnet/..., tests/..., requirements*.txt)
    exist."""
    problems = []
    for name, page in sorted(pages.items()):
        for path in sorted(set(REPO_PATH.findall(page.code_text()))):
            path = path.rstrip('./')
            if '__pycache__' in path:
                continue  # made at run time
            if not os.path.exists(os.path.join(root, path)):
                problems.append('{}: {} does not exist'.format(name, path))
    return problems


def link_problems(pages, root):
    """Relative links lead to existing files, #anchors to headings."""
    problems = []
    anchors = {}

    def anchors_of(path):
        if path not in anchors:
            name = os.path.relpath(path, root)
            if name in pages:
                anchors[path] = pages[name].anchors()
            else:
                with open(path, encoding='utf-8') as f:
                    anchors[path] = Page(name, f.read()).anchors()
        return anchors[path]

    for name, page in sorted(pages.items()):
        prose = CODE_SPAN.sub('code', page.prose)
        for target in LINK.findall(prose):
            if re.match(r'[a-z][a-z0-9+.-]*:', target):
                continue  # https:, mailto:
            path, _, fragment = target.partition('#')
            full = os.path.normpath(os.path.join(
                root, os.path.dirname(name), path)) if path else \
                os.path.join(root, name)
            if not os.path.exists(full):
                problems.append('{}: link to {}: no such file'.format(
                    name, target))
            elif fragment and full.endswith('.md') \
                    and fragment not in anchors_of(full):
                problems.append('{}: link to {}: no such heading'.format(
                    name, target))
    return problems


def issue_problems(pages):
    """No issue numbers in the user documentation."""
    return ['{}: {!r}'.format(name, m.group(0))
            for name, page in sorted(pages.items())
            for m in ISSUE.finditer(page.text)]


def python_names(pages):
    """The ``pspnet`` names the pages cite in code, and the problems of
    their Python blocks that do not parse."""
    names = set()
    problems = []
    for name, page in sorted(pages.items()):
        names.update(PSPNET_NAME.findall('\n'.join(page.spans)))
        for language, first, lines in page.blocks:
            if language != 'python':
                names.update(PSPNET_NAME.findall('\n'.join(lines)))
                continue
            try:
                tree = ast.parse('\n'.join(lines))
            except SyntaxError as e:
                problems.append('{}:{}: Python block does not parse: {}'
                                .format(name, first + (e.lineno or 0), e.msg))
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and \
                        node.module.split('.')[0] == 'pspnet':
                    names.update(node.module + '.' + alias.name
                                 for alias in node.names)
                elif isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names
                                 if alias.name.split('.')[0] == 'pspnet')
    return names, problems


#: Run in a child process: which of the names on stdin do not resolve.
RESOLVE = r'''
import importlib, json, sys
missing = []
for name in json.load(sys.stdin):
    parts = name.split('.')
    for i in range(len(parts), 0, -1):
        module = '.'.join(parts[:i])
        try:
            obj = importlib.import_module(module)
            break
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
    try:
        for part in parts[i:]:
            obj = getattr(obj, part)
    except AttributeError:
        missing.append(name)
print(json.dumps(missing))
'''


def name_problems(pages, root):
    """Every ``pspnet`` module, class, function or constant the pages cite
    exists (imported in a child process)."""
    names, problems = python_names(pages)
    result = subprocess.run(
        [sys.executable, '-c', RESOLVE], cwd=root,
        input=json.dumps(sorted(names)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    problems += ['{} does not exist'.format(name)
                 for name in json.loads(result.stdout)]
    return problems


# -- the documentation as it is --------------------------------------------

def test_readme_is_a_signpost(pages):
    with open(os.path.join(ROOT, '.ci', 'run'), encoding='utf-8') as f:
        ci_text = f.read()
    assert readme_problems(pages['README.md'], ci_text) == []


def test_every_option_is_documented(script_options, pages):
    assert undocumented_options(script_options, pages) == []


def test_commands_use_existing_scripts_and_options(script_options, pages):
    assert command_problems(pages, ROOT, script_options) == []


def test_paths_exist(pages):
    assert path_problems(pages, ROOT) == []


def test_links_resolve(pages):
    assert link_problems(pages, ROOT) == []


def test_no_issue_numbers(pages):
    assert issue_problems(pages) == []


def test_cited_pspnet_names_exist(pages):
    assert name_problems(pages, ROOT) == []


def test_pages_are_indexed(pages):
    """docs/README.md links every page of docs/."""
    index = pages[os.path.join('docs', 'README.md')]
    linked = {os.path.normpath(target.partition('#')[0])
              for target in LINK.findall(CODE_SPAN.sub('', index.prose))}
    for name in pages:
        if name.startswith('docs') and not name.endswith('README.md'):
            assert os.path.basename(name) in linked, name


# -- the checks can fail ---------------------------------------------------

def edited(pages, name, text):
    """A copy of ``pages`` with the page ``name`` replaced by ``text``."""
    copy = dict(pages)
    copy[name] = Page(name, text)
    return copy


def test_readme_check_fails_on_broken_readmes(pages):
    with open(os.path.join(ROOT, '.ci', 'run'), encoding='utf-8') as f:
        ci_text = f.read()
    readme = pages['README.md'].text
    setup = [c for s, c in ci_commands(ci_text) if s == 'Setup'][0]
    # Too long.
    assert readme_problems(Page('README.md', readme + '\n' * 300), ci_text)
    # The setup command pushed below line 80.
    head, rest = readme.split(setup)
    moved = head + rest.replace('## Documentation',
                                '\n' * 80 + setup + '\n## Documentation')
    assert readme_problems(Page('README.md', moved), ci_text)
    # A setup command other than .ci/run's.
    assert readme_problems(Page('README.md', readme.replace(
        'setuptools<70', 'setuptools<71')), ci_text)
    # No demo, no tests in the first lines.
    assert readme_problems(Page('README.md', re.sub(
        r'\S*python3? demo\.py', 'demo', readme)), ci_text)
    assert readme_problems(Page('README.md', readme.replace(
        TEST_COMMAND, 'pytest')), ci_text)
    # .ci/run quoting a section README.md does not have.
    assert readme_problems(pages['README.md'], ci_text.replace(
        '"Tests"', '"Testing"'))
    assert readme_problems(Page('README.md', readme.replace(
        '## Tests', '## Testing')), ci_text)


def test_option_check_fails_on_an_undocumented_option(script_options,
                                                      pages):
    name = SCRIPT_PAGES['demo.py']
    text = pages[name].text.replace('--frame-labels', '--frame-label')
    problems = undocumented_options(script_options, edited(pages, name, text))
    assert problems == ['demo.py --frame-labels is not documented in '
                        'docs/demo.md']
    # An option documented on another script's page does not count.
    extra = dict(script_options)
    extra['caffe2npz.py'] = script_options['caffe2npz.py'] | {
        '--frame-labels'}
    assert undocumented_options(extra, pages) == [
        'caffe2npz.py --frame-labels is not documented in docs/caffe.md']


@pytest.mark.parametrize('command', [
    'python demo.py --no-such-flag street.jpg',
    'python train_multi.py --dataset voc --model pspnet_resnet50 --gpu 0',
    'mpiexec -n 2 python3 train_multi.py --dataset voc \\\n    --no-such x',
    'python demo.py [--gpu N]\n               [--nope]',
    'python no_such_script.py --help',
    '.venv/bin/python benchmarks/bench_nope.py',
    '.venv/bin/python benchmarks/bench_winograd.py --sizes 713',
    '/tmp/oracle-venv/bin/python crosscheck/compare_model.py --x',
    # The folders beside the package run as modules: a module that does
    # not exist, a flag its file does not declare, one on a continued
    # line, and a file of theirs run as a script.
    '.venv/bin/python -m benchmarks.bench_nope',
    '.venv/bin/python -m benchmarks.bench_winograd --sizes 713',
    '/tmp/oracle-venv/bin/python -m crosscheck.compare_modle',
    '/tmp/oracle-venv/bin/python -m crosscheck.compare_model --x',
    'python3 -m tools.gen_winograd_codelets --chek',
    '.venv/bin/python -m benchmarks.bench_gpu --gpu 0 \\\n    --nope 1',
    '.venv/bin/python benchmarks/bench_winograd.py --size 713',
])
def test_command_check_fails_on_a_wrong_command(script_options, pages,
                                                command):
    name = os.path.join('docs', 'demo.md')
    text = pages[name].text + '\n```\n{}\n```\n'.format(command)
    before = command_problems(pages, ROOT, script_options)
    after = command_problems(edited(pages, name, text), ROOT, script_options)
    assert len(after) > len(before)


def test_command_check_fails_on_a_wrong_code_span(script_options, pages):
    name = os.path.join('docs', 'demo.md')
    text = pages[name].text + '\nsee `caffe2npz.py --gpu 0`\n'
    assert command_problems(edited(pages, name, text), ROOT,
                            script_options) == [
        'docs/demo.md `caffe2npz.py --gpu 0`: caffe2npz.py has no option '
        '--gpu']


def test_module_check_names_the_module_and_its_flag(script_options, pages):
    name = os.path.join('docs', 'demo.md')
    text = pages[name].text
    line = len(text.splitlines()) + 3
    text += ('\n```\n/tmp/oracle-venv/bin/python -m crosscheck.compare_modle'
             '\n```\nor `python -m benchmarks.bench_memory --size 97`\n')
    assert command_problems(edited(pages, name, text), ROOT,
                            script_options) == [
        'docs/demo.md:{}: module crosscheck.compare_modle does not exist '
        '(no crosscheck/compare_modle.py)'.format(line),
        'docs/demo.md `python -m benchmarks.bench_memory --size 97`: '
        'benchmarks/bench_memory.py has no option --size']


def test_module_check_leaves_other_modules_alone(script_options, pages):
    name = os.path.join('docs', 'demo.md')
    text = pages[name].text + (
        '\n```\npython -m pytest -q --nope\npython3 -m pip install --nope x'
        '\npython -m benchmarksx.bench --nope\n```\n')
    assert command_problems(edited(pages, name, text), ROOT,
                            script_options) == []


def test_path_check_fails_on_a_missing_file(pages):
    name = os.path.join('docs', 'gpu.md')
    text = pages[name].text + '\nrun `tools/gpu_chek.sh`\n'
    assert path_problems(edited(pages, name, text), ROOT) == [
        'docs/gpu.md: tools/gpu_chek.sh does not exist']


@pytest.mark.parametrize('link', [
    '[x](nope.md)', '[x](demo.md#no-such-heading)', '[x](#nope)',
    '[x](../benchmarks/README.md#gpus)'])
def test_link_check_fails_on_a_broken_link(tmp_path, pages, link):
    root = str(tmp_path)
    for name in list(pages) + [os.path.join('docs', 'README.md')]:
        os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
        shutil.copy(os.path.join(ROOT, name), os.path.join(root, name))
    name = os.path.join('docs', 'onnx.md')
    with open(os.path.join(root, name), 'a', encoding='utf-8') as f:
        f.write('\n' + link + '\n')
    assert len(link_problems(read_pages(root), root)) == 1
    assert link_problems(read_pages(ROOT), ROOT) == []


@pytest.mark.parametrize('text', ['see issue 15', 'Issue #3', 'issues 4'])
def test_issue_check_fails_on_an_issue_number(pages, text):
    name = os.path.join('docs', 'fast-cpu.md')
    assert len(issue_problems(edited(pages, name, pages[name].text + text))) \
        == len(issue_problems(pages)) + 1


@pytest.fixture(scope='module')
def name_baseline(pages):
    return name_problems(pages, ROOT)


@pytest.mark.parametrize('text', [
    '`pspnet.memory.no_such_function`',
    '`pspnet.no_such_module`',
    '```python\nfrom pspnet.image_io import no_such_reader\n```',
    '```python\nfrom pspnet import (\n```',
])
def test_name_check_fails_on_a_missing_name(pages, name_baseline, text):
    name = os.path.join('docs', 'onnx.md')
    assert len(name_problems(edited(
        pages, name, pages[name].text + '\n' + text + '\n'), ROOT)) \
        == len(name_baseline) + 1


def test_help_options_reads_the_option_list():
    text = ('usage: x.py [-h] [--gpu N]\n\noptions:\n'
            '  -h, --help            show this help message and exit\n'
            '  --gpu N, -g N         GPU id; see also --not-an-option\n'
            '  --pretrained-model PATH|cityscapes|ade20k\n'
            '                        weights, as --also-not\n'
            '  --models MODELS [MODELS ...]\n')
    assert help_options(text) == {'-h', '--help', '--gpu', '-g',
                                  '--pretrained-model', '--models'}


def test_subcommands_are_read_from_the_usage():
    assert subcommands('usage: p.py [-h] [--version] {coco,labelme,cvat} '
                       '...\n\npositional arguments:\n') == [
                           'coco', 'labelme', 'cvat']
    assert subcommands('usage: x.py [-h] [--gpu N] {a,b}\n') == []


def test_anchor_follows_github():
    assert anchor('cuDNN: the `requirements-gpu-cudnn.txt` extra') == \
        'cudnn-the-requirements-gpu-cudnntxt-extra'
    assert anchor("VOC 2012 (the recipe of PSPNet's VOC model)") == \
        'voc-2012-the-recipe-of-pspnets-voc-model'
    assert anchor('Precision: TF32, float16 inference, mixed16 training') \
        == 'precision-tf32-float16-inference-mixed16-training'
