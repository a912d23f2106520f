"""The reader modules split along file boundaries: the old import paths hand out the very same objects, and GPUMD's
frame reader reads line 2 with the extended-XYZ parser of the training-set reader (one grammar, not two)."""

import io

import pytest

from aiida_mlcampaign.formats import (
    extxyz,
    gpumd,
    gpumd_model,
    gpumd_stdout,
    gpumd_xyz,
    nep,
    nep_common,
    nep_in,
    nep_model,
    nep_outputs,
    nep_restart,
)
from aiida_mlcampaign.formats.frames import FormatError

NEP_MODULES = (nep_common, nep_in, nep_model, nep_outputs, nep_restart)


@pytest.mark.parametrize('name', nep.__all__)
def test_nep_facade_re_exports_the_object_of_exactly_one_module(name):
    owners = [module for module in NEP_MODULES if name in module.__all__]
    assert len(owners) == 1, f'{name}: public in {[m.__name__ for m in owners]}'
    assert getattr(nep, name) is getattr(owners[0], name)


def test_nep_names_live_where_the_facade_says():
    assert nep.read_nep_header is nep_model.read_nep_header
    assert nep.nep_in is nep_in.nep_in and nep.read_nep_in is nep_in.read_nep_in
    assert nep.read_loss is nep_outputs.read_loss and nep.read_parity_set is nep_outputs.read_parity_set
    assert nep.read_nep_restart is nep_restart.read_nep_restart
    assert nep.parse_gpumd_version is nep_common.parse_gpumd_version and nep.ELEMENTS is nep_common.ELEMENTS


@pytest.mark.parametrize('name', gpumd.__all__)
def test_gpumd_facade_keeps_every_name(name):
    value = getattr(gpumd, name)
    for module in (gpumd_xyz, gpumd_stdout):
        if name in module.__all__:
            assert value is getattr(module, name)


def test_gpumd_moved_readers_are_the_new_modules_objects():
    assert gpumd.iter_dump_xyz is gpumd_xyz.iter_dump_xyz and gpumd.read_restart_xyz is gpumd_xyz.read_restart_xyz
    assert gpumd.frame_from_dump is gpumd_xyz.frame_from_dump
    assert gpumd.read_gpumd_stdout is gpumd_stdout.read_gpumd_stdout
    # nep's stdout reader builds on gpumd's without importing the table readers
    assert nep_outputs.read_gpumd_stdout is gpumd_stdout.read_gpumd_stdout


# Single quotes, an escaped double quote inside a double-quoted value, a bare flag and mixed key case: what the
# training-set reader accepts must mean the same in a dump.xyz.
COMMENT = ("Lattice='4 0 0 0 5 0 0 0 6' pbc=\"T T F\" Time=12.5 note=\"a \\\"quoted\\\" word\" "
           "Config_Type='two words' relaxed Properties=species:S:1:pos:R:3")
DUMP = f'2\n{COMMENT}\nSi 0 0 0\nC 1 1 1\n'


def test_dump_comment_line_is_read_by_the_extxyz_parser():
    expected = {key: value for key, (_, value, _) in extxyz.parse_comment_line(COMMENT, 'here').items()}
    assert gpumd_xyz._parse_comment(COMMENT, 'here') == expected
    assert expected['note'] == 'a "quoted" word' and expected['relaxed'] == 'T'
    (frame,) = gpumd.iter_dump_xyz(io.StringIO(DUMP))
    assert frame['cell'].diagonal().tolist() == [4.0, 5.0, 6.0] and frame['pbc'] == (True, True, False)
    assert frame['time'] == 12.5
    assert frame['info'] == {'note': 'a "quoted" word', 'config_type': 'two words', 'relaxed': 'T'}
    # model.xyz headers go through the same function
    header = gpumd_model.read_model_header(io.StringIO(DUMP))
    assert header['pbc'] == (True, True, False) and header['cell'][2, 2] == 6.0


def test_dump_comment_error_names_file_line_and_frame():
    bad = DUMP + '1\nLattice="1 0 0 0 1 0 0 0 1" note="unterminated Properties=species:S:1:pos:R:3\nSi 0 0 0\n'
    frames = gpumd.iter_dump_xyz(io.StringIO(bad))
    next(frames)
    with pytest.raises(FormatError, match=r'^<stream>: line 6: frame 1: comment line: '):
        next(frames)
