"""Fixtures to test CalcJobs and parsers without running the executable (the aiida-core / aiida-quantumespresso way).

``generate_calc_job`` instantiates a CalcJob from inputs (port validation included) and calls its
``prepare_for_submission`` on a sandbox folder; ``generate_calc_job_node`` builds a stored ``CalcJobNode``
with linked inputs and a ``retrieved`` FolderData holding given files, ready for
``Parser.parse_from_node(node, store_provenance=False)``.
"""

from __future__ import annotations

import io
import pathlib

import pytest


@pytest.fixture(scope='module')
def calcjob_computer(aiida_profile, tmp_path_factory):
    """A configured ``core.local``/``core.direct`` computer, one per test module (nothing is ever submitted)."""
    import uuid

    from aiida import orm

    computer = orm.Computer(
        label=f'calcjob-tests-{uuid.uuid4().hex[:8]}', hostname='localhost', transport_type='core.local',
        scheduler_type='core.direct', workdir=str(tmp_path_factory.mktemp('calcjob-workdir')),
    ).store()
    computer.configure(safe_interval=0.0)
    return computer


@pytest.fixture(scope='module')
def fake_code(calcjob_computer):
    """Return a factory of stored InstalledCodes on ``calcjob_computer`` (never executed: any existing path will do)."""
    from aiida import orm

    codes = {}

    def factory(label: str = 'fake', default_calc_job_plugin: str | None = None):
        if label not in codes:
            codes[label] = orm.InstalledCode(label=label, computer=calcjob_computer, filepath_executable='/bin/true',
                                             default_calc_job_plugin=default_calc_job_plugin).store()
        return codes[label]

    return factory


@pytest.fixture
def generate_calc_job(aiida_profile, tmp_path):
    """Return ``factory(process_class, inputs) -> (calcinfo, folder, process)``; raises as the engine would on bad
    inputs."""
    from aiida.common.folders import Folder
    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager

    def factory(process_class, inputs: dict):
        folder_path = tmp_path / f'calcjob-{len(list(tmp_path.iterdir()))}'
        folder_path.mkdir()
        folder = Folder(str(folder_path))
        process = instantiate_process(get_manager().get_runner(), process_class, **inputs)
        calcinfo = process.prepare_for_submission(folder)
        return calcinfo, folder_path, process

    return factory


@pytest.fixture(scope='module')
def generate_calc_job_node(calcjob_computer):
    """Return ``factory(process_class, inputs, files, options=None) -> CalcJobNode`` with ``retrieved`` attached.

    ``files`` maps retrieved file names to str/bytes content or to a path to copy.
    """
    from aiida import orm
    from aiida.common.links import LinkType

    def factory(process_class, inputs: dict, files: dict, options: dict | None = None):
        node = orm.CalcJobNode(computer=calcjob_computer, process_type=process_class.build_process_type())
        node.set_option('resources', {'num_machines': 1, 'num_mpiprocs_per_machine': 1})
        node.set_option('max_wallclock_seconds', 600)
        for key, value in (options or {}).items():
            node.set_option(key, value)
        for label, value in inputs.items():
            if not value.is_stored:
                value.store()
            node.base.links.add_incoming(value, link_type=LinkType.INPUT_CALC, link_label=label)
        node.store()
        retrieved = orm.FolderData()
        for name, content in files.items():
            if isinstance(content, pathlib.Path):
                content = content.read_bytes()
            if isinstance(content, str):
                content = content.encode('utf-8')
            retrieved.base.repository.put_object_from_filelike(io.BytesIO(content), name)
        retrieved.base.links.add_incoming(node, link_type=LinkType.CREATE, link_label='retrieved')
        retrieved.store()
        return node

    return factory
