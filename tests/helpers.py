"""Test helpers: real programs and services are required under CI, optional on a laptop."""

import os
import shutil
import socket

import pytest


def _missing(message: str):
    if os.environ.get('CI', '').strip().lower() == 'true':
        pytest.fail(f'{message}, and CI=true requires it')
    pytest.skip(message)


def require_executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        _missing(f'{name} is not on PATH')
    return path


def require_service(name: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=3):
            return
    except OSError as exception:
        _missing(f'{name} is not reachable at {host}:{port} ({exception})')
