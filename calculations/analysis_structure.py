"""Structure and transport analyses as calcfunctions: RDF, RDF comparison, MSD, diffusion, Arrhenius.

Entry points (group ``aiida.calculations``):

* ``mlcampaign.analysis.rdf`` -> :func:`compute_rdf`: partial g(r) and coordination numbers of a
  trajectory (``TrainingSetData``, a GPUMD ``dump.xyz`` or any ASE-readable file as
  ``SinglefileData``), streamed frame by frame;
* ``mlcampaign.analysis.rdf_compare`` -> :func:`compare_rdfs`: overlap score of two RDFs (outputs of
  :func:`compute_rdf`, GPUMD ``rdf.out`` files or the gpumd parser's ``rdf`` ArrayData);
* ``mlcampaign.analysis.msd`` -> :func:`compute_msd`: per-species MSD over all time origins (FFT),
  plus block MSDs for the error bar (as many blocks as a short run allows unless told);
* ``mlcampaign.analysis.diffusion`` -> :func:`fit_diffusion`: D per species (± block error) from a
  :func:`compute_msd` output, a GPUMD ``msd.out`` or the gpumd parser's ``msd`` ArrayData, optionally
  the Nernst–Einstein conductivity, each marked diffusive or not with warnings saying why;
* ``mlcampaign.analysis.arrhenius`` -> :func:`fit_arrhenius`: Ea ± error from several
  :func:`fit_diffusion` results (or plain lists of temperatures and values), with warnings naming
  the temperatures whose D was not diffusive.

Each returns its numbers (``ArrayData`` or ``Dict``, units in the names and in a ``units``
attribute) and a PNG ``figure``. Bad parameters are refused by port validators before anything
runs, with the field named. The numbers come from :mod:`aiida_mlcampaign.analysis.rdf`,
:mod:`~aiida_mlcampaign.analysis.msd` and :mod:`~aiida_mlcampaign.analysis.transport`.
"""

from __future__ import annotations

import math

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_mlcampaign.analysis import msd as _msd
from aiida_mlcampaign.analysis import rdf as _rdf
from aiida_mlcampaign.analysis import transport as _transport
from aiida_mlcampaign.calculations.analysis_common import array_node, figure_node
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.gpumd import iter_dump_xyz, read_msd, read_rdf

__all__ = ['compare_rdfs', 'compute_msd', 'compute_rdf', 'fit_arrhenius', 'fit_diffusion']

_XYZ_SUFFIXES = ('.xyz', '.exyz', '.extxyz')

RDF_UNITS = {
    'r_A': 'Å (bin centres)', 'edges_A': 'Å', 'g_partial': 'dimensionless (ideal gas = 1)',
    'g_total': 'dimensionless', 'cn_ab': 'atoms of b within r of an a atom (cumulative, at upper bin edges)',
    'cn_ba': 'atoms of a within r of a b atom',
}
MSD_UNITS = {
    'time_ps': 'ps (lag time)', 'msd_A2': 'Å² per direction x y z, axes (lag, species, direction)',
    'block_time_ps': 'ps', 'msd_blocks_A2': 'Å², axes (block, lag, species, direction)',
}


# ------------------------------------------------------------------------------------------ frames


def _iter_frames(trajectory, stride: int = 1, skip: int = 0, file_format: str | None = None):
    """Yield ``(symbols, cell, positions, pbc, unwrapped, frame)`` of the selected frames, one at a time.

    ``frame`` is the source object (``Frame`` or dump dict or ``ase.Atoms``) for extra metadata.
    """
    def selected(index):
        return index >= skip and (index - skip) % stride == 0

    if isinstance(trajectory, TrainingSetData):
        for index, frame in enumerate(trajectory.iter_frames()):
            if selected(index):
                yield frame.symbols, frame.cell, frame.positions, frame.pbc, None, frame
        return
    if not isinstance(trajectory, orm.SinglefileData):
        raise TypeError(f'trajectory: expected TrainingSetData or SinglefileData, got {type(trajectory).__name__}')
    if file_format is None and trajectory.filename.lower().endswith(_XYZ_SUFFIXES):
        with trajectory.open(mode='r') as handle:
            for index, frame in enumerate(iter_dump_xyz(handle)):
                if selected(index):
                    unwrapped = frame['arrays'].get('unwrapped_position')
                    yield frame['species'], frame['cell'], frame['positions'], frame['pbc'], unwrapped, frame
        return
    import ase.io

    with trajectory.as_path() as path:
        for index, atoms in enumerate(ase.io.iread(path, index=':', format=file_format)):
            if selected(index):
                yield (atoms.get_chemical_symbols(), np.array(atoms.cell), atoms.get_positions(),
                       tuple(atoms.pbc), None, atoms)


def _first_cell(trajectory, skip: int, stride: int, file_format) -> list[np.ndarray]:
    """Cells to check ``r_max`` against before running: every selected cell of a set, the first of a file."""
    if isinstance(trajectory, TrainingSetData):
        return list(trajectory.get_array('cells')[skip::stride])
    try:
        first = next(_iter_frames(trajectory, stride, skip, file_format), None)
    except Exception:  # an unreadable file is reported by the function itself, with the line
        return []
    return [] if first is None else [np.asarray(first[1])]


# ------------------------------------------------------------------------------------------ validation


def _value(node):
    return None if node is None else getattr(node, 'value', node)


def _check_int(name, node, minimum):
    value = _value(node)
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value or value < minimum:
        return f'{name}: expected an integer >= {minimum}, got {value!r}'
    return None


def _check_positive(name, node):
    value = _value(node)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return f'{name}: expected a positive number, got {value!r}'
    return None


def _check_trajectory(node, _):
    if node is not None and not isinstance(node, (TrainingSetData, orm.SinglefileData)):
        return f'trajectory: expected TrainingSetData or SinglefileData, got {type(node).__name__}'
    return None


def _set_validators(function, ports: dict, namespace=None) -> None:
    spec = function.process_class.spec()
    for name, validator in ports.items():
        spec.inputs[name].validator = validator
    if namespace is not None:
        spec.inputs.validator = namespace


def _validate_rdf_inputs(inputs, _):
    trajectory = inputs.get('trajectory')
    r_max = _value(inputs.get('r_max'))
    if trajectory is None or r_max is None or _check_positive('r_max', r_max):
        return None
    skip = int(_value(inputs.get('skip')) or 0)
    stride = int(_value(inputs.get('stride')) or 1)
    file_format = _value(inputs.get('file_format'))
    if isinstance(trajectory, TrainingSetData) and skip >= trajectory.num_frames:
        return f'skip: {skip} skips every one of the {trajectory.num_frames} frames'
    for cell in _first_cell(trajectory, skip, stride, file_format):
        try:
            _rdf.check_r_max(cell, float(r_max))
        except ValueError as exception:
            return str(exception)
    return None


# ------------------------------------------------------------------------------------------ RDF


@calcfunction
def compute_rdf(trajectory: TrainingSetData | orm.SinglefileData, r_max: orm.Float, bins: orm.Int = 200,
                stride: orm.Int = 1, skip: orm.Int = 0, file_format: orm.Str | None = None) -> dict:
    """Partial radial distribution functions and coordination numbers of a trajectory.

    Frames are read and binned one at a time (cell list, triclinic cells), so trajectories larger
    than memory work. Normalised so an ideal gas gives 1 (like pairs use N_a (N_a - 1)).

    :param trajectory: frames to analyse: a TrainingSetData (e.g. AIMD frames), a GPUMD dump.xyz (or
        any extended XYZ) as SinglefileData, or another ASE-readable file as SinglefileData.
    :param r_max: largest distance in Å; at most the radius of the largest sphere fitting in every cell.
    :param bins: number of histogram bins between 0 and r_max.
    :param stride: use every stride-th frame.
    :param skip: number of frames dropped at the start (equilibration) before the stride applies.
    :param file_format: ASE format name to force reading a SinglefileData with ase.io (default: GPUMD
        reader for .xyz files, ASE's guess from the file name otherwise).
    """
    accumulator = _rdf.RdfAccumulator(float(r_max.value), int(_value(bins)),
                                      species=getattr(trajectory, 'species', None))
    for symbols, cell, positions, pbc, _, _frame in _iter_frames(
            trajectory, int(_value(stride)), int(_value(skip)), _value(file_format)):
        accumulator.add_frame(symbols, cell, positions, pbc)
    result = accumulator.result()
    node = array_node(
        r_A=result['r_A'], edges_A=result['edges_A'], g_partial=result['g_partial'],
        g_total=result['g_total'], cn_ab=result['cn_ab'], cn_ba=result['cn_ba'],
    )
    attributes = {
        'pairs': result['pairs'],
        'species': result['species'],
        'mean_counts': result['mean_counts'],
        'mean_volume_A3': result['mean_volume_A3'],
        'num_frames': result['num_frames'],
        'r_max_A': float(r_max.value),
        'bins': int(_value(bins)),
        'first_shell': [_json_safe(shell) for shell in result['first_shell']],
        'normalisation': 'ideal gas = 1: V C_ab / (N_a (N_b - delta_ab) shell volume), averaged over frames',
        'units': RDF_UNITS,
    }
    for key, value in attributes.items():
        node.base.attributes.set(key, value)
    title = f'{result["num_frames"]} frames, ⟨V⟩ = {result["mean_volume_A3"]:.1f} Å³'
    return {'rdf': node, 'figure': figure_node(_rdf.plot_rdf(result, title), 'rdf.png')}


_set_validators(compute_rdf, {
    'trajectory': _check_trajectory,
    'r_max': lambda node, _: _check_positive('r_max', node),
    'bins': lambda node, _: _check_int('bins', node, 1),
    'stride': lambda node, _: _check_int('stride', node, 1),
    'skip': lambda node, _: _check_int('skip', node, 0),
}, _validate_rdf_inputs)


def _rdf_curves(node) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{'total': (r, g), 'A-B': (r, g), ...}`` of a compute_rdf output or a GPUMD rdf.out (last run)."""
    if isinstance(node, orm.SinglefileData):
        with node.open(mode='r') as handle:
            data = read_rdf(handle)
        start = int(data['block_starts'][-1])
        r = data['r_A'][start:]
        curves = {'total': (r, data['g_total'][start:])}
        for k, pair in enumerate(data['pairs']):
            curves[pair] = (r, data['g_partial'][start:, k])
        return curves
    if 'block_starts' in node.get_arraynames():  # the gpumd parser's rdf output: rdf.out's rows, one block per run
        start = int(node.get_array('block_starts')[-1])
        r = node.get_array('r_A')[start:]
        curves = {'total': (r, node.get_array('g_total')[start:])}
        for k, pair in enumerate(node.base.attributes.get('pairs', [])):
            curves[pair] = (r, node.get_array('g_partial')[start:, k])
        return curves
    r = node.get_array('r_A')
    curves = {'total': (r, node.get_array('g_total'))}
    for k, pair in enumerate(node.base.attributes.get('pairs')):
        curves[pair] = (r, node.get_array('g_partial')[k])
    return curves


def _check_rdf_node(name):
    def validator(node, _):
        if node is None:
            return None
        if isinstance(node, orm.SinglefileData):
            return None
        if not isinstance(node, orm.ArrayData) or not {'r_A', 'g_total', 'g_partial'} <= set(node.get_arraynames()):
            return (f'{name}: expected a compute_rdf or gpumd parser output (ArrayData with r_A, g_total, g_partial) '
                    'or rdf.out')
        return None
    return validator


@calcfunction
def compare_rdfs(rdf_a: orm.ArrayData | orm.SinglefileData, rdf_b: orm.ArrayData | orm.SinglefileData,
                 label_a: orm.Str | None = None, label_b: orm.Str | None = None) -> dict:
    """Overlap score S = 1 - ∫|g1-g2|dr / ∫(g1+g2)dr of two RDFs, for the total and every common pair.

    S = 1 for identical curves, 0 for curves that never overlap. Pairs are matched by their
    species whatever the order ('Cl-Na' = 'Na-Cl'); curves on different r grids are compared on
    the common range with linear interpolation.

    :param rdf_a: a compute_rdf output (ArrayData), a GPUMD rdf.out (SinglefileData) or the gpumd parser's
        rdf ArrayData (for GPUMD files the last run is used).
    :param rdf_b: the second RDF, same kinds as rdf_a.
    :param label_a: legend label of rdf_a in the figure.
    :param label_b: legend label of rdf_b in the figure.
    """
    curves_a, curves_b = _rdf_curves(rdf_a), _rdf_curves(rdf_b)

    def key(name):
        return name if name == 'total' else '-'.join(sorted(name.split('-')))

    lookup_b = {key(name): name for name in curves_b}
    scores, matched_a, matched_b = {}, {}, {}
    for name in curves_a:
        other = lookup_b.get(key(name))
        if other is None:
            continue
        score = _rdf.rdf_overlap(*curves_a[name], *curves_b[other])
        scores[name] = score
        matched_a[name], matched_b[name] = curves_a[name], curves_b[other]
    labels = (_value(label_a) or f'a (pk {rdf_a.pk})', _value(label_b) or f'b (pk {rdf_b.pk})')
    overlap = {
        'overlap': {name: (None if math.isnan(s) else s) for name, s in scores.items()},
        'pairs_only_in_a': sorted(set(map(key, curves_a)) - set(map(key, curves_b))),
        'pairs_only_in_b': sorted(set(map(key, curves_b)) - set(map(key, curves_a))),
        'definition': 'S = 1 - integral |g_a - g_b| dr / integral (g_a + g_b) dr on the common r range; 1 = identical',
        'labels': list(labels),
    }
    return {
        'overlap': orm.Dict(overlap),
        'figure': figure_node(_rdf.plot_rdf_comparison(matched_a, matched_b, scores, labels), 'rdf_compare.png'),
    }


_set_validators(compare_rdfs, {'rdf_a': _check_rdf_node('rdf_a'), 'rdf_b': _check_rdf_node('rdf_b')})


# ------------------------------------------------------------------------------------------ MSD


@calcfunction
def compute_msd(trajectory: TrainingSetData | orm.SinglefileData, time_step_fs: orm.Float,
                stride: orm.Int = 1, skip: orm.Int = 0, blocks: orm.Int | None = None,
                file_format: orm.Str | None = None) -> dict:
    """Mean-square displacement per species over all time origins (FFT), from wrapped frames.

    Frames are unwrapped one by one (minimum image between consecutive frames, triclinic cells)
    and their displacements kept as float32 in a temporary file, never the frames themselves.

    :param trajectory: frames in time order with the same atoms in the same order: TrainingSetData
        (e.g. one AIMD run), a GPUMD dump.xyz as SinglefileData, or another ASE-readable file.
    :param time_step_fs: time between two consecutive frames of the input in fs (before the stride).
    :param stride: use every stride-th frame (the MSD time step becomes stride x time_step_fs).
    :param skip: number of frames dropped at the start (equilibration) before the stride applies.
    :param blocks: the run is also cut into this many equal blocks whose MSDs give the error bar of
        D (block averaging); 0 switches them off. Not given: as many as the frames allow, at most 5
        with at least 3 frames each, none below 2 blocks (:func:`~aiida_mlcampaign.analysis.transport.auto_blocks`),
        so that a short run still gets its MSD (fit_diffusion then judges whether it is diffusive);
        an explicit number that leaves fewer than 3 frames per block is refused.
    :param file_format: ASE format name to force reading a SinglefileData with ase.io.
    """
    stride_value = int(_value(stride))
    time_step_ps = float(time_step_fs.value) * stride_value / 1000.0
    temperatures = []
    with _msd.MsdAccumulator() as accumulator:
        for symbols, cell, positions, _pbc, unwrapped, frame in _iter_frames(
                trajectory, stride_value, int(_value(skip)), _value(file_format)):
            accumulator.add_frame(symbols, cell, positions, unwrapped)
            temperature = frame.info.get('temperature') if hasattr(frame, 'info') else None
            if temperature is not None:
                temperatures.append(float(temperature))
        # Unset blocks adapt to the run (a fixed 5 refused every run under 15 frames); given ones are
        # honoured or were refused by the validator (or, for files, by the accumulator) with the reason.
        requested = _value(blocks)
        num_blocks = _transport.auto_blocks(accumulator.num_frames) if requested is None else int(requested)
        result = accumulator.result(time_step_ps, blocks=num_blocks)
    node = array_node(time_ps=result['time_ps'], msd_A2=result['msd_A2'],
                      block_time_ps=result['block_time_ps'], msd_blocks_A2=result['msd_blocks_A2'])
    attributes = {
        'species': result['species'],
        'counts': result['counts'],
        'mean_volume_A3': result['mean_volume_A3'],
        'num_frames': result['num_frames'],
        'time_step_ps': time_step_ps,
        'num_blocks': num_blocks,
        'max_displacement_between_frames_A': result['max_displacement_A'],
        'units': MSD_UNITS,
    }
    finite = [x for x in temperatures if math.isfinite(x)]
    if finite:
        attributes['mean_temperature_K'] = float(np.mean(finite))
    for key, value in attributes.items():
        node.base.attributes.set(key, value)
    png = _msd.plot_msd(result['time_ps'], result['msd_A2'], result['species'],
                        title=f'{result["num_frames"]} frames, Δt = {time_step_ps * 1000:g} fs')
    return {'msd': node, 'figure': figure_node(png, 'msd.png')}


def _validate_msd_inputs(inputs, _):
    trajectory = inputs.get('trajectory')
    blocks = int(_value(inputs.get('blocks')) or 0)  # not given: chosen from the frames, never refused
    if isinstance(trajectory, TrainingSetData):
        skip = int(_value(inputs.get('skip')) or 0)
        stride = int(_value(inputs.get('stride')) or 1)
        frames = len(range(skip, trajectory.num_frames, stride))
        if frames < 2:
            return f'trajectory: {frames} frame(s) left after skip={skip}, stride={stride}; the MSD needs 2'
        if blocks and frames // blocks < 3:
            return f'blocks: {blocks} blocks of {frames} frames leave fewer than 3 frames per block'
    return None


_set_validators(compute_msd, {
    'trajectory': _check_trajectory,
    'time_step_fs': lambda node, _: _check_positive('time_step_fs', node),
    'stride': lambda node, _: _check_int('stride', node, 1),
    'skip': lambda node, _: _check_int('skip', node, 0),
    'blocks': lambda node, _: (None if _value(node) in (None, 0) else _check_int('blocks', node, 2)),
}, _validate_msd_inputs)


# ------------------------------------------------------------------------------------------ diffusion


def _msd_from_node(msd, group_names, gpumd_block) -> dict:
    """Per-species MSD, counts, volume and blocks from a compute_msd output or a GPUMD msd.out."""
    gpumd_layout = isinstance(msd, orm.SinglefileData) or 'block_starts' in msd.get_arraynames()
    if gpumd_layout:
        if isinstance(msd, orm.SinglefileData):
            with msd.open(mode='r') as handle:
                data = read_msd(handle)
            source = 'gpumd msd.out'
        else:  # the gpumd parser's msd output: read_msd's arrays and attributes
            data = {name: msd.get_array(name) for name in ('time_ps', 'msd_A2', 'block_starts')}
            data['num_groups'] = msd.base.attributes.get('num_groups', data['msd_A2'].shape[1])
            data['headers'] = msd.base.attributes.get('headers', [])
            source = f'gpumd parser ArrayData (pk {msd.pk})'
        starts = list(data['block_starts']) + [len(data['time_ps'])]
        lengths = {starts[i + 1] - starts[i] for i in range(len(starts) - 1)}
        groups = int(data['num_groups'])
        names = list(group_names) if group_names else [f'group_{g}' for g in range(groups)]
        if len(names) != groups:
            raise ValueError(f'group_names: {len(names)} names for {groups} groups in msd.out')
        header = data['headers'][-1] if data['headers'] else {}
        cell = header.get('cell_A')
        info = {
            'species': names, 'counts': header.get('num_atoms_per_group'),
            'volume_A3': None if cell is None else abs(float(np.linalg.det(np.asarray(cell, dtype=float)))),
            'source': source,
        }
        if gpumd_block is not None:
            if not 0 <= gpumd_block < len(starts) - 1:
                raise ValueError(f'gpumd_block: msd.out has {len(starts) - 1} run block(s), got {gpumd_block}')
            rows = slice(starts[gpumd_block], starts[gpumd_block + 1])
            info.update(time_ps=data['time_ps'][rows], msd_A2=data['msd_A2'][rows], blocks=None)
        elif len(starts) == 2:
            info.update(time_ps=data['time_ps'], msd_A2=data['msd_A2'], blocks=None)
        elif len(lengths) == 1:
            # Appended runs of equal length: independent repeats, averaged; their spread is the error.
            n = lengths.pop()
            stack = data['msd_A2'].reshape(len(starts) - 1, n, groups, 3)
            time = data['time_ps'][:n]
            info.update(time_ps=time, msd_A2=stack.mean(axis=0), blocks=stack, block_time_ps=time)
        else:
            raise ValueError(
                f'gpumd_block: msd.out holds {len(starts) - 1} runs of different lengths; choose one'
            )
        return info
    species = list(msd.base.attributes.get('species'))
    names = list(group_names) if group_names else species
    if len(names) != len(species):
        raise ValueError(f'group_names: {len(names)} names for {len(species)} species')
    blocks = msd.get_array('msd_blocks_A2')
    return {
        'species': names,
        'counts': msd.base.attributes.get('counts'),
        'volume_A3': msd.base.attributes.get('mean_volume_A3'),
        'temperature_K': msd.base.attributes.get('mean_temperature_K', None),
        'time_ps': msd.get_array('time_ps'),
        'msd_A2': msd.get_array('msd_A2'),
        'blocks': blocks if blocks.size else None,
        'block_time_ps': msd.get_array('block_time_ps'),
        'source': 'compute_msd',
    }


def _json_safe(value):
    """Dict attributes may not hold NaN/inf (PostgreSQL JSONB refuses them): those become None."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    return value


@calcfunction
def fit_diffusion(msd: orm.ArrayData | orm.SinglefileData, fit_start_ps: orm.Float | None = None,
                  fit_end_ps: orm.Float | None = None, temperature_K: orm.Float | None = None,
                  charges: orm.Dict | None = None, haven_ratio: orm.Float | None = None,
                  volume_A3: orm.Float | None = None, counts: orm.Dict | None = None,
                  group_names: orm.List | None = None, gpumd_block: orm.Int | None = None) -> dict:
    """Self-diffusion coefficients from an MSD and, with charges, the Nernst–Einstein conductivity.

    D = slope / 6 of the x+y+z MSD over the fit window (default: middle half of the lag range, of the
    block length when blocks exist); error = standard error over blocks (compute_msd blocks, or
    equal-length appended runs of an msd.out), else the least-squares error (a lower bound). Blocks
    too short for the window (a short run) are dropped with a warning instead of failing; a window
    the MSD cannot fill with 2 lags is refused naming ``fit_start_ps``, ``fit_end_ps`` or ``msd``.

    A slope is a D only where MSD ∝ t: short runs fit ballistic flight (MSD ∝ t², a few fs) and
    crystals a vibration plateau, and both give plausible-looking but meaningless D and σ. So every
    entry of ``species`` (and ``all``) also carries ``msd_exponent`` (β = d ln MSD / d ln t over the
    window), ``msd_window_end_A2`` and ``diffusive`` (0.8 <= β <= 1.2, MSD at the window end > 1 Å²,
    window starting at >= 0.1 ps; :func:`~aiida_mlcampaign.analysis.transport.diffusive_regime`),
    ``conductivity`` carries ``diffusive`` and ``non_diffusive_species``, and the top-level
    ``warnings`` (list of str) say in words what is not trustworthy and why; ``diffusive_criteria``
    records the thresholds. The numbers are reported either way.

    :param msd: a compute_msd output (ArrayData), a GPUMD msd.out (SinglefileData) or the gpumd parser's msd
        ArrayData (for GPUMD data the groups are the species: group_0, ... unless group_names).
    :param fit_start_ps: start of the fit window in ps (default 0.25 x the longest lag).
    :param fit_end_ps: end of the fit window in ps (default 0.75 x the longest lag).
    :param temperature_K: temperature in K, recorded for Arrhenius fits and needed for the conductivity
        (default: the mean frame temperature recorded by compute_msd, if any).
    :param charges: charge in e of every species with a D, e.g. {'Cu': 1, 'P': 5, 'S': -2}; switches on
        the Nernst–Einstein conductivity.
    :param haven_ratio: Haven ratio H_R dividing the Nernst–Einstein sum (default 1).
    :param volume_A3: cell volume in Å³ (default: mean volume of the MSD's frames or the msd.out header).
    :param counts: atoms per species (default: from the MSD node or the msd.out header).
    :param group_names: names of the msd.out groups (or new names of the compute_msd species).
    :param gpumd_block: which run of an msd.out with several appended runs to use (0-based).
    """
    names = group_names.get_list() if group_names is not None else None
    info = _msd_from_node(msd, names, _value(gpumd_block))
    window = (_value(fit_start_ps), _value(fit_end_ps))
    count_map = dict(counts.get_dict()) if counts is not None else (
        dict(zip(info['species'], info['counts'])) if info.get('counts') else {}
    )
    volume = _value(volume_A3) if volume_A3 is not None else info.get('volume_A3')
    temperature = _value(temperature_K) if temperature_K is not None else info.get('temperature_K')

    results, fits, warnings = {}, {}, []

    def collect(fit):
        for warning in fit.pop('warnings'):
            if warning not in warnings:  # the note on too-short blocks is the same for every species
                warnings.append(warning)
        return fit

    msd_all = info['msd_A2']
    blocks = info.get('blocks')
    for k, name in enumerate(info['species']):
        fit = collect(_transport.diffusion_from_msd(
            info['time_ps'], msd_all[:, k], window=window,
            block_time_ps=info.get('block_time_ps'),
            block_msd_A2=None if blocks is None else blocks[:, :, k], label=name,
        ))
        fit['count'] = count_map.get(name)
        results[name] = fit
        fits[name] = fit
    if count_map and all(name in count_map for name in info['species']) and len(info['species']) > 1:
        weights = np.array([count_map[name] for name in info['species']], dtype=float)
        weights /= weights.sum()
        all_msd = np.einsum('tsc,s->tc', msd_all, weights)
        all_blocks = None if blocks is None else np.einsum('btsc,s->btc', blocks, weights)
        results['all'] = collect(_transport.diffusion_from_msd(
            info['time_ps'], all_msd, window=window, block_time_ps=info.get('block_time_ps'), block_msd_A2=all_blocks,
            label='all',
        ))
    output = {
        'species': {name: results[name] for name in info['species']},
        'temperature_K': temperature,
        'volume_A3': volume,
        'source': info['source'],
        'units': {'D_A2_per_ps': 'Å²/ps', 'D_cm2_per_s': 'cm²/s', 'window_ps': 'ps', 'temperature_K': 'K',
                  'volume_A3': 'Å³', 'sigma_S_per_cm': 'S/cm', 'msd_exponent': 'dimensionless (d ln MSD / d ln t)',
                  'msd_window_end_A2': 'Å² (x+y+z)'},
        'diffusive_criteria': {
            'msd_exponent_range': list(_transport.DIFFUSIVE_EXPONENT_RANGE),
            'min_msd_window_end_A2': _transport.MIN_MSD_A2,
            'min_window_start_ps': _transport.MIN_WINDOW_START_PS,
        },
        'warnings': warnings,
    }
    if 'all' in results:
        output['all'] = results['all']
    if charges is not None:
        charge_map = charges.get_dict()
        missing = [name for name in info['species'] if name not in count_map]
        if missing:
            raise ValueError(f'counts: no atom count for species {missing} (give counts)')
        if volume is None:
            raise ValueError('volume_A3: unknown (no msd.out cell header); give volume_A3')
        if temperature is None:
            raise ValueError('temperature_K: needed for the Nernst–Einstein conductivity')
        ratio = float(_value(haven_ratio)) if haven_ratio is not None else 1.0
        diffusion = {name: results[name]['D_A2_per_ps'] for name in info['species']}
        sigma = _transport.nernst_einstein(diffusion, count_map, charge_map, float(volume), float(temperature), ratio)
        # Uncorrelated errors of the species' D propagate linearly into sigma.
        variance = sum(
            (sigma['sigma_by_species_S_per_cm'][name] / diffusion[name] * results[name]['D_err_A2_per_ps']) ** 2
            for name in diffusion if diffusion[name] != 0 and math.isfinite(results[name]['D_err_A2_per_ps'])
        )
        sigma['sigma_err_S_per_cm'] = math.sqrt(variance)
        sigma['charges_e'] = {name: charge_map[name] for name in info['species']}
        # sigma is only as good as the D of the ions that carry it (a caged framework adds ~0 and is no concern).
        untrusted = _transport.non_diffusive_conductors(
            sigma['sigma_by_species_S_per_cm'], {name: results[name]['diffusive'] for name in info['species']})
        sigma['diffusive'] = not untrusted
        sigma['non_diffusive_species'] = untrusted
        if untrusted:
            warnings.append(f'conductivity: σ = {sigma["sigma_S_per_cm"]:.3g} S/cm rests on the non-diffusive D of '
                            f'{", ".join(untrusted)}; σ not trustworthy')
        output['conductivity'] = sigma
    title = f'T = {temperature:g} K' if temperature is not None else ''
    if not all(results[name]['diffusive'] for name in info['species']):
        title = f'{title}  (not diffusive: D not trustworthy)'.strip()
    png = _msd.plot_msd(info['time_ps'], msd_all, info['species'], fits, title=title)
    return {'diffusion': orm.Dict(_json_safe(output)), 'figure': figure_node(png, 'diffusion.png')}


def _check_msd_node(node, _):
    if node is None or isinstance(node, orm.SinglefileData):
        return None
    if not isinstance(node, orm.ArrayData) or not {'time_ps', 'msd_A2'} <= set(node.get_arraynames()):
        return 'msd: expected a compute_msd or gpumd parser output (ArrayData with time_ps, msd_A2) or a GPUMD msd.out'
    return None


def _validate_diffusion_inputs(inputs, _):
    start, end = _value(inputs.get('fit_start_ps')), _value(inputs.get('fit_end_ps'))
    if start is not None and start < 0:
        return f'fit_start_ps: must be >= 0, got {start}'
    if start is not None and end is not None and not end > start:
        return f'fit_end_ps: must be larger than fit_start_ps ({start}), got {end}'
    msd = inputs.get('msd')
    if isinstance(msd, orm.ArrayData) and 'block_starts' not in msd.get_arraynames() \
            and {'time_ps', 'msd_A2'} <= set(msd.get_arraynames()):
        # A compute_msd output: the window is checked here, before anything runs (GPUMD data, whose runs are
        # chosen inside the function, is checked there with the same messages).
        names = msd.get_arraynames()
        blocks = msd.get_array('msd_blocks_A2') if 'msd_blocks_A2' in names else None
        block_time = msd.get_array('block_time_ps') if blocks is not None and blocks.size else None
        try:
            _transport.fit_window(msd.get_array('time_ps'), (start, end), block_time)
        except ValueError as error:
            return str(error)
    charges = inputs.get('charges')
    if charges is not None:
        charge_map = charges.get_dict()
        bad = [k for k, v in charge_map.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
        if bad:
            return f'charges: non-numeric charge for {bad}'
        names = inputs.get('group_names')
        if names is not None:
            species = names.get_list()
        elif isinstance(msd, orm.ArrayData) and 'block_starts' in msd.get_arraynames():
            species = [f'group_{g}' for g in range(int(msd.get_array('msd_A2').shape[1]))]
        elif isinstance(msd, orm.ArrayData):
            species = list(msd.base.attributes.get('species', []))
        else:  # an msd.out: its groups are named group_0, group_1, ...
            try:
                with msd.open(mode='r') as handle:
                    species = [f'group_{g}' for g in range(int(read_msd(handle)['num_groups']))]
            except Exception:  # an unreadable file is reported by the function itself, with the line
                species = []
        missing = [s for s in species if s not in charge_map]
        if missing:
            return f'charges: no charge given for species {", ".join(map(repr, missing))}'
    return None


_set_validators(fit_diffusion, {
    'msd': _check_msd_node,
    'fit_end_ps': lambda node, _: _check_positive('fit_end_ps', node),
    'temperature_K': lambda node, _: _check_positive('temperature_K', node),
    'haven_ratio': lambda node, _: _check_positive('haven_ratio', node),
    'volume_A3': lambda node, _: _check_positive('volume_A3', node),
    'gpumd_block': lambda node, _: _check_int('gpumd_block', node, 0),
}, _validate_diffusion_inputs)


# ------------------------------------------------------------------------------------------ Arrhenius


def _arrhenius_points(quantity, species, results: dict) -> tuple[list, list, list, str, list, list]:
    """Temperatures, values, errors, axis label, warnings and flags from fit_diffusion Dicts (sorted by input name).

    A warning names each input and temperature whose value rests on a non-diffusive D (``diffusive``
    False in the fit_diffusion result; results from before that check carry no flag and give no
    warning); ``flags`` holds that ``diffusive`` per point (None when unknown).
    """
    temperatures, values, errors, warnings, flags = [], [], [], [], []
    for label in sorted(results):
        data = results[label].get_dict()
        if data.get('temperature_K') is None:
            raise ValueError(f'{label}: this diffusion result has no temperature_K')
        temperature = float(data['temperature_K'])
        temperatures.append(temperature)
        if quantity == 'conductivity':
            sigma = data['conductivity']
            values.append(sigma['sigma_S_per_cm'])
            errors.append(sigma.get('sigma_err_S_per_cm'))
            flags.append(sigma.get('diffusive'))
            if sigma.get('diffusive') is False:
                warnings.append(f'{label} ({temperature:g} K): σ rests on the non-diffusive D of '
                                f'{", ".join(sigma.get("non_diffusive_species") or [])}; '
                                'its point in the fit is not trustworthy')
        else:
            if species == 'all' and 'all' not in data and len(data['species']) == 1:
                entry = next(iter(data['species'].values()))  # one species: 'all' is that species
            else:
                entry = data['all'] if species == 'all' else data['species'][species]
            values.append(entry['D_A2_per_ps'])
            errors.append(entry.get('D_err_A2_per_ps'))
            flags.append(entry.get('diffusive'))
            if entry.get('diffusive') is False:
                beta = entry.get('msd_exponent')
                beta = 'undefined' if beta is None else f'{beta:.2f}'
                warnings.append(f'{label} ({temperature:g} K): D of {species} is not diffusive (MSD exponent {beta}, '
                                f'{entry.get("msd_window_end_A2") or 0:.3g} Å² at the window end); '
                                'its point in the fit is not trustworthy')
    unit = 'σT (S K/cm)' if quantity == 'conductivity' else f'D_{species} (Å²/ps)'
    return temperatures, values, errors, unit, warnings, flags


def _validate_arrhenius_inputs(inputs, _):
    results = {k: v for k, v in inputs.items()
               if k not in ('quantity', 'species', 'temperatures', 'values', 'errors', 'metadata')}
    lists = inputs.get('temperatures') is not None or inputs.get('values') is not None
    if results and lists:
        return 'temperatures: give either fit_diffusion results or temperatures and values, not both'
    if not results and not lists:
        return 'diffusion_results: nothing to fit; give fit_diffusion Dicts or temperatures and values'
    quantity = _value(inputs.get('quantity'))
    if quantity is not None and quantity not in ('diffusion', 'conductivity'):
        return f"quantity: expected 'diffusion' or 'conductivity', got {quantity!r}"
    if lists:
        temperatures, values = inputs.get('temperatures'), inputs.get('values')
        if temperatures is None or values is None:
            return 'values: temperatures and values must be given together'
        if len(temperatures.get_list()) != len(values.get_list()):
            return (f'values: {len(values.get_list())} values for {len(temperatures.get_list())} temperatures')
        errors = inputs.get('errors')
        if errors is not None and len(errors.get_list()) != len(values.get_list()):
            return 'errors: expected one error per value'
        if len(temperatures.get_list()) < 2:
            return 'temperatures: an Arrhenius fit needs at least 2 temperatures'
        return None
    if len(results) < 2:
        return f'diffusion_results: an Arrhenius fit needs at least 2 results, got {len(results)}'
    species = _value(inputs.get('species'))
    for label, node in results.items():
        if not isinstance(node, orm.Dict) or 'species' not in node.get_dict():
            return f'{label}: expected a fit_diffusion output Dict'
    if quantity is None:
        quantity = 'conductivity' if all('conductivity' in n.get_dict() for n in results.values()) else 'diffusion'
    for label, node in results.items():
        data = node.get_dict()
        if data.get('temperature_K') is None:
            return f'{label}: this diffusion result has no temperature_K (give temperature_K to fit_diffusion)'
        if quantity == 'conductivity' and 'conductivity' not in data:
            return f'{label}: no conductivity in this result (give charges to fit_diffusion)'
        if quantity == 'diffusion' and species is None and len(data['species']) > 1:
            return f'species: the results have several species {sorted(data["species"])}; choose one or "all"'
        if species is not None and species != 'all' and species not in data['species']:
            return f'species: {species!r} is not in {label} (species {sorted(data["species"])})'
        if species == 'all' and 'all' not in data and len(data['species']) > 1:
            return f'species: {label} has no "all" entry (atom counts unknown)'
    return None


@calcfunction
def fit_arrhenius(quantity: orm.Str | None = None, species: orm.Str | None = None,
                  temperatures: orm.List | None = None, values: orm.List | None = None,
                  errors: orm.List | None = None, **diffusion_results: orm.Dict) -> dict:
    """Activation energy ± standard error and prefactor from D(T) or σ(T) (Arrhenius).

    ln D (or ln σT for conductivities) is fitted linearly against 1/T, weighted by the errors
    when all are known. Either pass several fit_diffusion outputs as keyword inputs (any names,
    e.g. ``T600=..., T800=...``), or plain lists of temperatures and values.

    :param quantity: 'diffusion' (fit ln D) or 'conductivity' (fit ln σT); default: conductivity when
        every result has one, else diffusion.
    :param species: which species' D to fit ('all' = every atom); needed when there are several.
    :param temperatures: temperatures in K (with values instead of fit_diffusion results).
    :param values: D in Å²/ps or σ in S/cm, one per temperature.
    :param errors: 1-sigma errors of the values (optional, weights the fit).
    :param diffusion_results: fit_diffusion output Dicts, each with its temperature_K.

    The output's ``warnings`` (list of str) name each input and temperature whose D (or σ) was not
    diffusive according to fit_diffusion (ballistic, caged or too short a window): Ea from such
    points is not an activation energy of diffusion. They are still fitted so that the numbers can
    be inspected (only a non-positive one, which ln cannot take, is left out, with a warning);
    drop them (or run longer) for a trustworthy Ea.
    """
    if diffusion_results:
        everything_has_sigma = all('conductivity' in node.get_dict() for node in diffusion_results.values())
        kind = _value(quantity) or ('conductivity' if everything_has_sigma else 'diffusion')
        first = next(iter(diffusion_results.values())).get_dict()
        chosen = _value(species) or (next(iter(first['species'])) if len(first['species']) == 1 else 'all')
        temps, vals, errs, label, warnings, flags = _arrhenius_points(kind, chosen, diffusion_results)
        # A caged run can give D <= 0, which ln D cannot hold: such a point (already flagged as not
        # diffusive) is left out with a word instead of failing the whole fit.
        keep = [not (flag is False and value is not None and value <= 0) for flag, value in zip(flags, vals)]
        for kept, name, temperature, value in zip(keep, sorted(diffusion_results), temps, vals):
            if not kept:
                warnings.append(f'{name} ({temperature:g} K): left out of the fit, its non-diffusive value {value:.3g} '
                                'is not positive')
        if not all(keep):
            temps, vals = [x for x, k in zip(temps, keep) if k], [x for x, k in zip(vals, keep) if k]
            errs = [x for x, k in zip(errs, keep) if k]
    else:
        kind = _value(quantity) or 'diffusion'
        chosen = _value(species)
        temps, vals = temperatures.get_list(), values.get_list()
        errs = errors.get_list() if errors is not None else None
        label = 'σT (S K/cm)' if kind == 'conductivity' else 'D (Å²/ps)'
        warnings = []  # plain numbers: nothing is known about their regime
    usable = errs is not None and all(e is not None and math.isfinite(e) and e > 0 for e in errs)
    fit = _transport.arrhenius_fit(temps, vals, errs if usable else None, quantity=kind)
    fit['species'] = chosen
    fit['errors'] = errs if usable else None
    fit['units'] = {'activation_energy_eV': 'eV', 'temperatures_K': 'K',
                    'values': 'S/cm' if kind == 'conductivity' else 'Å²/ps',
                    'prefactor': 'S K/cm' if kind == 'conductivity' else 'Å²/ps'}
    fit['prefactor_units'] = fit['units']['prefactor']
    fit['warnings'] = warnings
    png = _transport.plot_arrhenius(fit, label)
    return {'arrhenius': orm.Dict(_json_safe(fit)), 'figure': figure_node(png, 'arrhenius.png')}


_set_validators(fit_arrhenius, {}, _validate_arrhenius_inputs)
