"""``aiida-mlcampaign data`` / ``verdi data mlcampaign``: import, show, export, and refusal of malformed files."""

import shutil

import ase.io
import numpy as np
import pytest
from click.testing import CliRunner

from aiida_mlcampaign.cli import cli

FIXTURE = 'gpumd/pbte_train_master/train.xyz'


@pytest.fixture
def runner(aiida_profile_clean):
    return CliRunner()


def invoke(runner, aiida_profile_clean, *args):
    return runner.invoke(cli, ['data', '-p', aiida_profile_clean.name, *args], catch_exceptions=False)


def test_import_show_export_round_trip(runner, aiida_profile_clean, fixtures_dir, tmp_path):
    from aiida import orm

    result = invoke(runner, aiida_profile_clean, 'import', str(fixtures_dir / FIXTURE), '--origin', 'pbte')
    assert result.exit_code == 0, result.output
    pk = int(result.output.split('<')[1].split('>')[0])
    node = orm.load_node(pk)
    assert node.num_frames == 2 and set(node.get_array('origins')) == {'nep2xyz'}  # the file's config_type wins

    shown = invoke(runner, aiida_profile_clean, 'show', str(pk))
    assert 'frames          2' in shown.output and 'Pb Te' in shown.output

    xyz = tmp_path / 'out.xyz'
    assert invoke(runner, aiida_profile_clean, 'export', str(pk), '-o', str(xyz)).exit_code == 0
    original = ase.io.read(fixtures_dir / FIXTURE, index=':')
    exported = ase.io.read(xyz, index=':')
    for a, b in zip(original, exported, strict=True):
        np.testing.assert_allclose(a.positions, b.positions)
        np.testing.assert_allclose(a.arrays['force'], b.arrays['force'])
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy())

    cfg = tmp_path / 'out.cfg'
    result = invoke(runner, aiida_profile_clean, 'export', str(pk), '-f', 'cfg', '-o', str(cfg), '--species-order',
                    'Te,Pb')
    assert result.exit_code == 0, result.output
    assert cfg.read_text().count('BEGIN_CFG') == 2


def test_malformed_xyz_is_refused_with_the_field(runner, aiida_profile_clean, fixtures_dir, tmp_path):
    from aiida import orm

    broken = tmp_path / 'broken.xyz'
    shutil.copy(fixtures_dir / FIXTURE, broken)
    lines = broken.read_text().splitlines()
    lines[1] = lines[1].replace('Lattice=', 'Lattic=')
    broken.write_text('\n'.join(lines) + '\n')
    before = orm.QueryBuilder().append(orm.Data).count()
    result = runner.invoke(cli, ['data', '-p', aiida_profile_clean.name, 'import', str(broken)])
    assert result.exit_code != 0
    assert 'lattice' in result.output.lower()
    assert orm.QueryBuilder().append(orm.Data).count() == before


def test_export_refuses_other_nodes(runner, aiida_profile_clean, tmp_path):
    from aiida import orm

    node = orm.Int(1).store()
    result = runner.invoke(cli, ['data', '-p', aiida_profile_clean.name, 'export', str(node.pk), '-o',
                                 str(tmp_path / 'x.xyz')])
    assert result.exit_code != 0 and 'not a TrainingSetData' in result.output


def test_verdi_data_subcommand_is_registered():
    import subprocess

    result = subprocess.run(['verdi', 'data', 'mlcampaign', '--help'], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and 'export' in result.stdout


def test_failed_export_keeps_the_existing_file(runner, aiida_profile_clean, fixtures_dir, tmp_path):
    """Frames without forces cannot go into GPUMD's train.xyz: the export fails and the old file stays."""
    from aiida_mlcampaign.data.training_set import TrainingSetData
    from aiida_mlcampaign.formats.extxyz import read_extxyz

    frames = list(read_extxyz(fixtures_dir / FIXTURE))
    frames[1].forces = None
    node = TrainingSetData.from_frames(frames).store()
    output = tmp_path / 'train.xyz'
    output.write_text('an earlier export\n')
    result = runner.invoke(cli, ['data', '-p', aiida_profile_clean.name, 'export', str(node.pk), '-o', str(output)])
    assert result.exit_code == 1 and 'unchanged' in result.output and 'frame 1' in result.output, result.output
    assert output.read_text() == 'an earlier export\n' and [p.name for p in tmp_path.iterdir()] == ['train.xyz']
