"""Tests for the structure calcfunctions (need the throw-away AiiDA test profile)."""

import numpy as np
import pytest

from aiida import orm
from aiida.common.links import LinkType
from ase import Atoms

from aiida_mlcampaign.calculations.structures import (
    build_argyrodite_structure,
    generate_rattled_set,
    make_supercell,
    rattle_structure,
    strain_structure,
)
from aiida_mlcampaign.structures.argyrodite import build_argyrodite
from aiida_mlcampaign.structures.variants import minimum_distance, rattle

pytestmark = pytest.mark.usefixtures('aiida_profile')


@pytest.fixture
def structure():
    return orm.StructureData(ase=build_argyrodite()).store()


def _creator_input(node, label):
    """The input node linked as ``label`` to the process that created ``node``."""
    creator = node.creator
    assert creator is not None
    return creator.base.links.get_incoming(link_type=LinkType.INPUT_CALC, link_label_filter=label).one().node


def test_rattle_provenance_and_determinism(structure):
    out = rattle_structure(structure, orm.Float(0.05), orm.Int(4))
    assert isinstance(out, orm.StructureData)
    assert out.is_stored
    assert _creator_input(out, 'structure').uuid == structure.uuid
    assert out.creator.process_label == 'rattle_structure'
    assert out.get_formula() == structure.get_formula()
    assert out.get_kind_names() == structure.get_kind_names()
    again = rattle_structure(structure, orm.Float(0.05), orm.Int(4))
    assert np.array_equal(out.get_ase().positions, again.get_ase().positions)
    disp = out.get_ase().positions - structure.get_ase().positions
    assert 0.02 < np.linalg.norm(disp, axis=1).mean() < 0.14


def test_rattle_python_values_are_serialised(structure):
    out = rattle_structure(structure, 0.02, 1)
    assert _creator_input(out, 'stdev').value == pytest.approx(0.02)


@pytest.mark.parametrize(('stdev', 'seed', 'field'), [(-0.1, 0, 'stdev'), (0.1, -1, 'seed')])
def test_rattle_invalid(structure, stdev, seed, field):
    with pytest.raises(ValueError, match=f'^{field}'):
        rattle_structure(structure, orm.Float(stdev), orm.Int(seed))


def test_rattle_too_close_rejected():
    pair = Atoms('Cu2', positions=[[0, 0, 0], [0.7, 0, 0]], cell=np.eye(3) * 8.0, pbc=True)
    seed = next(s for s in range(1000) if minimum_distance(rattle(pair, 0.3, s)) < 0.5)
    node = orm.StructureData(ase=pair)
    message = r'^stdev: the generated structure fails the distance check: structure: atoms 0 and 1'
    with pytest.raises(ValueError, match=message):
        rattle_structure(node, orm.Float(0.3), orm.Int(seed))


def test_input_structure_too_close_rejected():
    pair = Atoms('Cu2', positions=[[0, 0, 0], [0.3, 0, 0]], cell=np.eye(3) * 8.0, pbc=True)
    with pytest.raises(ValueError, match=r'^structure: atoms 0 and 1 are 0.30 Å apart'):
        make_supercell(orm.StructureData(ase=pair), orm.List([1, 1, 2]))


def test_rattle_keeps_custom_kinds():
    s = orm.StructureData(cell=np.eye(3) * 4.0)
    s.append_atom(position=(0, 0, 0), symbols='Cu', name='Cu1')
    s.append_atom(position=(2, 2, 2), symbols='Cu', name='CuB')
    out = rattle_structure(s.store(), orm.Float(0.01), orm.Int(0))
    assert out.get_site_kindnames() == ['Cu1', 'CuB']
    assert [k.symbol for k in out.kinds] == ['Cu', 'Cu']


@pytest.mark.parametrize(
    'values',
    [
        [0.02, -0.01, 0.03, 0.0, 0.004, 0.01],
        [[0.02, 0.005, 0.0], [0.005, -0.01, 0.002], [0.0, 0.002, 0.03]],
    ],
)
def test_strain_list(structure, values):
    node = orm.List(values)
    eps_input = np.array(values)
    out = strain_structure(structure, node)
    if eps_input.shape == (6,):
        xx, yy, zz, yz, xz, xy = eps_input
        eps = np.array([[xx, xy / 2, xz / 2], [xy / 2, yy, yz / 2], [xz / 2, yz / 2, zz]])
    else:
        eps = eps_input
    ratio = out.get_cell_volume() / structure.get_cell_volume()
    assert ratio == pytest.approx(np.linalg.det(np.eye(3) + eps), rel=1e-10)
    assert _creator_input(out, 'structure').uuid == structure.uuid


def test_strain_arraydata(structure):
    eps = np.diag([0.01, 0.02, -0.01])
    array = orm.ArrayData()
    array.set_array('strain', eps)
    out = strain_structure(structure, array)
    assert out.get_cell_volume() / structure.get_cell_volume() == pytest.approx(np.linalg.det(np.eye(3) + eps))
    assert _creator_input(out, 'strain').uuid == array.uuid


@pytest.mark.parametrize('bad', [[0.1, 0.2], [[-1, 0, 0], [0, 0, 0], [0, 0, 0]]])
def test_strain_invalid(structure, bad):
    with pytest.raises(ValueError, match='^strain'):
        strain_structure(structure, orm.List(bad))


def test_strain_arraydata_two_arrays(structure):
    array = orm.ArrayData()
    array.set_array('a', np.zeros((3, 3)))
    array.set_array('b', np.zeros((3, 3)))
    with pytest.raises(ValueError, match='^strain: the ArrayData must hold exactly one array'):
        strain_structure(structure, array)


def test_make_supercell(structure):
    out = make_supercell(structure, orm.List([1, 1, 2]))
    assert len(out.sites) == 112
    assert out.get_formula() == 'Cu56P8S48'
    assert out.get_cell_volume() == pytest.approx(2 * structure.get_cell_volume())
    assert _creator_input(out, 'structure').uuid == structure.uuid
    general = make_supercell(structure, orm.List([[1, 1, 0], [-1, 1, 0], [0, 0, 1]]))
    assert len(general.sites) == 112
    assert minimum_distance(general.get_ase()) == pytest.approx(minimum_distance(structure.get_ase()))


@pytest.mark.parametrize('bad', [[1, 1], [1.5, 1, 1], [[1, 0, 0], [0, 1, 0], [0, 0, -1]]])
def test_make_supercell_invalid(structure, bad):
    with pytest.raises(ValueError, match='^matrix'):
        make_supercell(structure, orm.List(bad))


def test_generate_rattled_set(structure):
    outputs = generate_rattled_set(structure, orm.Int(2), orm.Float(0.03), orm.Float(0.02), orm.Int(9))
    assert sorted(outputs) == ['structure_000', 'structure_001']
    volume = structure.get_cell_volume()
    for node in outputs.values():
        assert isinstance(node, orm.StructureData)
        assert _creator_input(node, 'structure').uuid == structure.uuid
        assert len(node.sites) == 56
        ratio = node.get_cell_volume() / volume
        assert (1 - 0.02) ** 3 * 0.99 < ratio < (1 + 0.02) ** 3 * 1.01
        assert node.get_cell_volume() != pytest.approx(volume, rel=1e-8)
    creator = outputs['structure_000'].creator
    created = creator.base.links.get_outgoing(link_type=LinkType.CREATE).all()
    assert {link.link_label for link in created} == set(outputs)
    again = generate_rattled_set(structure, orm.Int(2), orm.Float(0.03), orm.Float(0.02), orm.Int(9))
    for key in outputs:
        assert np.array_equal(outputs[key].get_ase().positions, again[key].get_ase().positions)
    other = generate_rattled_set(structure, orm.Int(1), orm.Float(0.03), orm.Float(0.02), orm.Int(10))
    assert not np.allclose(other['structure_000'].get_ase().positions, outputs['structure_000'].get_ase().positions)


@pytest.mark.parametrize(
    ('count', 'stdev', 'max_strain', 'seed', 'field'),
    [
        (0, 0.01, 0.01, 0, 'count'),
        (2, -0.01, 0.01, 0, 'stdev'),
        (2, 0.01, 0.6, 0, 'max_strain'),
        (2, 0.01, 0.01, -5, 'seed'),
    ],
)
def test_generate_rattled_set_invalid(structure, count, stdev, max_strain, seed, field):
    with pytest.raises(ValueError, match=f'^{field}'):
        generate_rattled_set(structure, orm.Int(count), orm.Float(stdev), orm.Float(max_strain), orm.Int(seed))


def test_generate_rattled_set_per_species(structure):
    args = (structure, orm.Int(2), orm.Float(0.03), orm.Float(0.02), orm.Int(9))
    plain = generate_rattled_set(*args)
    # Every species at ``stdev``: the very same structures as without per_species.
    same = generate_rattled_set(*args, per_species=orm.Dict({'Cu': 0.03, 'P': 0.03, 'S': 0.03}))
    for key in plain:
        assert np.array_equal(same[key].get_ase().positions, plain[key].get_ase().positions)
    # P still (0 would be refused: 1e-9 Å), Cu doubled, S at stdev: the same random numbers, scaled per atom.
    scaled = generate_rattled_set(*args, per_species=orm.Dict({'P': 1e-9, 'Cu': 0.06}))
    unrattled = generate_rattled_set(structure, orm.Int(2), orm.Float(0.0), orm.Float(0.02), orm.Int(9))
    symbols = np.array(structure.get_ase().get_chemical_symbols())
    factor = np.select([symbols == 'P', symbols == 'Cu'], [1e-9 / 0.03, 2.0], 1.0)[:, None]
    for key in plain:
        base = unrattled[key].get_ase().positions
        expected = base + (plain[key].get_ase().positions - base) * factor
        assert np.allclose(scaled[key].get_ase().positions, expected, atol=1e-12)
    assert _creator_input(scaled['structure_000'], 'per_species').get_dict() == {'P': 1e-9, 'Cu': 0.06}


@pytest.mark.parametrize(('per_species', 'field'), [
    ({'Li': 0.05}, 'per_species.Li'),
    ({'P': 0.0}, 'per_species.P'),
    ({'S': -0.02}, 'per_species.S'),
    ({'S': 'big'}, 'per_species.S'),
])
def test_generate_rattled_set_per_species_invalid(structure, per_species, field):
    with pytest.raises(ValueError, match=f'^{field}'):
        generate_rattled_set(structure, orm.Int(1), orm.Float(0.03), orm.Float(0.0), orm.Int(0),
                             per_species=orm.Dict(per_species))


def test_build_argyrodite_structure_defaults():
    out = build_argyrodite_structure()
    assert out.get_formula() == 'Cu28P4S24'
    assert out.get_cell_volume() == pytest.approx(9.65**3)
    assert out.creator.process_label == 'build_argyrodite_structure'
    assert _creator_input(out, 'mobile').value == 'Cu'
    assert np.allclose(out.get_ase().positions, build_argyrodite().positions)


def test_build_argyrodite_structure_other_species():
    out = build_argyrodite_structure(orm.Float(10.9), orm.Str('Ag'), anion=orm.Str('Se'))
    assert out.get_formula() == 'Ag28P4Se24'
    out = build_argyrodite_structure(
        orm.Float(9.86), orm.Str('Li'), free_anions=orm.List(['Cl', 'S']), n_mobile=orm.Int(24)
    )
    assert out.get_formula() == 'Cl4Li24P4S20'
    assert np.allclose(out.get_ase().positions,
                       build_argyrodite(9.86, mobile='Li', free_anions=('Cl', 'S'), n_mobile=24).positions)
    li7 = build_argyrodite_structure(orm.Float(9.99), orm.Str('Li'), mobile_sites=orm.List(['48h', '16e']))
    assert li7.get_formula() == 'Li28P4S24'
    assert _creator_input(li7, 'mobile_sites').get_list() == ['48h', '16e']


@pytest.mark.parametrize(
    ('kwargs', 'field'),
    [
        ({'lattice_parameter': 6.0}, 'lattice_parameter'),
        ({'mobile': 'Qq'}, 'mobile'),
        ({'free_anions': ['S']}, 'free_anions'),
        ({'mobile_sites': ['24h']}, 'mobile_sites'),
        ({'mobile': 'Li'}, 'lattice_parameter'),  # Li7PS6 on 48h only: two Li of a pair 1.8 Å apart
    ],
)
def test_build_argyrodite_structure_invalid(kwargs, field):
    # Plain Python values are serialised to nodes by the calcfunction machinery.
    with pytest.raises(ValueError, match=f'^{field}'):
        build_argyrodite_structure(**kwargs)
