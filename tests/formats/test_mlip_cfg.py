"""Tests of the mlip-2 ``.cfg`` reader/writer on hand-written samples (see fixtures/mtp/SOURCES.md)."""

import io
import pathlib

import numpy as np
import pytest

from aiida_mlcampaign.formats.extxyz import read_extxyz, write_extxyz
from aiida_mlcampaign.formats.frames import FormatError, Frame, matrix_to_voigt
from aiida_mlcampaign.formats.mlip_cfg import read_cfg, write_cfg

MTP = pathlib.Path(__file__).parent.parent / 'fixtures' / 'mtp'
MOTEP_MADE_CFG = pathlib.Path(__file__).parent.parent / 'fixtures' / 'mtp' / 'cu_emt_train_40cfg_made-here.cfg'
ORDER = ['Cu', 'Al']


def sign_case_frame() -> Frame:
    """Cubic a = 2 Å (V = 8 Å^3); ASE stress (0.1, 0.2, 0.3, yz 0.01, xz 0.02, xy 0.03) eV/Å^3."""
    return Frame(
        symbols=['Cu', 'Al'],
        cell=np.eye(3) * 2.0,
        positions=[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]],
        energy=-7.5,
        forces=[[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3]],
        stress=[0.1, 0.2, 0.3, 0.01, 0.02, 0.03],
        info={'EFS_by': 'QE'},
    )


def write_text(frames, order=ORDER) -> str:
    buffer = io.StringIO()
    write_cfg(frames, buffer, order)
    return buffer.getvalue()


def read_text(text: str, order=ORDER) -> list[Frame]:
    return list(read_cfg(io.StringIO(text), order))


def assert_same(a: Frame, b: Frame, rtol=1e-10):
    assert a.symbols == b.symbols
    assert a.pbc == b.pbc
    np.testing.assert_allclose(a.cell, b.cell, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(a.positions, b.positions, rtol=rtol, atol=1e-12)
    assert (a.energy is None) == (b.energy is None)
    if a.energy is not None:
        assert a.energy == pytest.approx(b.energy, rel=rtol)
    for name in ('forces', 'stress'):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-14)


# ------------------------------------------------------------------------------- sign convention


def test_sign_case_plus_stress_line():
    lines = write_text([sign_case_frame()]).splitlines()
    header = lines.index(' PlusStress:  xx          yy          zz          yz          xz          xy')
    values = [float(v) for v in lines[header + 1].split()]
    assert values == [-0.8, -1.6, -2.4, -0.08, -0.16, -0.24]


def test_sign_case_round_trip():
    frame = sign_case_frame()
    (back,) = read_text(write_text([frame]))
    assert_same(frame, back)
    assert np.array_equal(matrix_to_voigt(back.stress), [0.1, 0.2, 0.3, 0.01, 0.02, 0.03])
    assert back.info == {'EFS_by': 'QE'}


def test_block_layout_is_mlps():
    text = write_text([sign_case_frame(), sign_case_frame()])
    blocks = text.split('\n\n')
    assert blocks[2] == ''  # each block ends with END_CFG followed by one blank line
    lines = blocks[0].splitlines()
    assert lines[:3] == ['BEGIN_CFG', ' Size', '     2']
    assert lines[3] == ' Supercell'
    assert [float(v) for v in lines[4].split()] == [2.0, 0.0, 0.0]
    assert lines[7] == (' AtomData:  id type       cartes_x      cartes_y      cartes_z'
                        '           fx          fy          fz')
    assert lines[8].split()[:2] == ['1', '0'] and lines[9].split()[:2] == ['2', '1']
    assert lines[10] == ' Energy' and float(lines[11]) == -7.5
    assert lines[12].startswith(' PlusStress:  xx')
    assert lines[14] == ' Feature   EFS_by\tQE'
    assert lines[15] == 'END_CFG'
    assert 'nbh_grades' not in text


def test_species_order_must_contain_every_element():
    with pytest.raises(FormatError, match='species_order'):
        write_text([sign_case_frame()], order=['Cu'])


def test_round_trip_random_triclinic_and_info():
    rng = np.random.default_rng(3)
    frames = []
    for i in range(3):
        n = 3 + i
        frames.append(Frame(
            symbols=list(rng.choice(ORDER, n)),
            cell=np.diag([4.0, 4.2, 4.4]) + rng.normal(0, 0.4, (3, 3)),
            positions=rng.uniform(-1, 5, (n, 3)),
            energy=rng.normal(-3.5 * n, 1),
            forces=rng.normal(0, 1, (n, 3)) * 10.0 ** rng.integers(-8, 2),
            stress=rng.normal(0, 0.02, 6),
            weight=1.0 if i else 3.0,
            info={'EFS_by': 'VASP', 'origin': 'strain 2%', 'mv_grade': 2.75, 'temperature': 300.0,
                  'count': 7, 'note': 'first\nsecond', 'source_uuid': ''},
        ))
    back = read_text(write_text(frames))
    for frame, read in zip(frames, back, strict=True):
        assert_same(frame, read, rtol=1e-15)
        assert read.info == frame.info
        assert read.weight == frame.weight


def test_partial_periodicity_and_molecules_round_trip():
    slab = Frame(symbols=['Cu'], cell=[[2.5, 0, 0], [0, 2.5, 0], [0, 0, 0]], positions=[[0, 0, 1]],
                 pbc=(True, True, False), energy=-1.0)
    molecule = Frame(symbols=['Al', 'Al'], cell=np.zeros((3, 3)), positions=[[0, 0, 0], [2.2, 0, 0]],
                     pbc=False, energy=-2.0, forces=np.zeros((2, 3)))
    text = write_text([slab, molecule])
    assert text.split('END_CFG')[1].count('Supercell') == 0
    back = read_text(text)
    assert_same(slab, back[0])
    assert_same(molecule, back[1])


def test_unrepresentable_pbc_and_stress_without_cell_refused():
    odd = Frame(symbols=['Cu'], cell=np.eye(3), positions=[[0, 0, 0]], pbc=(False, True, True))
    with pytest.raises(FormatError, match='pbc'):
        write_text([odd])
    molecule = Frame(symbols=['Cu'], cell=np.zeros((3, 3)), positions=[[0, 0, 0]], pbc=False,
                     stress=np.eye(3))
    with pytest.raises(FormatError, match='block 0: stress'):
        write_text([molecule])


# ---------------------------------------------------------------------------- hand-written samples


def test_two_frames_triclinic():
    first, second = read_cfg(MTP / 'hand_two_frames_triclinic.cfg', ORDER)
    assert first.symbols == ['Cu', 'Al', 'Cu']
    np.testing.assert_array_equal(first.cell, [[4, 0, 0], [1, 3.5, 0], [0.5, 0.25, 5]])
    np.testing.assert_array_equal(first.positions[1], [2.5, 1.75, 0.0])
    np.testing.assert_array_equal(first.forces[2], [0.0, -0.25, -0.375])
    assert first.energy == -10.5
    # V = 4 * 3.5 * 5 = 70; stress = -PlusStress / 70
    np.testing.assert_allclose(matrix_to_voigt(first.stress), [-0.02, -0.04, 0.01, -0.001, -0.002, 0.003],
                               rtol=1e-12)
    assert first.info == {'EFS_by': 'QE', 'mindist': 2.1}

    assert second.symbols == ['Al', 'Cu']
    np.testing.assert_array_equal(second.forces, [[0.15, -0.025, 0.0], [-0.15, 0.025, 0.0]])
    assert second.energy == -7.25
    # names in the order xy xz yz zz yy xx; V = 27
    np.testing.assert_allclose(matrix_to_voigt(second.stress), [-0.01, 0.05, -0.1, 0.0, 0.01, -0.02],
                               rtol=1e-12, atol=1e-15)
    assert second.info == {'EFS_by': 'VASP', 'mv_grade': 3.5, 'note': 'first line\nsecond line'}


def test_variants():
    direct, molecule, slab = read_cfg(MTP / 'hand_variants.cfg', ORDER)
    assert direct.symbols == ['Cu', 'Al']
    np.testing.assert_array_equal(direct.positions[1], [1.0, 1.0, 1.0])  # direct (0.5 0.5 0.25) in 2x2x4
    assert direct.forces is None and direct.energy == -4.0
    # Virial: mlip-2 divides by V = 16 -> PlusStress (2, 1, -1, 0, 0, 0.1); stress = -that / 16
    np.testing.assert_allclose(matrix_to_voigt(direct.stress), [-0.125, -0.0625, 0.0625, 0, 0, -0.00625],
                               rtol=1e-12)
    assert molecule.pbc == (False, False, False) and molecule.symbols == ['Cu', 'Cu']
    np.testing.assert_array_equal(molecule.cell, np.zeros((3, 3)))
    assert molecule.stress is None
    assert slab.pbc == (True, True, False) and slab.energy is None and slab.forces is None
    assert slab.symbols == ['Al']
    assert slab.info == {'mv_grade': 9.9e99}


def test_hand_samples_round_trip_without_nbh_grades():
    for name in ('hand_two_frames_triclinic.cfg', 'hand_variants.cfg'):
        frames = list(read_cfg(MTP / name, ORDER))
        text = write_text(frames)
        assert 'nbh_grades' not in text
        for frame, back in zip(frames, read_text(text), strict=True):
            assert_same(frame, back, rtol=1e-15)
            assert back.info == frame.info


def test_cfg_to_extxyz_keeps_the_stress():
    (first, _) = read_cfg(MTP / 'hand_two_frames_triclinic.cfg', ORDER)
    buffer = io.StringIO()
    write_extxyz([first], buffer)
    (back,) = read_extxyz(io.StringIO(buffer.getvalue()))
    np.testing.assert_allclose(back.stress, first.stress, rtol=1e-14)
    np.testing.assert_allclose(back.virial, first.virial, rtol=1e-14)


def test_motep_made_file():
    frames = list(read_cfg(MOTEP_MADE_CFG, ['Cu']))
    assert len(frames) == 40
    assert frames[0].natoms == 8 and frames[0].energy == 0.352632683195
    assert frames[0].info == {'EFS_by': 'ASE_EMT'}


# ------------------------------------------------------------------------------- malformed input

VALID = """BEGIN_CFG
 Size
    1
 Supercell
    2 0 0
    0 2 0
    0 0 2
 AtomData:  id type cartes_x cartes_y cartes_z fx fy fz
    1 0 0 0 0 0 0 0
 Energy
    -1.0
 PlusStress:  xx yy zz yz xz xy
    0 0 0 0 0 0
END_CFG
"""


@pytest.mark.parametrize('old, new, needle', [
    (' Size\n    1\n', '', 'Size'),  # AtomData before Size
    (' Size\n    1\n', ' Size\n    2\n', 'AtomData'),  # fewer rows than Size
    ('    1 0 0 0 0 0 0 0\n', '    1 0 0 0 0 0 0\n', 'AtomData'),  # short row
    ('fx fy fz', 'fx fy fz velocity', 'velocity'),  # unknown column
    ('    1 0 0 0 0', '    2 0 0 0 0', 'id'),
    ('    1 0 0 0 0', '    1 5 0 0 0', 'type'),
    ('    1 0 0 0 0', '    1 x 0 0 0', 'type'),
    ('    1 0 0 0 0 0 0 0', '    1 0 0 0 abc 0 0 0', 'cartes'),
    ('END_CFG\n', '', 'END_CFG'),
    (' PlusStress:', ' Stress:', 'Stress'),
    (' PlusStress:  xx yy zz yz xz xy', ' PlusStress:  xx yy zz yz xz xx', 'PlusStress'),
    ('    0 0 0 0 0 0\n', '    0 0 0 0 0\n', 'PlusStress'),
    ('    -1.0\n', '    minus one\n', 'Energy'),
    ('    2 0 0\n', '    2 0\n', 'Supercell'),
    (' Energy', ' Enrgy', 'Enrgy'),
    ('BEGIN_CFG', 'BEGIN', 'BEGIN_CFG'),
])
def test_malformed_cfg(old, new, needle):
    broken = VALID.replace(old, new, 1)
    assert broken != VALID
    with pytest.raises(FormatError, match=needle) as info:
        read_text(VALID + '\n' + broken)
    assert 'block 1' in str(info.value)  # block 0 is valid, the broken one is named


def test_error_names_the_line_number():
    broken = VALID.replace('    1 0 0 0 0', '    1 7 0 0 0')
    with pytest.raises(FormatError, match=r'block 0 \(line \d+\): type'):
        read_text(broken)


def test_reader_streams_block_by_block():
    block = VALID.splitlines(keepends=True) + ['\n']
    consumed = []

    def lines():
        for i in range(1000):
            for line in block:
                consumed.append(i)
                yield line

    reader = read_cfg(lines(), ['Cu'])
    assert next(reader).energy == -1.0
    assert len(consumed) == len(block) - 1


def test_values_that_overflow_their_column_are_read():
    """motep writes fixed-width columns: a young MTP's stress (1e5 eV) runs into its neighbour, as it did in a
    quickstart campaign (``97870.10277-189990.43589``); the numbers are still read one by one."""
    text = VALID.replace('    0 0 0 0 0 0\n', '   -128421.89814   97870.10277-189990.43589-29629.90362-35826.39263'
                                             '   31719.65894\n')
    text = text.replace('    1 0 0 0 0 0 0 0\n', '    1 0 0 0 0 12345.12345-23456.54321 0\n')
    (frame,) = read_cfg(io.StringIO(text), ['Cu'])
    assert frame.forces[0].tolist() == [12345.12345, -23456.54321, 0.0]
    assert frame.stress is not None
