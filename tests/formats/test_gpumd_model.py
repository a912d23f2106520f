"""``model.xyz`` writer and header reader, and the SLURM GPU request helpers (pure functions, no AiiDA).

``md/msd_groups_SiFCH_v4.2/model.xyz`` is a real GPUMD input (provenance in ``tests/fixtures/gpumd/md/SOURCES.md``).
"""

import io
import pathlib

import numpy as np
import pytest

from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.gpumd import read_restart_xyz
from aiida_mlcampaign.formats.gpumd_model import ASE_VELOCITY_TO_A_PER_FS, model_xyz, read_model_header
from aiida_mlcampaign.formats.slurm import find_gpu_requests, gpu_directive

MD = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd' / 'md'
CELL = np.diag([6.5, 6.5, 6.5])


def test_recorded_model_round_trips_through_the_writer():
    recorded = read_restart_xyz(MD / 'msd_groups_SiFCH_v4.2' / 'model.xyz')
    text = model_xyz(recorded['species'], recorded['cell'], recorded['positions'], pbc=recorded['pbc'],
                     groups=recorded['groups'].T)
    again = read_restart_xyz(io.StringIO(text))
    assert again['species'] == recorded['species'] and len(again['species']) == 27
    assert np.array_equal(again['positions'], recorded['positions'])
    assert np.array_equal(again['groups'], recorded['groups']) and again['velocities'] is None
    header = read_model_header(io.StringIO(text))
    assert header['num_grouping_methods'] == 1 and not header['has_velocities'] and not header['has_masses']


def test_all_columns_exact_and_header():
    velocities = [[1e-3, -2.5e-4, 1 / 3], [0.0, 0.0, -1e-17]]
    text = model_xyz(['Pb', 'Te'], CELL, [[0, 0, 0], [3.25, 3.25, 3.25]], pbc=(True, True, False),
                     masses=[207.2, 127.6], velocities=velocities, groups=[[0, 1], [1, 0]])
    lines = text.splitlines()
    assert lines[1] == 'pbc="T T F" Lattice="6.5 0 0 0 6.5 0 0 0 6.5" ' \
                       'Properties=species:S:1:pos:R:3:mass:R:1:vel:R:3:group:I:2'
    frame = read_restart_xyz(io.StringIO(text))
    assert np.array_equal(frame['velocities'], velocities)  # shortest round-trip repr: exact
    assert frame['pbc'] == (True, True, False) and frame['groups'].tolist() == [[0, 1], [1, 0]]
    header = read_model_header(io.StringIO(text))
    assert header['num_atoms'] == 2 and header['has_velocities'] and header['num_grouping_methods'] == 2
    assert ASE_VELOCITY_TO_A_PER_FS == pytest.approx(__import__('ase.units').units.fs)


@pytest.mark.parametrize('kwargs, message', [
    ({'symbols': ['Pb']}, 'symbols: GPUMD needs at least 2 atoms'),
    ({'symbols': ['Pb', '1']}, "symbols[1]: not an element symbol: '1'"),
    ({'cell': np.zeros((3, 3))}, 'cell: the three vectors are linearly dependent'),
    ({'positions': [[0, 0, 0]]}, 'positions: expected shape (2, 3)'),
    ({'positions': [[0, 0, 0], [0, np.nan, 0]]}, 'positions: not finite at row 1'),
    ({'masses': [1.0, 0.0]}, 'masses: must be > 0'),
    ({'velocities': [[0, 0, 0]]}, 'velocities: expected shape (2, 3)'),
    ({'groups': [[0]]}, 'groups[0]: expected one label per atom (2)'),
    ({'groups': [[0, -1]]}, 'groups[0][1]: labels must be >= 0'),
    ({'groups': [[0, 0.5]]}, 'groups[0][1]: expected an integer label'),
])
def test_writer_refuses(kwargs, message):
    arguments = {'symbols': ['Pb', 'Te'], 'cell': CELL, 'positions': [[0, 0, 0], [1, 1, 1]], **kwargs}
    with pytest.raises(FormatError) as error:
        model_xyz(arguments.pop('symbols'), arguments.pop('cell'), arguments.pop('positions'), **arguments)
    assert message in str(error.value)


def test_header_reader_on_truncated_restart_and_errors():
    header = read_model_header(MD / 'si_liquid_npt_nve_msd_sdc_rdf_v5.6' / 'restart.xyz')  # atom lines cut short
    assert header['num_atoms'] == 8000 and header['has_velocities'] and header['num_grouping_methods'] == 1
    with pytest.raises(FormatError, match='line 1: atom count'):
        read_model_header(io.StringIO('x\n'))
    with pytest.raises(FormatError, match='Properties: pos column missing'):
        read_model_header(io.StringIO('2\nLattice="1 0 0 0 1 0 0 0 1" Properties=species:S:1\n'))


def test_gpu_directives():
    assert gpu_directive(2) == '#SBATCH --gpus-per-node=2'
    assert gpu_directive(4, gres_syntax=True) == '#SBATCH --gres=gpu:4'
    for bad in (0, -1, True, 1.5):
        with pytest.raises(FormatError, match='gpus: expected a positive number'):
            gpu_directive(bad)


def test_find_gpu_requests():
    text = ('#SBATCH --partition=gpu\n#SBATCH --gres=gpu:a100:2,tmpdisk:10\n#SBATCH --gpus-per-node=h100:4\n'
            '#SBATCH -G 1\n#SBATCH --gres=gpu\nmodule load cuda\n#SBATCH --gres=gpu:8\n')
    found = find_gpu_requests(text)
    assert [(r['style'], r['gpus']) for r in found] == [('gres', 2), ('gpus', 4), ('gpus', 1), ('gres', 1)]
    assert find_gpu_requests(None) == [] and find_gpu_requests('#SBATCH --gres=tmpdisk:10') == []
    with pytest.raises(FormatError, match='requests 0 GPUs'):
        find_gpu_requests('#SBATCH --gres=gpu:0')
    with pytest.raises(FormatError, match='cannot read the number of GPUs'):
        find_gpu_requests('#SBATCH --gpus-per-node=many')
