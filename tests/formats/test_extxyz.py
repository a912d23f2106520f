"""Tests of the GPUMD-dialect extended XYZ reader/writer on hand-made and recorded files."""

import io
import pathlib

import numpy as np
import pytest

from aiida_mlcampaign.formats.extxyz import read_extxyz, write_extxyz
from aiida_mlcampaign.formats.frames import FormatError, Frame, matrix_to_voigt

GPUMD = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd'


def sign_case_frame() -> Frame:
    """Cubic a = 2 Å (V = 8 Å^3); ASE stress (0.1, 0.2, 0.3, yz 0.01, xz 0.02, xy 0.03) eV/Å^3."""
    return Frame(
        symbols=['Cu', 'Au'],
        cell=np.eye(3) * 2.0,
        positions=[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]],
        energy=-7.5,
        forces=[[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3]],
        stress=[0.1, 0.2, 0.3, 0.01, 0.02, 0.03],
    )


def random_frames(count=3, seed=7) -> list[Frame]:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        n = 4 + i
        cell = np.diag([4.0, 4.5, 5.0]) + rng.normal(0, 0.3, (3, 3))
        frames.append(Frame(
            symbols=list(rng.choice(['Pb', 'Te', 'Se'], n)),
            cell=cell,
            positions=rng.uniform(0, 4, (n, 3)),
            energy=rng.normal(-3.7 * n, 1.0),
            forces=rng.normal(0, 1.0, (n, 3)),
            stress=rng.normal(0, 0.01, 6) if i != 1 else None,
            weight=[1.0, 2.5, 100.0][i % 3],
            info={'origin': f'rattle {i}', 'source_uuid': f'0000-{i}', 'temperature': 300.0 + i},
        ))
    return frames


def write_text(frames, **kwargs) -> str:
    buffer = io.StringIO()
    write_extxyz(frames, buffer, **kwargs)
    return buffer.getvalue()


def read_text(text: str) -> list[Frame]:
    return list(read_extxyz(io.StringIO(text)))


def assert_same_labels(a: Frame, b: Frame, rtol=1e-10):
    assert a.symbols == b.symbols
    np.testing.assert_allclose(a.cell, b.cell, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(a.positions, b.positions, rtol=rtol, atol=1e-12)
    assert a.energy == pytest.approx(b.energy, rel=rtol)
    np.testing.assert_allclose(a.forces, b.forces, rtol=rtol, atol=1e-12)
    if a.stress is None:
        assert b.stress is None
    else:
        np.testing.assert_allclose(a.stress, b.stress, rtol=rtol, atol=1e-14)


# ------------------------------------------------------------------------------- sign convention


def test_sign_case_virial_literal_in_text():
    text = write_text([sign_case_frame()])
    comment = text.splitlines()[1]
    # -V * stress, row-major 3x3: xx xy xz / yx yy yz / zx zy zz.
    assert 'virial="-0.8 -0.24 -0.16 -0.24 -1.6 -0.08 -0.16 -0.08 -2.4"' in comment
    assert 'Lattice="2.0 0.0 0.0 0.0 2.0 0.0 0.0 0.0 2.0"' in comment
    assert 'energy=-7.5' in comment and 'weight=1.0' in comment and 'pbc="T T T"' in comment
    assert comment.endswith('Properties=species:S:1:pos:R:3:force:R:3')
    assert 'stress=' not in comment


def test_sign_case_round_trip():
    frame = sign_case_frame()
    (back,) = read_text(write_text([frame]))
    assert_same_labels(frame, back)
    assert np.array_equal(matrix_to_voigt(back.stress), [0.1, 0.2, 0.3, 0.01, 0.02, 0.03])


def test_round_trip_is_lossless_and_keeps_metadata(tmp_path):
    frames = random_frames()
    path = tmp_path / 'train.xyz'
    assert write_extxyz(frames, path) == 3
    back = list(read_extxyz(path))
    assert len(back) == 3
    for frame, read in zip(frames, back, strict=True):
        assert_same_labels(frame, read, rtol=1e-15)
        assert read.weight == frame.weight
        assert read.info == frame.info  # config_type <-> origin, other scalars keep their type


def test_info_strings_quoted_and_typed():
    frame = sign_case_frame()
    frame.info = {'origin': 'aimd 600K', 'label': '300', 'flag': True, 'count': 3, 'note': 'a\nb',
                  'source_uuid': '', 'vector': [1.0, 2.0]}
    comment = write_text([frame]).splitlines()[1]
    assert 'config_type="aimd 600K"' in comment
    assert 'label="300"' in comment and 'flag=T' in comment and 'count=3' in comment
    assert 'vector' not in comment  # non-scalar info is not written
    (back,) = read_text(write_text([frame]))
    assert back.info == {'origin': 'aimd 600K', 'label': '300', 'flag': True, 'count': 3, 'note': 'a\nb',
                         'source_uuid': ''}


# ----------------------------------------------------------------------------------- writer refusals


@pytest.mark.parametrize('change, field', [
    ({'energy': None}, 'energy'),
    ({'forces': None}, 'forces'),
    ({'weight': 100.5}, 'weight'),
    ({'cell': np.zeros((3, 3))}, 'Lattice'),
])
def test_gpumd_writer_refuses_unusable_frames(change, field):
    frame = sign_case_frame()
    for key, value in change.items():
        setattr(frame, key, value)
    with pytest.raises(FormatError, match=f'frame 0: {field}'):
        write_text([frame])


def test_string_with_equals_sign_is_refused():
    frame = sign_case_frame()
    frame.info = {'origin': 'energy=5'}
    with pytest.raises(FormatError, match='config_type'):
        write_text([frame])


def test_failed_write_removes_the_file(tmp_path):
    bad = sign_case_frame()
    bad.forces = None
    path = tmp_path / 'train.xyz'
    with pytest.raises(FormatError):
        write_extxyz([sign_case_frame(), bad], path)
    assert not path.exists()
    path.write_text('kept\n')  # a failed export once deleted the file it was asked to replace
    with pytest.raises(FormatError):
        write_extxyz([sign_case_frame(), bad], path)
    assert path.read_text() == 'kept\n' and sorted(p.name for p in tmp_path.iterdir()) == ['train.xyz']
    path.chmod(0o640)
    write_extxyz([sign_case_frame()], path)
    assert path.read_text().startswith('2\n') and path.stat().st_mode & 0o777 == 0o640


def test_ase_convention_allows_missing_labels_and_writes_stress():
    frame = Frame(symbols=['Si'], cell=np.eye(3) * 3, positions=[[0, 0, 0]], stress=np.eye(3) * 0.1)
    comment = write_text([frame], convention='ase').splitlines()[1]
    assert 'energy' not in comment and 'virial' not in comment
    assert 'stress="0.1 0.0 0.0 0.0 0.1 0.0 0.0 0.0 0.1"' in comment
    assert comment.endswith('Properties=species:S:1:pos:R:3')
    (back,) = read_text(write_text([frame], convention='ase'))
    assert back.energy is None and back.forces is None
    assert np.array_equal(back.stress, frame.stress)


def test_unknown_convention():
    with pytest.raises(ValueError, match='convention'):
        write_text([sign_case_frame()], convention='nequip')


# ------------------------------------------------------------------------------ cross-check with ASE


def test_ase_reads_what_we_write(tmp_path):
    """What ASE (3.23+) makes of a GPUMD-convention file:

    * ``virial=`` stays a 3x3 array in ``atoms.info``; ASE does NOT turn it into a calculator
      stress (``atoms.calc.results`` has no ``stress``). ``-virial / V`` is our stress, and
      ``Frame.from_ase`` performs that conversion.
    * ``force:R:3`` (GPUMD's canonical name) is not a calculator property for ASE: it lands in
      ``atoms.arrays['force']`` and ``atoms.get_forces()`` raises. ``Frame.from_ase`` reads the
      array; the ``ase`` convention writes ``forces:R:3`` instead (next test).
    """
    import ase.io
    from ase.calculators.calculator import PropertyNotImplementedError

    frames = random_frames()
    path = tmp_path / 'train.xyz'
    write_extxyz(frames, path)
    images = ase.io.read(path, index=':', format='extxyz')
    assert len(images) == len(frames)
    for frame, atoms in zip(frames, images, strict=True):
        assert atoms.get_chemical_symbols() == frame.symbols
        np.testing.assert_allclose(atoms.cell.array, frame.cell, rtol=1e-15)
        np.testing.assert_allclose(atoms.get_positions(), frame.positions, rtol=1e-15)
        assert atoms.get_potential_energy() == frame.energy
        with pytest.raises(PropertyNotImplementedError):
            atoms.get_forces()
        np.testing.assert_allclose(atoms.arrays['force'], frame.forces, rtol=1e-15)
        assert set(atoms.calc.results) == {'energy'}
        assert atoms.info['weight'] == frame.weight
        assert atoms.info['config_type'] == frame.info['origin']
        from_ase = Frame.from_ase(atoms)
        np.testing.assert_allclose(from_ase.forces, frame.forces, rtol=1e-15)
        if frame.stress is None:
            assert 'virial' not in atoms.info
            continue
        np.testing.assert_allclose(atoms.info['virial'], frame.virial, rtol=1e-15)
        np.testing.assert_allclose(-atoms.info['virial'] / atoms.get_volume(), frame.stress, rtol=1e-12)
        np.testing.assert_allclose(from_ase.stress, frame.stress, rtol=1e-12)


def test_ase_reads_the_ase_convention_into_its_calculator(tmp_path):
    import ase.io

    frames = random_frames()
    path = tmp_path / 'ase.xyz'
    write_extxyz(frames, path, convention='ase')
    for frame, atoms in zip(frames, ase.io.read(path, index=':', format='extxyz'), strict=True):
        assert atoms.get_potential_energy() == frame.energy
        np.testing.assert_allclose(atoms.get_forces(), frame.forces, rtol=1e-15)
        np.testing.assert_allclose(atoms.get_positions(), frame.positions, rtol=1e-15)
        np.testing.assert_allclose(atoms.cell.array, frame.cell, rtol=1e-15)
        if frame.stress is not None:
            np.testing.assert_allclose(atoms.get_stress(), matrix_to_voigt(frame.stress), rtol=1e-15)
    # and our reader gets the same frames back
    for frame, read in zip(frames, read_extxyz(path), strict=True):
        assert_same_labels(frame, read, rtol=1e-15)


def test_we_read_what_ase_writes(tmp_path):
    import ase.io

    frames = random_frames()
    path = tmp_path / 'from_ase.xyz'
    ase.io.write(path, [frame.to_ase() for frame in frames], format='extxyz')
    for frame, read in zip(frames, read_extxyz(path), strict=True):
        # ASE prints positions and forces with 8 decimals (%16.8f); energy and stress in full.
        assert read.symbols == frame.symbols
        np.testing.assert_allclose(read.positions, frame.positions, atol=1e-8)
        np.testing.assert_allclose(read.forces, frame.forces, atol=1e-8)
        assert read.energy == frame.energy
        if frame.stress is None:
            assert read.stress is None
        else:
            np.testing.assert_allclose(read.stress, frame.stress, rtol=1e-15)


# --------------------------------------------------------------------------------- recorded files


def test_pbte_train_master():
    frames = list(read_extxyz(GPUMD / 'pbte_train_master' / 'train.xyz'))
    assert len(frames) == 2
    first, second = frames
    assert first.natoms == 250 and second.natoms == 250
    assert first.energy == -937.191 and second.energy == -944.7615
    assert first.symbols[0] == 'Te'
    np.testing.assert_array_equal(first.positions[0], [3.391217, 3.024926, 3.37478])
    np.testing.assert_array_equal(first.forces[0], [0.07834588, 0.3368932, -0.1323393])
    np.testing.assert_array_equal(first.cell, [[0.0, 16.42598, 16.42598], [16.42598, 0.0, 16.42598],
                                               [16.42598, 16.42598, 0.0]])
    assert first.stress is None and first.weight == 1.0 and first.pbc == (True, True, True)
    assert first.info == {'origin': 'nep2xyz'}


def test_vasp_outcar2xyz_virial_tabs_forces():
    frames = list(read_extxyz(GPUMD / 'train_xyz_variants' / 'vasp_outcar2xyz_virial_forces.xyz'))
    assert [f.natoms for f in frames] == [2, 8]
    assert [f.energy for f in frames] == [-6.489383, -74.519193]
    np.testing.assert_array_equal(frames[0].positions[1], [1.24217, 2.01420, 1.36959])
    np.testing.assert_array_equal(frames[0].forces[0], [0.0, 0.0, 0.0])
    assert frames[0].info['origin'] == 'outcar2xyz/OUTCARs/Cu_single-point'
    # Triclinic: stress = -virial / V with V = |det(Lattice)| from the file.
    lattice = np.array([[3.155734316, 0.599675484, -0.701986499], [-0.758236990, 2.779860728, -0.162320058],
                        [0.086837300, 0.648871474, 3.603476546]])
    virial = np.array([[-3.59066, 0.02951, 0.58043], [0.02951, -4.10300, -0.13244], [0.58043, -0.13244, -3.58745]])
    np.testing.assert_allclose(frames[0].stress, -virial / abs(np.linalg.det(lattice)), rtol=1e-12)
    # Cubic diamond cell: a = 3.558090375, virial diag -0.07073 -> stress +0.07073 / a^3 (tensile).
    assert frames[1].stress[0, 0] == pytest.approx(0.07073 / 3.558090375**3, rel=1e-12)
    assert frames[1].symbols == ['C'] * 8


def test_vasp_capitalized_keys():
    (frame,) = read_extxyz(GPUMD / 'train_xyz_variants' / 'vasp_multiframe_capitalized_keys.xyz')
    assert frame.natoms == 391
    assert frame.symbols.count('W') == 223 and frame.symbols.count('H') == 168
    assert frame.energy == -3283.9693132400
    assert frame.weight == 1.0
    assert frame.info['origin'] == 'WH-AIMD'
    np.testing.assert_array_equal(frame.positions[0], [1.61852, 1.55752, 1.58416])
    np.testing.assert_array_equal(frame.forces[0], [-0.336839, -0.137489, -0.154907])
    volume = 15.810234548**3
    assert frame.stress[0, 0] == pytest.approx(-429.37855 / volume, rel=1e-12)
    assert frame.stress[0, 1] == pytest.approx(6.82503 / volume, rel=1e-12)
    assert frame.stress[2, 2] == pytest.approx(-433.67245 / volume, rel=1e-12)


def test_pytest_keys_after_lattice():
    (frame,) = read_extxyz(GPUMD / 'train_xyz_variants' / 'pytest_keys_after_lattice.xyz')
    assert frame.natoms == 40
    assert (frame.symbols.count('Ba'), frame.symbols.count('Ti'), frame.symbols.count('O')) == (8, 8, 24)
    assert frame.energy == -591.07001019
    assert frame.cell[0, 0] == 8.018123690989786 and frame.cell[1, 1] == 8.01812369098979
    np.testing.assert_array_equal(frame.forces[0], [-0.51365287, 0.88589297, 0.03185220])
    assert frame.stress is None


def test_recorded_files_survive_our_round_trip():
    training_files = [p for p in GPUMD.rglob('*.xyz') if p.relative_to(GPUMD).parts[0] != 'md']  # md/: no labels
    assert len(training_files) == 4
    for path in sorted(training_files):
        frames = list(read_extxyz(path))
        for frame, back in zip(frames, read_text(write_text(frames)), strict=True):
            assert_same_labels(frame, back, rtol=1e-15)


# ------------------------------------------------------------------------------- dialect tolerance


def test_reader_accepts_gpumd_dialect():
    text = (
        '2\n'
        'ENERGY = -3.5\tlattice= " 4 0 0  0 4 0  0 0 4 " Stress="0.1 0 0 0 0.2 0 0 0 0.3" '
        'Virial="-6.4 0 0 0 -12.8 0 0 0 -19.2" WEIGHT=2 Time=10 '
        'properties=Species:S:1:mass:R:1:pos:R:3:group:I:2:Forces:R:3\n'
        'Pb\t207.2 0 0 0 1 2\t0.5 0 0\n'
        'Te 127.6   2 2 2 0 0 -0.5 0 0\n'
    )
    (frame,) = read_text(text)
    assert frame.symbols == ['Pb', 'Te']
    assert frame.energy == -3.5 and frame.weight == 2.0
    assert frame.pbc == (True, True, True)  # missing pbc: periodic, as GPUMD assumes
    np.testing.assert_array_equal(frame.positions, [[0, 0, 0], [2, 2, 2]])
    np.testing.assert_array_equal(frame.forces, [[0.5, 0, 0], [-0.5, 0, 0]])
    # virial wins over stress: stress = -virial / 64 = diag(0.1, 0.2, 0.3), not the stress= values
    np.testing.assert_allclose(np.diag(frame.stress), [0.1, 0.2, 0.3])
    assert frame.info == {'Time': 10}


def test_virial_wins_over_stress():
    text = ('1\nLattice="2 0 0 0 2 0 0 0 2" stress="1 0 0 0 1 0 0 0 1" virial="-8 0 0 0 -8 0 0 0 -8" '
            'Properties=species:S:1:pos:R:3\nSi 0 0 0\n')
    (frame,) = read_text(text)
    np.testing.assert_array_equal(frame.stress, np.eye(3))
    text = text.replace('virial="-8 0 0 0 -8 0 0 0 -8"', 'virial="-16 0 0 0 -16 0 0 0 -16"')
    np.testing.assert_array_equal(read_text(text)[0].stress, 2 * np.eye(3))


def test_pbc_and_blank_lines_between_frames():
    one = '1\nLattice="2 0 0 0 2 0 0 0 9" pbc="T T F" Properties=species:S:1:pos:R:3\nSi 0 0 0\n'
    frames = read_text(one + '\n\n' + one.replace('T T F', 'F F F'))
    assert [f.pbc for f in frames] == [(True, True, False), (False, False, False)]


def test_reader_streams_frame_by_frame():
    frame_lines = ['1\n', 'Lattice="2 0 0 0 2 0 0 0 2" energy=1 Properties=species:S:1:pos:R:3\n', 'Si 0 0 0\n']
    consumed = []

    def lines():
        for i in range(1000):
            for line in frame_lines:
                consumed.append(i)
                yield line

    reader = read_extxyz(lines())
    first = next(reader)
    assert first.energy == 1.0
    assert len(consumed) <= 4  # the first frame plus at most one look-ahead line


# ------------------------------------------------------------------------------- malformed input

GOOD_HEADER = 'Lattice="2 0 0 0 2 0 0 0 2" energy=1 Properties=species:S:1:pos:R:3:force:R:3'


@pytest.mark.parametrize('text, needle', [
    ('two\n' + GOOD_HEADER + '\nSi 0 0 0 0 0 0\n', 'atom count'),
    ('1 2\n' + GOOD_HEADER + '\nSi 0 0 0 0 0 0\n', 'atom count'),
    ('0\n' + GOOD_HEADER + '\n', 'atom count'),
    ('1\n' + GOOD_HEADER + '\nSi 0 0 0 0 0\n', 'columns'),
    ('1\nenergy=1 Properties=species:S:1:pos:R:3\nSi 0 0 0\n', 'Lattice'),
    ('1\nLattice="2 0 0 0 2 0 0 0" Properties=species:S:1:pos:R:3\nSi 0 0 0\n', 'Lattice'),
    ('1\nLattice="2 0 0 0 2 0 0 0 2"\nSi 0 0 0\n', 'Properties'),
    ('1\nLattice="2 0 0 0 2 0 0 0 2" Properties=pos:R:3\n0 0 0\n', 'species'),
    ('1\nLattice="2 0 0 0 2 0 0 0 2" Properties=species:S:1:force:R:3\nSi 0 0 0\n', 'pos'),
    ('1\nLattice="2 0 0 0 2 0 0 0 2" Properties=species:S:1:pos:R:2\nSi 0 0\n', 'pos'),
    ('1\n' + GOOD_HEADER + '\nSi 0 0 x 0 0 0\n', 'pos'),
    ('1\n' + GOOD_HEADER + '\nSi 0 0 0 0 zero 0\n', 'force'),
    ('1\n' + GOOD_HEADER.replace('energy=1', 'energy=abc') + '\nSi 0 0 0 0 0 0\n', 'energy'),
    ('1\n' + GOOD_HEADER + ' virial="1 2 3"\nSi 0 0 0 0 0 0\n', 'virial'),
    ('1\n' + GOOD_HEADER + ' pbc="T X T"\nSi 0 0 0 0 0 0\n', 'pbc'),
    ('1\n' + GOOD_HEADER + ' weight=-1\nSi 0 0 0 0 0 0\n', 'weight'),
    ('1\n' + GOOD_HEADER + ' config_type="unterminated\nSi 0 0 0 0 0 0\n', 'comment line'),
    ('1\n' + GOOD_HEADER + '\nSI 0 0 0 0 0 0\n', 'symbols'),
    ('2\n' + GOOD_HEADER + '\nSi 0 0 0 0 0 0\n', 'truncated'),
    ('1\n', 'truncated'),
])
def test_malformed_extxyz(text, needle):
    valid = '1\n' + GOOD_HEADER + '\nSi 1 1 1 0 0 0\n'
    with pytest.raises(FormatError, match=needle) as info:
        read_text(valid + text)
    assert 'frame 1' in str(info.value)  # the frame index is named; the valid frame 0 read fine


@pytest.mark.parametrize('atom_line, header, field', [
    ('Si 0 0 0 0 nan 0', GOOD_HEADER, 'force'),
    ('Si 0 0 0 0 0 -inf', GOOD_HEADER, 'force'),
    ('Si 0 NaN 0 0 0 0', GOOD_HEADER, 'pos'),
    ('Si 0 0 0 0 0 0', GOOD_HEADER.replace(' 2"', ' nan"'), 'Lattice'),
    ('Si 0 0 0 0 0 0', GOOD_HEADER + ' stress="0 0 0 0 0 inf"', 'stress'),
])
def test_non_finite_numbers_are_refused_with_frame_and_line(atom_line, header, field):
    """One NaN force once dropped every force label of its frame (trained on the energy alone): now refused."""
    text = '1\n' + GOOD_HEADER + '\nSi 1 1 1 0 0 0\n' + '1\n' + header + '\n' + atom_line + '\n'
    line = 6 if field in ('force', 'pos') else 5
    with pytest.raises(FormatError, match=rf'frame 1 \(line {line}\): {field}: non-finite value'):
        read_text(text)


def test_error_names_the_line_number():
    text = '1\n' + GOOD_HEADER + '\nSi 0 0 0 0 0 0\n1\n' + GOOD_HEADER + '\nSi 0 0 0 0 0\n'
    with pytest.raises(FormatError, match=r'frame 1 \(line 6\)'):
        read_text(text)
