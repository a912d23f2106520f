"""Calcfunctions that create, merge and split ``TrainingSetData`` with provenance.

Every frame of a training set made here links back, through the calcfunction's inputs, to the
``output_trajectory`` of the PwCalculation that labelled it, so a QueryBuilder walk from the set
reaches every DFT calculation behind it.
"""

from __future__ import annotations

import re

from aiida import orm
from aiida.engine import calcfunction

from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.qe import frames_from_pw_trajectory, read_md_thermo

_SOURCE_KEY = re.compile(r'^(trajectory|retrieved)_(\w+)$')


def _symbols_of(trajectory: orm.TrajectoryData, structure_kinds: dict[str, str] | None = None) -> list[str]:
    """aiida-quantumespresso writes kind names into the trajectory; map them back to elements."""
    symbols = trajectory.symbols
    if structure_kinds:
        return [structure_kinds.get(name, name) for name in symbols]
    return [re.sub(r'[^A-Za-z]', '', name) for name in symbols]


def frames_of_pw_calculation(trajectory: orm.TrajectoryData, retrieved: orm.FolderData | None, *, origin: str,
                             skip: int = 0, every: int = 1):
    """Frames of one pw.x run; for MD runs the temperatures come from stdout in ``retrieved``."""
    creator = trajectory.creator
    kinds = None
    if creator is not None and 'structure' in creator.inputs:
        kinds = {kind.name: kind.symbol for kind in creator.inputs.structure.kinds}
    positions = trajectory.get_array('positions')
    temperatures = None
    if retrieved is not None:
        names = retrieved.base.repository.list_object_names()
        stdout_name = 'aiida.out' if 'aiida.out' in names else next((n for n in names if n.endswith('.out')), None)
        if stdout_name:
            temperatures = read_md_thermo(retrieved.base.repository.get_object_content(stdout_name))['temperature']
    stresses = trajectory.get_array('stress') if 'stress' in trajectory.get_arraynames() else None
    indices = list(range(len(positions)))[skip::every]
    return frames_from_pw_trajectory(
        symbols=_symbols_of(trajectory, kinds),
        positions=positions,
        cells=trajectory.get_array('cells'),
        energies=trajectory.get_array('energy'),
        forces=trajectory.get_array('forces'),
        stresses_gpa=stresses,
        pbc=trajectory.base.attributes.get('pbc', (True, True, True)),
        info={'origin': origin, 'source_uuid': creator.uuid if creator is not None else ''},
        temperatures=temperatures,
        indices=indices,
    )


@calcfunction
def training_set_from_pw(origin: orm.Str, skip: orm.Int | orm.Dict | None = None, every: orm.Int | None = None,
                         **sources) -> TrainingSetData:
    """Collect labelled frames from PwCalculation outputs into one ``TrainingSetData``.

    ``sources`` are ``trajectory_<key>`` (an ``output_trajectory``) and optionally ``retrieved_<key>`` (its
    calculation's retrieved folder, read for MD temperatures). ``skip`` frames are dropped from the start of
    each run (an Int for all runs, or a Dict ``{key: skip}`` per run) and then every ``every``-th frame is kept.
    """
    skips = skip.get_dict() if isinstance(skip, orm.Dict) else {}
    default_skip = int(skip.value) if isinstance(skip, orm.Int) else 0
    every_value = int(every.value) if every is not None else 1
    grouped: dict[str, dict] = {}
    for name, node in sources.items():
        match = _SOURCE_KEY.match(name)
        if not match:
            raise ValueError(f'sources: unexpected input {name!r}; use trajectory_<key> / retrieved_<key>')
        grouped.setdefault(match.group(2), {})[match.group(1)] = node
    frames = []
    for key in sorted(grouped):
        entry = grouped[key]
        if 'trajectory' not in entry:
            raise ValueError(f'sources: retrieved_{key} given without trajectory_{key}')
        frames.extend(
            frames_of_pw_calculation(entry['trajectory'], entry.get('retrieved'), origin=origin.value,
                                     skip=int(skips.get(key, default_skip)), every=every_value)
        )
    return TrainingSetData.from_frames(frames)


@calcfunction
def merge_training_sets(deduplicate: orm.Bool | None = None, **training_sets) -> TrainingSetData:
    """Merge sets in the order of their input names; duplicates (by structure hash) keep the first label."""
    if not training_sets:
        raise ValueError('training_sets: nothing to merge')
    ordered = [training_sets[key] for key in sorted(training_sets)]
    return TrainingSetData.merge(ordered, deduplicate=True if deduplicate is None else bool(deduplicate.value))


@calcfunction
def split_training_set(training_set: TrainingSetData, test_fraction: orm.Float, seed: orm.Int) -> dict:
    """Deterministic train/test split; the same inputs always give the same two sets."""
    train_index, test_index = training_set.split_indices(float(test_fraction.value), int(seed.value))
    outputs = {'train': training_set.subset(train_index)}
    if len(test_index):
        outputs['test'] = training_set.subset(test_index)
    return outputs


@calcfunction
def candidates_from_trajectory(trajectory: orm.SinglefileData, species: orm.List, stride: orm.Int) -> TrainingSetData:
    """Every ``stride``-th frame of a GPUMD ``dump.xyz`` as unlabelled candidates for DFT.

    The dump is streamed (only the kept frames are held), and the model's own energies and forces
    that GPUMD may have dumped are dropped: a candidate carries no label until DFT gives it one.
    """
    from aiida_mlcampaign.formats.frames import Frame
    from aiida_mlcampaign.formats.gpumd import frame_from_dump, iter_dump_xyz

    if stride.value < 1:
        raise ValueError(f'stride: must be >= 1, got {stride.value}')
    kept = []
    with trajectory.as_path() as path:
        for index, dumped in enumerate(iter_dump_xyz(path)):
            if index % stride.value:
                continue
            frame = frame_from_dump(dumped)
            info = {'origin': f'gpumd-dump-{index}'}
            if 'time_fs' in frame.info:
                info['time_fs'] = frame.info['time_fs']
            kept.append(Frame(symbols=frame.symbols, cell=frame.cell, positions=frame.positions, pbc=frame.pbc,
                              info=info))
    if not kept:
        raise ValueError(f'trajectory: no frame in {trajectory.filename}')
    return TrainingSetData.from_frames(kept, species=species.get_list())
