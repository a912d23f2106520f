"""``GpumdCalculation``: the files it writes, the run.in of every recorded fixture, and the inputs it refuses.

Recorded run.in files are in ``tests/fixtures/gpumd/md/<folder>/run.in`` (provenance in ``md/SOURCES.md`` and
``SOURCES-nep.md``); the NEP model is ``nep/pbte_train_master/nep.txt`` (PbTe, species Te Pb).
"""

import io
import pathlib

import numpy as np
import pytest
from aiida import orm
from ase.build import bulk

from aiida_mlcampaign.calculations.gpumd import GpumdCalculation, gpumd_legacy
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.formats.gpumd import read_restart_xyz
from aiida_mlcampaign.formats.gpumd_model import model_xyz
from aiida_mlcampaign.formats.gpumd_run import read_run_in, run_in

FIXTURES = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd'
MD = FIXTURES / 'md'
NEP = FIXTURES / 'nep' / 'pbte_train_master' / 'nep.txt'
NEP3 = FIXTURES / 'nep' / 'models' / 'nep3_Al_legacy.txt'
LEGACY = {'si_liquid_diffusion_msd_sdc_legacy_v3.x'}
FOLDERS = sorted(p.parent.name for p in MD.glob('*/run.in'))
STAGES = [{'velocity': 300, 'time_step': 1, 'ensemble': ['nvt_nhc', 300, 300, 100], 'dump_thermo': 10,
           'dump_restart': 50, 'compute_msd': {'sample_interval': 1, 'Nc': 10, 'group': [1, 0]},
           'dump_xyz': {'interval': 50, 'file': 'dump.xyz', 'velocity': True}, 'run': 100}]


def pbte_atoms():
    return bulk('PbTe', 'rocksalt', a=6.46, cubic=True)


@pytest.fixture(scope='module')
def common(fake_code):
    """Stored once: the code, the PbTe potential and an 8-atom PbTe cell."""
    return {'code': fake_code('gpumd'), 'potential': NepPotentialData(NEP).store(),
            'structure': orm.StructureData(ase=pbte_atoms()).store()}


def test_writes_model_run_in_and_potential(generate_calc_job, common):
    velocities = np.linspace(-0.01, 0.01, 24).reshape(8, 3)
    groups = {'1_species': [0, 1] * 4, '0_half': [0] * 4 + [1] * 4}
    inputs = {**common, 'stages': orm.List(STAGES), 'groups': orm.Dict(groups),
              'velocities': orm.ArrayData({'velocities': velocities})}
    calcinfo, folder, _ = generate_calc_job(GpumdCalculation, inputs)
    assert (folder / 'run.in').read_text() == run_in(STAGES)
    model = read_restart_xyz(folder / 'model.xyz')
    atoms = pbte_atoms()
    assert model['species'] == atoms.get_chemical_symbols()
    assert np.array_equal(model['positions'], atoms.positions) and np.array_equal(model['cell'], atoms.cell[:])
    assert np.array_equal(model['velocities'], velocities)
    assert np.allclose(model['masses'], atoms.get_masses())
    assert model['groups'].T.tolist() == [groups['0_half'], groups['1_species']]  # sorted names = method order
    assert calcinfo.local_copy_list == [(common['potential'].uuid, 'nep.txt', 'nep.txt')]
    assert calcinfo.codes_info[0].cmdline_params == [] and calcinfo.codes_info[0].stdout_name == 'gpumd.out'
    assert {'gpumd.out', 'gpumd.err', 'thermo.out', 'msd.out', 'viscosity.out'} <= set(calcinfo.retrieve_list)
    assert calcinfo.retrieve_temporary_list == ['restart.xyz', 'dump.xyz']
    assert not calcinfo.prepend_text


def test_restart_is_copied_unchanged_as_model(generate_calc_job, common):
    atoms = pbte_atoms()
    text = model_xyz(atoms.get_chemical_symbols(), atoms.cell[:], atoms.positions, masses=atoms.get_masses(),
                     velocities=np.zeros((8, 3)), groups=[[0] * 8, [0, 1] * 4])
    restart = orm.SinglefileData(io.BytesIO(text.encode()), filename='restart.xyz').store()
    inputs = {'code': common['code'], 'potential': common['potential'], 'restart': restart,
              'stages': orm.List(STAGES)}
    calcinfo, folder, _ = generate_calc_job(GpumdCalculation, inputs)
    assert (restart.uuid, 'restart.xyz', 'model.xyz') in calcinfo.local_copy_list
    assert not (folder / 'model.xyz').exists()


@pytest.mark.parametrize('folder', FOLDERS)
def test_fixture_run_in_round_trip(generate_calc_job, common, folder):
    legacy = folder in LEGACY
    recorded = read_run_in((MD / folder / 'run.in').read_text(), legacy=legacy)
    inputs = {**common, 'stages': orm.List(recorded['stages']), 'legacy': orm.Bool(legacy),
              'groups': orm.Dict({'0': [0] * 8})}
    _, sandbox, _ = generate_calc_job(GpumdCalculation, inputs)
    written = read_run_in((sandbox / 'run.in').read_text(), legacy=legacy)
    assert written['potential'] == 'nep.txt'
    assert written['stages'] == recorded['stages'] and written['legacy'] is legacy


def test_raw_run_in_is_written_unchanged(generate_calc_job, common):
    text = 'potential nep.txt\nvelocity 300\nensemble nve\nplumed plumed.dat 100 0\ndump_thermo 10\nrun 100\n'
    _, folder, _ = generate_calc_job(GpumdCalculation, {**common, 'run_in': orm.Str(text)})
    assert (folder / 'run.in').read_text() == text


def refusal(inputs) -> str:
    error = GpumdCalculation.spec().inputs.validate(inputs)
    assert error is not None, 'inputs were accepted'
    return str(error)


def al_structure():
    return orm.StructureData(ase=bulk('Al', 'fcc', a=4.05, cubic=True))


WRAP = {'run_in': orm.Str, 'stages': orm.List, 'groups': orm.Dict, 'gpumd_version': orm.Str, 'gpus': orm.Int,
        'blowup_temperature_factor': orm.Float, 'velocities': lambda v: orm.ArrayData({'velocities': v})}


@pytest.mark.parametrize('change, message', [
    ({'restart': 'RESTART'}, 'exactly one of structure'),
    ({'structure': None}, 'exactly one of structure'),
    ({'run_in': 'potential nep.txt\nensemble nve\nrun 10\n'}, 'exactly one of stages and run_in'),
    ({'run_in': 'potential other.txt\nensemble nve\nrun 10\n', 'stages': None}, 'potential must be nep.txt'),
    ({'stages': [{'ensemble': 'nvt_nhc 300 300', 'run': 10}]}, 'stages[0]: ensemble: nvt_nhc: expected T1'),
    ({'stages': [{'ensemble': 'nve', 'dump_exyz': 10, 'run': 10}]}, 'dump_exyz: removed from GPUMD'),
    ({'structure': 'AL'}, "species ['Al'] are not in the potential"),
    ({'groups': {'0': [0, 1]}}, 'groups: 0: expected a list of 8 integer labels'),
    ({'groups': {'0': [0] * 7 + [-1]}}, 'labels must be integers >= 0'),
    ({'stages': [{'ensemble': 'nve', 'compute_msd': '1 10 group 0 0', 'run': 10}]},
     'compute_msd group: grouping method 0 does not exist'),
    ({'velocities': np.zeros((3, 3))}, 'velocities: expected shape (8, 3)'),
    ({'gpumd_version': '3.3'}, 'model.xyz needs GPUMD >= 3.6'),
    ({'gpumd_version': '3.5'}, 'model.xyz needs GPUMD >= 3.6'),
    ({'gpumd_version': 'five'}, "gpumd_version: cannot use 'five'"),
    ({'gpus': 1, 'metadata': {'options': {'custom_scheduler_commands': '#SBATCH --gres=gpu:2'}}},
     'already requests GPUs'),  # more GPU refusals, shared with the nep CalcJob: test_gpu.py
    ({'blowup_temperature_factor': 0.0}, 'blowup_temperature_factor: must be > 0'),
])
def test_refused_before_submission(common, change, message):
    inputs = {**common, 'stages': orm.List([{'ensemble': 'nve', 'dump_thermo': 10, 'run': 10}])}
    for key, value in change.items():
        if value is None:
            inputs.pop(key)
        elif isinstance(value, str) and value == 'RESTART':
            inputs['restart'] = orm.SinglefileData(io.BytesIO(b'2\n'), filename='restart.xyz')
        elif isinstance(value, str) and value == 'AL':
            inputs['structure'] = al_structure()
        else:
            inputs[key] = WRAP.get(key, lambda v: v)(value)
    assert message in refusal(inputs)


def test_nep3_model_refused_for_gpumd_5_3_and_later(common):
    inputs = {'code': common['code'], 'potential': NepPotentialData(NEP3), 'structure': al_structure(),
              'stages': orm.List([{'ensemble': 'nve', 'run': 10}])}
    assert GpumdCalculation.spec().inputs.validate({**inputs, 'gpumd_version': orm.Str('5.2')}) is None
    assert 'NEP3 was removed in v5.3' in refusal({**inputs, 'gpumd_version': orm.Str('5.6')})


@pytest.mark.parametrize('version, legacy', [('3.6', True), ('5.5', True), ('5.6', True), ('v5.6.0', True),
                                             ('5.6.1', False), ('master', False)])
def test_legacy_grammar_up_to_gpumd_5_6(version, legacy):
    """The keywords dropped after v5.6 are still accepted for v5.6 itself (and not for a later master)."""
    assert gpumd_legacy({'gpumd_version': orm.Str(version)}) is legacy
