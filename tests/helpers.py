"""Test helpers: real programs and services are required under CI, optional on a laptop."""

import os
import socket

import pytest


def _missing(message: str):
    if os.environ.get('CI', '').strip().lower() == 'true':
        pytest.fail(f'{message}, and CI=true requires it')
    pytest.skip(message)


def local_codes(tmp_path_factory, *names: str) -> dict:
    """The localhost codes of ``names`` as ``aiida-mlcampaign setup`` makes them (its plugins and MPI use), each
    program required (a skip on a laptop, a failure under ``CI=true``), on a scratch folder of the test session."""
    from aiida_mlcampaign.setup import profile as profile_setup

    for name in names:
        require_executable(name)
    computer = profile_setup.ensure_localhost(workdir=str(tmp_path_factory.mktemp('scratch')), mpiprocs=1)
    return profile_setup.discover_codes(computer, {name: profile_setup.KNOWN_EXECUTABLES[name] for name in names})


def require_executable(name: str) -> str:
    """The path of ``name`` as ``aiida-mlcampaign setup`` finds it (Python programs next to this interpreter first)."""
    from aiida_mlcampaign.setup.profile import find_executable

    path = find_executable(name)
    if path is None:
        _missing(f'{name} is not on PATH')
    return path


def require_service(name: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=3):
            return
    except OSError as exception:
        _missing(f'{name} is not reachable at {host}:{port} ({exception})')


def python_program(folder, name: str, script, env: dict | None = None):
    """An executable ``folder/name`` that runs ``script`` under THIS interpreter, with ``env`` exported first.

    What the suite gives a code as its executable must run under the interpreter the project is installed in: a
    job's login shell does not activate a virtual environment, so a ``#!/usr/bin/env python3`` script would run
    under another Python, without the project.
    """
    import pathlib
    import sys

    path = pathlib.Path(folder) / name
    exports = ''.join(f'export {key}="{value}"\n' for key, value in (env or {}).items())
    path.write_text(f'#!/bin/sh\n{exports}exec "{sys.executable}" "{script}" "$@"\n')
    path.chmod(0o755)
    return path


def outputs_without_creator(process) -> list[str]:
    """The outputs of a work chain that it stored itself (no creating calculation) and that are not among its own
    inputs: each should come from a calcfunction or a calculation (``calculations/records.py``)."""
    from aiida.common.links import LinkType

    inputs = {link.node.pk for link in process.base.links.get_incoming().all()}
    return sorted(f'{link.link_label}: {link.node.__class__.__name__}<{link.node.pk}>'
                  for link in process.base.links.get_outgoing(link_type=LinkType.RETURN).all()
                  if link.node.creator is None and link.node.pk not in inputs)
