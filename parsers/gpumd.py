"""Parser of ``GpumdCalculation``: a thin layer over the readers of ``aiida_mlcampaign.formats.gpumd``.

Every output file the run wrote becomes a node even when the job stopped early, so a stopped job still gives its
thermo and its last restart; the exit code then says why it stopped. Order of precedence: input error (310),
blow-up (500), walltime (aiida-core's ERROR_SCHEDULER_OUT_OF_WALLTIME, 120), any other early end (400), missing
thermo.out (301), unreadable output (302).
``restart.xyz`` and dump files come through the temporary retrieve list, so a multi-GB trajectory is copied once,
straight into the repository, and is never read into memory (its frames are counted by streaming).
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

import numpy as np
from aiida import orm

from aiida_mlcampaign.calculations.gpumd import dump_files, gpumd_legacy, stages_of
from aiida_mlcampaign.formats import gpumd as readers
from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.gpumd import OUTPUT_FILES, array_node_content, iter_dump_xyz, read_gpumd_stdout
from aiida_mlcampaign.formats.gpumd_model import read_model_header
from aiida_mlcampaign.parsers.base import PluginParser
from aiida_mlcampaign.formats.gpumd_run import (
    restart_point, run_progress, run_stage_indices, stage_time_steps, target_temperatures, thermo_schedule,
)



def reader_array_node(result: dict) -> orm.ArrayData:
    """The ArrayData this parser stores for a ``formats.gpumd`` reader's result (arrays + unit attributes)."""
    arrays, attributes = array_node_content(result)
    node = orm.ArrayData()
    for name, array in arrays.items():
        node.set_array(name, array)
    for key, value in attributes.items():
        node.base.attributes.set(key, value)
    return node


def _message(exception: Exception, handle, filename: str) -> str:
    """The error text with the repository or sandbox path of the file replaced by its plain name."""
    text = str(exception)
    name = getattr(handle, 'name', None)
    return text.replace(str(name), filename) if name else text


def count_frames(path) -> tuple[int, str | None]:
    """Complete frames of a dump file, streamed one at a time; and the error that ended the count, if any (a job
    killed while writing leaves a truncated last frame)."""
    count = 0
    try:
        for _ in iter_dump_xyz(path):
            count += 1
    except FormatError as exception:
        return count, str(exception)
    return count, None


class GpumdParser(PluginParser):
    """Reads gpumd's stdout/stderr, thermo.out and every compute_* output, the restart.xyz and the dump files."""

    def parse(self, **kwargs):
        calculation = self.node.process_class
        names = set(self.retrieved.base.repository.list_object_names())
        temporary = kwargs.get('retrieved_temporary_folder')
        self.exit_status()
        if calculation._STDOUT not in names:
            return self.exit('ERROR_MISSING_STDOUT')
        text = self.retrieved.base.repository.get_object_content(calculation._STDOUT)
        if calculation._STDERR in names:
            text += '\n' + self.retrieved.base.repository.get_object_content(calculation._STDERR)
        info = read_gpumd_stdout(text)
        input_errors = [e for e in info['errors'] if e['kind'] == 'Input Error']
        if input_errors:
            error = input_errors[0]
            return self.exit('ERROR_INPUT_REFUSED', detail=f'{error["text"]} ({error["file"]}, line {error["line"]})')

        inputs = self.node.inputs
        stages = stages_of(inputs, gpumd_legacy(inputs))
        problems: list[str] = []
        parameters: dict = {'gpumd_version': info['version'], 'finished': info['finished'],
                            'errors': info['errors'], 'time_step_fs': stage_time_steps(stages)}

        thermo, thermo_rows = self._thermo(names, stages, problems, info['finished'])
        self._other_outputs(names, stages, problems)
        try:
            progress = run_progress(stages, len(info['runs']), thermo_rows)
        except FormatError as exception:
            problems.append(str(exception))
            progress = run_progress(stages, 0, thermo_rows)
        parameters.update(progress)
        parameters['thermo_rows'] = thermo_rows
        restart_file = self._locate(calculation._RESTART, names, temporary)
        parameters['restart'] = None
        if restart_file is not None and self._restart(restart_file, problems):
            current = progress['current_stage']
            if thermo_rows is None and current is not None and stages[current].get('dump_thermo'):
                # Without the rows, the dump restart.xyz holds cannot be told: never guess a continuation point.
                problems.append('restart.xyz: the step it holds is unknown because thermo.out is unreadable')
            else:
                parameters['restart'] = restart_point(stages, progress['steps_done'])
        self._trajectories(dump_files(stages), names, temporary, problems)
        self.out('speed', orm.Dict(self._speed(info, stages)))

        blowup = self._blowup(thermo, stages) if thermo is not None else None
        parameters['blowup'] = blowup
        parameters['problems'] = problems
        self.out('output_parameters', orm.Dict(parameters))

        if blowup:
            return self.exit_codes.ERROR_BLOWUP.format(detail=blowup)
        # The scheduler's verdict, set by aiida-core before the parser runs, compared by aiida-core's own labels.
        scheduler = self.node.exit_status
        if scheduler == self.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status:
            return self.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME
        if not info['finished'] or scheduler == self.exit_codes.ERROR_SCHEDULER_NODE_FAILURE.status:
            done = f'{progress["runs_finished"]} of {progress["runs_total"]} runs finished'
            other = [f'{e["kind"]}: {e["text"]}' for e in info['errors']]
            return self.exit('ERROR_NOT_FINISHED', detail=': ' + '; '.join([done, *other]))
        if thermo is None and any('dump_thermo' in s for s in stages) and 'thermo.out' not in names:
            return self.exit('ERROR_MISSING_OUTPUT_FILE', filename='thermo.out',
                             detail=' although run.in asks for dump_thermo')
        if problems:
            return self.exit('ERROR_UNREADABLE_OUTPUT', filename='output files', detail='; '.join(problems))
        return None

    # ------------------------------------------------------------------------------------------------ files
    def _locate(self, name: str, names: set, temporary) -> pathlib.Path | str | None:
        """A file from the temporary retrieve folder (a path) or, failing that, from ``retrieved`` (its name)."""
        if temporary is not None and (pathlib.Path(temporary) / name).is_file():
            return pathlib.Path(temporary) / name
        return name if name in names else None

    @contextlib.contextmanager
    def _open(self, where):
        if isinstance(where, pathlib.Path):
            with open(where, encoding='utf-8') as handle:
                yield handle
        else:
            with self.retrieved.base.repository.open(where) as handle:
                yield handle

    def _thermo(self, names: set, stages: list[dict], problems: list[str], finished: bool):
        """The thermo arrays (or None) and the number of rows (None when thermo.out exists but cannot be read).

        GPUMD creates thermo.out when a block with dump_thermo starts and flushes every row, so a missing or empty
        file means no row was due yet (0 rows). A job killed while writing may leave half a last row: for a job
        that did not finish, the file is read again without its last line.
        """
        if 'thermo.out' not in names:
            return None, 0
        text = self.retrieved.base.repository.get_object_content('thermo.out')
        data_lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith('#')]
        if not data_lines:
            return None, 0
        attempts = [text] if finished else [text, '\n'.join(text.splitlines()[:-1]) + '\n']
        error = None
        for attempt in attempts:
            try:
                result = readers.read_thermo(io.StringIO(attempt))
                result.update(thermo_schedule(stages, len(result['temperature_K'])))
            except FormatError as exception:
                error = error or exception
                continue
            if attempt is not text:
                problems.append(f'thermo.out: last line incomplete, dropped ({error})')
            self.out('thermo', reader_array_node(result))
            return result, len(result['temperature_K'])
        problems.append(f'thermo.out: {str(error).replace("<stream>: ", "")}')
        return None, None

    def _other_outputs(self, names: set, stages: list[dict], problems: list[str]) -> None:
        dts = stage_time_steps(stages)
        hnemd = [(s['compute_hnemd']['output_interval'], dts[i]) for i, s in enumerate(stages) if 'compute_hnemd' in s]
        for entries in OUTPUT_FILES.values():
            for label, filename, reader in entries:
                if label == 'thermo' or filename not in names:
                    continue
                kwargs = {}
                if label == 'kappa' and len(set(hnemd)) == 1:
                    interval, dt = hnemd[0]
                    kwargs['time_per_row_ps'] = interval * dt / 1000.0
                handle = None
                try:
                    with self.retrieved.base.repository.open(filename) as handle:
                        result = getattr(readers, reader)(handle, **kwargs)
                except FormatError as exception:
                    problems.append(f'{filename}: {_message(exception, handle, filename)}')
                    continue
                self.out(label, reader_array_node(result))

    def _restart(self, where, problems: list[str]) -> bool:
        handle = None
        try:
            with self._open(where) as handle:
                frame = readers.read_restart_xyz(handle)
            with self._open(where) as handle:
                header = read_model_header(handle)
        except FormatError as exception:
            problems.append(f'restart.xyz: {_message(exception, handle, "restart.xyz")}')
            return False
        if isinstance(where, pathlib.Path):
            node = orm.SinglefileData(where, filename='restart.xyz')
        else:
            with self.retrieved.base.repository.open(where, mode='rb') as handle:
                node = orm.SinglefileData(handle, filename='restart.xyz')
        node.base.attributes.set('num_atoms', len(frame['species']))
        node.base.attributes.set('species', sorted(set(frame['species'])))
        node.base.attributes.set('has_velocities', frame['velocities'] is not None)
        node.base.attributes.set('num_grouping_methods', header['num_grouping_methods'])
        self.out('restart', node)
        return True

    def _trajectories(self, files: list[str], names: set, temporary, problems: list[str]) -> None:
        found = [(name, self._locate(name, names, temporary)) for name in files]
        found = [(name, where) for name, where in found if where is not None]
        for name, where in found:
            if isinstance(where, pathlib.Path):
                frames, error = count_frames(where)
                error = error and error.replace(str(where), name)
                node = orm.SinglefileData(where, filename=name)
            else:
                with self.retrieved.base.repository.open(where) as handle:
                    frames, error = count_frames(handle)
                    error = error and _message(error, handle, name)
                with self.retrieved.base.repository.open(where, mode='rb') as handle:
                    node = orm.SinglefileData(handle, filename=name)
            node.base.attributes.set('num_frames', frames)
            if error:
                node.base.attributes.set('truncated', error)
                problems.append(f'{name}: {frames} complete frames, then: {error}')
            if len(found) == 1:
                self.out('trajectory', node)
            else:
                self.out(f'trajectories.{re.sub(r"[^0-9A-Za-z_]", "_", name)}', node)

    # ------------------------------------------------------------------------------------------------ numbers
    def _speed(self, info: dict, stages: list[dict]) -> dict:
        indices = run_stage_indices(stages)
        runs = []
        for k, run in enumerate(info['runs']):
            stage = indices[k] if k < len(indices) else None
            runs.append({'stage': stage, 'steps': stages[stage]['run'] if stage is not None else None,
                         'time_s': run['time_s'], 'speed_atom_step_per_s': run['speed_atom_step_per_s']})
        timed = [r for r in runs if r['time_s'] is not None and r['speed_atom_step_per_s'] is not None]
        total = sum(r['time_s'] for r in timed)
        overall = (sum(r['time_s'] * r['speed_atom_step_per_s'] for r in timed) / total) if total > 0 else None
        return {'runs': runs, 'run_time_s': total if timed else None, 'total_time_s': info['total_time_s'],
                'overall_speed_atom_step_per_s': overall}

    def _blowup(self, thermo: dict, stages: list[dict]) -> str | None:
        """NaN/inf anywhere in a thermo row, or a temperature above factor x the block's target."""
        columns = ('temperature_K', 'kinetic_energy_eV', 'potential_energy_eV', 'pressure_GPa', 'cell_A')
        for key in columns:
            values = thermo[key].reshape(len(thermo[key]), -1)
            bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
            if bad.size:
                row = int(bad[0])
                return f'{key} is not finite in thermo.out row {row + 1} (step {int(thermo["step"][row])})'
        inputs = self.node.inputs
        factor = inputs.blowup_temperature_factor.value if 'blowup_temperature_factor' in inputs else 5.0
        targets = target_temperatures(stages)
        for row, (stage, temperature) in enumerate(zip(thermo['stage'], thermo['temperature_K'])):
            target = targets[int(stage)]
            if target and temperature > factor * target:
                return (f'T = {temperature:.4g} K in thermo.out row {row + 1} (step {int(thermo["step"][row])}) '
                        f'exceeds {factor:g} x the target {target:g} K of stages[{int(stage)}]')
        return None
