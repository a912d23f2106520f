"""``aiida-mlcampaign setup``'s codes: the Python programs are taken from the interpreter the project runs in.

A job's login shell does not activate a virtual environment, so a code found through PATH could run another
Python's copy of a program (or, for a ``#!/usr/bin/env python3`` script, another interpreter altogether).
"""

import os
import pathlib
import sys
import sysconfig

import pytest

from aiida_mlcampaign.setup.profile import KNOWN_EXECUTABLES, PYTHON_EXECUTABLES, find_executable


@pytest.mark.parametrize('name', ['mlcampaign-explore', 'mlcampaign-md', 'neppo', 'motep'])
def test_python_programs_come_from_this_interpreter(name, monkeypatch, tmp_path):
    """With an impostor first on PATH, the program next to this interpreter is still the one chosen."""
    impostor = tmp_path / name
    impostor.write_text('#!/bin/sh\nexit 1\n')
    impostor.chmod(0o755)
    monkeypatch.setenv('PATH', str(tmp_path) + os.pathsep + os.environ.get('PATH', ''))
    found = find_executable(name)
    if found is None or pathlib.Path(found) == impostor:
        installed = pathlib.Path(sysconfig.get_path('scripts')) / name
        if not installed.exists():
            pytest.skip(f'{name} is not installed next to {sys.executable}')
    assert pathlib.Path(found).parent in {pathlib.Path(sysconfig.get_path('scripts')),
                                         pathlib.Path(sys.executable).parent}
    first_line = pathlib.Path(found).read_text(errors='replace').splitlines()[0]
    assert first_line.startswith('#!') and 'env python' not in first_line  # pip writes this interpreter's path


def test_every_python_program_and_nep_engine_has_its_plugin():
    assert set(PYTHON_EXECUTABLES) <= set(KNOWN_EXECUTABLES)
    assert KNOWN_EXECUTABLES['neppo'] == ('mlcampaign.nep.train', False)
    assert KNOWN_EXECUTABLES['nep'] == ('mlcampaign.nep.train', False)
    assert KNOWN_EXECUTABLES['gpumd'][0] == 'mlcampaign.gpumd.md'
    assert KNOWN_EXECUTABLES['mlcampaign-md'] == ('mlcampaign.md.cpu', False)


def test_other_programs_come_from_path(monkeypatch, tmp_path):
    program = tmp_path / 'pw.x'
    program.write_text('#!/bin/sh\n')
    program.chmod(0o755)
    monkeypatch.setenv('PATH', str(tmp_path))
    assert find_executable('pw.x') == str(program)


def test_a_code_of_the_same_label_running_something_else_is_refused(aiida_localhost, tmp_path):
    """Reused when it runs the program found now; refused, naming both paths, when it runs another."""
    from aiida import orm

    from aiida_mlcampaign.setup.profile import ensure_code

    program = tmp_path / 'prog'
    program.write_text('#!/bin/sh\n')
    first = ensure_code('prog', str(program), aiida_localhost, 'core.arithmetic.add', False)
    assert ensure_code('prog', str(program), aiida_localhost, 'core.arithmetic.add', False).pk == first.pk
    orm.InstalledCode(label='other', computer=aiida_localhost, filepath_executable='/bin/true').store()
    with pytest.raises(ValueError, match=r'code other@localhost: exists and runs /bin/true, but .*prog was found'):
        ensure_code('other', str(program), aiida_localhost, 'core.arithmetic.add', False)
