"""``aiida-mlcampaign structures import``: ASE-readable files in, checked StructureData out."""

import ase.io
from ase.build import bulk
from click.testing import CliRunner

from aiida_mlcampaign.cli import cli


def test_import_cif_and_poscar_into_a_group(aiida_profile_clean, tmp_path):
    from aiida import orm

    ase.io.write(tmp_path / 'cu.cif', bulk('Cu', 'fcc', a=3.6, cubic=True))
    ase.io.write(tmp_path / 'POSCAR', bulk('Si', 'diamond', a=5.43), format='vasp')
    result = CliRunner().invoke(cli, ['structures', '-p', aiida_profile_clean.name, 'import',
                                      str(tmp_path / 'cu.cif'), str(tmp_path / 'POSCAR'), '--group', 'candidates'])
    assert result.exit_code == 0, result.output
    group = orm.load_group('candidates')
    assert sorted(node.get_formula() for node in group.nodes) == ['Cu4', 'Si2']


def test_overlapping_atoms_refuse_the_whole_import(aiida_profile_clean, tmp_path):
    from aiida import orm

    good = bulk('Cu', 'fcc', a=3.6, cubic=True)
    bad = good.copy()
    bad.positions[1] = bad.positions[0] + [0.2, 0, 0]
    ase.io.write(tmp_path / 'two.xyz', [good, bad], format='extxyz')
    result = CliRunner().invoke(cli, ['structures', '-p', aiida_profile_clean.name, 'import',
                                      str(tmp_path / 'two.xyz')])
    assert result.exit_code != 0
    assert 'two.xyz[1]: atoms 0 and 1 are 0.20 Å apart' in result.output
    assert orm.QueryBuilder().append(orm.StructureData).count() == 0
