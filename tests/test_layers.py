"""One layer rule: nothing under ``src/aiida_mlcampaign/`` imports aiida, directly or through the plugin's
folders, so the science library is importable and testable without a profile (pyproject.toml, ``package-dir``)."""

import ast
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parent.parent
LIBRARY = ROOT / 'src' / 'aiida_mlcampaign'
#: The plugin: folders at the top of the repository, mapped into the package; each may import aiida.
PLUGIN = ('workchains', 'calculations', 'parsers', 'setup', 'data', 'cli')


def _library_modules():
    for path in sorted(LIBRARY.rglob('*.py')):
        parts = path.relative_to(LIBRARY.parent).with_suffix('').parts
        yield path, '.'.join(parts[:-1] if parts[-1] == '__init__' else parts), parts[-1] == '__init__'


def _absolute(module, level, name, is_package):
    if level == 0:
        return name or ''
    base = module.split('.') if is_package else module.split('.')[:-1]
    base = base[:len(base) - (level - 1)]
    return '.'.join(base + ([name] if name else []))


def test_no_module_under_src_imports_aiida_or_the_plugin():
    offences = []
    for path, module, is_package in _library_modules():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, node.level, node.module, is_package)
                targets = [base] + [f'{base}.{alias.name}' for alias in node.names]
            else:
                continue
            for target in targets:
                parts = target.split('.')
                if parts[0] == 'aiida' or (parts[0] == 'aiida_mlcampaign' and len(parts) > 1 and parts[1] in PLUGIN):
                    offences.append(f'{path.relative_to(ROOT)}:{node.lineno}: imports {target}')
    assert offences == []


def test_the_library_imports_without_aiida():
    """Every module under src/, imported in a fresh interpreter: aiida is never loaded."""
    modules = [module for _, module, _ in _library_modules()]
    code = ('import importlib, json, sys\n'
            f'for name in {modules!r}:\n'
            '    importlib.import_module(name)\n'
            'print(json.dumps(sorted(m for m in sys.modules if m == "aiida" or m.startswith("aiida."))))\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_plugin_folders_are_packages_of_the_one_import_package():
    import aiida_mlcampaign

    for folder in PLUGIN:
        module = __import__(f'aiida_mlcampaign.{folder}', fromlist=['_'])
        assert pathlib.Path(module.__file__).parent == ROOT / folder
        assert not (LIBRARY / folder).exists(), f'src/aiida_mlcampaign/{folder} would shadow the plugin folder'
    assert pathlib.Path(aiida_mlcampaign.__file__).parent == LIBRARY
