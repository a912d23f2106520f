"""Parser of ``MdCpuCalculation``: the outputs of ``mlcampaign-md`` as GpumdCalculation's nodes.

Every output file the run wrote becomes a node even when the job stopped early, so a stopped job still gives its
thermo and its last restart; the exit code then says why it stopped. Order of precedence: input refused (310),
blow-up (500), stopped early (400: a walltime or a kill, with ``restart`` attached), non-zero exit status (311),
missing output (301), output that does not match the summary (304), unreadable output (302). ``dump.xyz`` and
``restart.xyz`` come through the temporary retrieve list: a long trajectory is copied once, straight into the
repository, and its frames are counted by streaming (the helpers of the GPUMD parser).
"""

from __future__ import annotations

import json
import pathlib

from aiida import orm

from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.md_production import (
    ERROR_MARKER,
    blowup_in_thermo,
    check_md_settings,
    read_md_thermo,
    restart_point,
)
from aiida_mlcampaign.parsers.base import PluginParser
from aiida_mlcampaign.parsers.gpumd import GpumdParser, count_frames, reader_array_node

__all__ = ('MdCpuParser',)


class MdCpuParser(PluginParser):
    """Outputs ``thermo``, ``trajectory``, ``restart``, ``speed`` and ``output_parameters`` (see the CalcJob)."""

    def parse(self, **kwargs):
        from aiida_mlcampaign.calculations.md_cpu import potential_family

        calculation = self.node.process_class
        names = self._names()
        temporary = kwargs.get('retrieved_temporary_folder')
        status = self.exit_status()
        stdout = self._text(calculation._STDOUT)
        if stdout is None:
            return self.exit('ERROR_MISSING_STDOUT', detail=f' ({calculation._STDOUT})')
        errors = [line for line in stdout.splitlines() if line.startswith(ERROR_MARKER)]
        if errors:
            return self.exit('ERROR_INPUT_REFUSED', detail=errors[-1][len(ERROR_MARKER):].lstrip(': '))

        inputs = self.node.inputs
        settings = check_md_settings(inputs.parameters.get_dict(), potential_family(inputs.potential))
        problems: list[str] = []
        summary = self._summary(calculation, problems)
        step_offset, time_offset = self._offset(summary)

        thermo = None
        if calculation._THERMO in names:
            try:
                with self.retrieved.base.repository.open(calculation._THERMO) as handle:
                    thermo, note = read_md_thermo(handle, step_offset, settings, finished=bool(summary))
                if note:
                    problems.append(note)
                self.out('thermo', reader_array_node(thermo))
            except FormatError as exception:
                problems.append(f'{calculation._THERMO}: {str(exception).replace("<stream>: ", "")}')
        restart = self._restart(self._locate(calculation._RESTART, names, temporary), problems)
        frames = self._trajectory(self._locate(calculation._DUMP, names, temporary), problems)

        blowup = None
        if summary and summary.get('stop_reason') == 'blowup':
            blowup = summary.get('stop_detail') or 'the driver stopped the run'
        elif thermo is not None:
            blowup = blowup_in_thermo(thermo, settings['temperature'], settings['blowup_factor'])
        rows = None if thermo is None else len(thermo['temperature_K'])
        parameters = {
            'finished': bool(summary and summary.get('finished')),
            'stop_reason': summary.get('stop_reason') if summary else None,
            'stop_detail': summary.get('stop_detail') if summary else None,
            'family': potential_family(inputs.potential),
            'steps_requested': settings['steps'],
            'steps_done': summary.get('steps_done') if summary else None,
            'steps_run': summary.get('steps_run') if summary else None,
            'step_offset': step_offset,
            'time_offset_fs': time_offset,
            'time_step_fs': settings['time_step'],
            'thermo_rows': rows,
            'dump_frames': frames,
            'restart': restart,
            'blowup': blowup,
            'problems': problems,
            'exit_status': status,
        }
        self.out('output_parameters', orm.Dict(parameters))
        if summary and summary.get('atom_steps_per_second'):
            self.out('speed', orm.Dict(self._speed(summary)))

        if blowup:
            return self.exit_codes.ERROR_BLOWUP.format(detail=blowup)
        scheduler = self.node.exit_status
        stopped = scheduler in (self.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status,
                                self.exit_codes.ERROR_SCHEDULER_NODE_FAILURE.status)
        if not parameters['finished'] and (stopped or summary or not status):
            where = f' (restart.xyz at step {restart["step"]})' if restart else ' (no restart.xyz)'
            done = f'; {summary["steps_done"]} of {settings["steps"]} steps' if summary else ''
            return self.exit('ERROR_NOT_FINISHED', detail=where + done)
        if status:
            last = (stdout.strip().splitlines() or ['(empty)'])[-1]
            return self.exit('ERROR_NONZERO_EXIT_STATUS', status=status, detail=f'; last output line: {last}')
        for name, count, expected in ((calculation._THERMO, rows, summary['thermo_rows']),
                                      (calculation._DUMP, frames, summary['dump_frames'])):
            if count is None and expected and not problems:
                return self.exit('ERROR_MISSING_OUTPUT_FILE', filename=name)
            if count is not None and count != expected and not problems:
                return self.exit('ERROR_OUTPUT_MISMATCH', filename=name,
                                 detail=f'{count} rows/frames, the summary counts {expected}')
        if restart is None and not problems:
            return self.exit('ERROR_MISSING_OUTPUT_FILE', filename=calculation._RESTART)
        if problems:
            return self.exit('ERROR_UNREADABLE_OUTPUT', filename='output files', detail='; '.join(problems))
        return None

    # ------------------------------------------------------------------------------------------------ files
    def _summary(self, calculation, problems: list[str]) -> dict | None:
        text = self._text(calculation._SUMMARY)
        if text is None:
            return None
        try:
            summary = json.loads(text)
            for key in ('finished', 'stop_reason', 'step_start', 'time_start_fs', 'steps_done', 'thermo_rows',
                        'dump_frames'):
                summary[key]  # noqa: B018 - a KeyError names what is missing
        except (ValueError, KeyError, TypeError) as exception:
            problems.append(f'{calculation._SUMMARY}: {type(exception).__name__}: {exception}')
            return None
        return summary

    def _offset(self, summary: dict | None) -> tuple[int, float]:
        """Steps and time (fs) before this job: from the summary, else from the restart input, else 0."""
        if summary:
            return int(summary['step_start']), float(summary['time_start_fs'])
        if 'restart' in self.node.inputs:
            with self.node.inputs.restart.open(mode='r') as handle:
                point = restart_point(handle)
            return point['step'], point['time_fs']
        return 0, 0.0

    # The GPUMD parser's file access: the temporary retrieve folder first (a path), else ``retrieved`` (a name).
    _locate = GpumdParser._locate
    _open = GpumdParser._open

    def _file_node(self, where, filename: str) -> orm.SinglefileData:
        """A SinglefileData of a located file, copied without reading it into memory."""
        if isinstance(where, pathlib.Path):
            return orm.SinglefileData(where, filename=filename)
        with self.retrieved.base.repository.open(where, mode='rb') as handle:
            return orm.SinglefileData(handle, filename=filename)

    def _restart(self, where, problems: list[str]) -> dict | None:
        """The ``restart`` output and where it sits (step, time_fs), or None."""
        if where is None:
            return None
        try:
            with self._open(where) as handle:
                point = restart_point(handle)
        except ValueError as exception:
            problems.append(f'restart.xyz: {str(exception).replace(str(where), "restart.xyz")}')
            return None
        node = self._file_node(where, 'restart.xyz')
        frame = point['frame']
        node.base.attributes.set('num_atoms', len(frame['species']))
        node.base.attributes.set('species', sorted(set(frame['species'])))
        node.base.attributes.set('has_velocities', True)
        node.base.attributes.set('num_grouping_methods', 0)
        node.base.attributes.set('step', point['step'])
        node.base.attributes.set('time_fs', point['time_fs'])
        self.out('restart', node)
        return {'step': point['step'], 'time_fs': point['time_fs']}

    def _trajectory(self, where, problems: list[str]) -> int | None:
        if where is None:
            return None
        with self._open(where) as handle:
            frames, error = count_frames(handle)
        node = self._file_node(where, 'dump.xyz')
        node.base.attributes.set('num_frames', frames)
        if error:
            error = error.replace(str(where), 'dump.xyz')
            node.base.attributes.set('truncated', error)
            problems.append(f'dump.xyz: {frames} complete frames, then: {error}')
        self.out('trajectory', node)
        return frames

    @staticmethod
    def _speed(summary: dict) -> dict:
        return {
            'atom_steps_per_second': summary['atom_steps_per_second'],
            'atom_steps_per_s': summary['atom_steps_per_second'],
            'seconds': summary.get('md_seconds'),
            'time_s': summary.get('md_seconds'),
            'natoms': summary.get('natoms'),
            'steps': summary.get('steps_run'),
            'ns_per_day': summary.get('ns_per_day'),
            'hardware': summary.get('hardware'),
            'cpu': summary.get('cpu'),
            'family': summary.get('family'),
            'source': 'mlcampaign-md',
        }
