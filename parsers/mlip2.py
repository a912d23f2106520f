"""Parsers of the mlip-2 / LAMMPS-mlip CalcJobs: thin layers over ``aiida_mlcampaign.formats.mlip2`` and ``.mlip_cfg``.

mlp prints positions with 6 decimals, so frames it writes back are matched against the input frames
(same species, geometry within :data:`GEOMETRY_TOLERANCE`) and the exact input geometry and metadata are kept.
"""

from __future__ import annotations

import io

import numpy as np
from aiida import orm

from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.frames import FormatError, Frame
from aiida_mlcampaign.formats.mlip2 import (
    EXIT_EXTRAPOLATION_STOP,
    EXIT_MLIP_INIT_FAILED,
    check_lammps_parameters,
    find_break_grade,
    read_errors_report,
    read_lammps_log,
    read_select_add_log,
    read_train_log,
)
from aiida_mlcampaign.formats.mlip_cfg import read_cfg
from aiida_mlcampaign.parsers.base import PluginParser

#: Å; mlp writes 6 decimals, so a frame it echoes differs from its input by at most 5e-7 Å per coordinate.
GEOMETRY_TOLERANCE = 1e-4


class _MlipParser(PluginParser):
    """Failure messages with the executable's last words, cfg frames read back in the potential's order."""

    def _failure(self, status: int | None, filename: str):
        """The exit code for a missing ``filename``: a non-zero exit status explains it best."""
        if status:
            return self.exit('ERROR_NONZERO_EXIT_STATUS', status=status, detail=self._last_words())
        return self.exit('ERROR_MISSING_OUTPUT_FILE', filename=filename, detail='')

    def _last_words(self) -> str:
        process = self.node.process_class
        for name in (process._STDERR, process._STDOUT):
            text = self._text(name)
            lines = [line.strip() for line in (text or '').splitlines() if line.strip()]
            if lines:
                return f'; last line of {name}: {lines[-1][:300]}'
        return ''

    def _stdout(self):
        """(text, None) or (None, exit code)."""
        name = self.node.process_class._STDOUT
        text = self._text(name)
        if text is None:
            return None, self.exit('ERROR_MISSING_STDOUT')
        return text, None

    def _read_frames(self, name: str):
        """(frames, None) or (None, exit code) for a cfg written by mlp, types in the potential's order."""
        species = self.node.inputs.potential.species
        try:
            with self.retrieved.base.repository.open(name) as handle:
                return list(read_cfg(handle, species)), None
        except (FormatError, ValueError) as exception:
            return None, self.exit('ERROR_UNREADABLE_OUTPUT', filename=name, detail=str(exception))

    def _state(self, name: str):
        """The ``.als`` file as a SinglefileData (mixed text/binary, stored byte for byte)."""
        return orm.SinglefileData(io.BytesIO(self._bytes(name)), filename=name)


def _same_geometry(frame: Frame, reference: Frame) -> bool:
    return (
        frame.symbols == reference.symbols
        and np.allclose(frame.cell, reference.cell, atol=GEOMETRY_TOLERANCE, rtol=0)
        and np.allclose(frame.positions, reference.positions, atol=GEOMETRY_TOLERANCE, rtol=0)
    )


def _unlabelled(frame: Frame, info: dict | None = None) -> Frame:
    """Geometry only: MTP labels of selected frames are not reference data and must not be trained on."""
    return Frame(symbols=frame.symbols, cell=frame.cell, positions=frame.positions, pbc=frame.pbc,
                 weight=frame.weight, info=dict(frame.info if info is None else info))


def _metadata(info: dict) -> dict:
    return {key: value for key, value in info.items() if key in ('source_uuid', 'origin', 'temperature')}


# ----------------------------------------------------------------------------------------- mlp train


class MlpTrainParser(_MlipParser):
    """``trained.mtp`` -> MtpPotentialData with the TRAIN ERRORS report; 410 when BFGS hit --max-iter."""

    def parse(self, **kwargs):
        status = self.exit_status()
        text, exit_code = self._stdout()
        if exit_code:
            return exit_code
        options = self.node.inputs.options.get_dict() if 'options' in self.node.inputs else {}
        try:
            log = read_train_log(text, max_iter=options.get('max_iter', 1000))
        except ValueError as exception:
            return self.exit('ERROR_UNREADABLE_STDOUT', detail=str(exception))
        if not log['finished']:
            if status:
                return self.exit('ERROR_NONZERO_EXIT_STATUS', status=status, detail=self._last_words())
            return self.exit('ERROR_UNREADABLE_STDOUT', detail='no TRAIN ERRORS report; the run did not finish')
        errors = log['train_errors']
        self.out('training_errors', orm.Dict(errors))
        if log['validation_errors'] is not None:
            self.out('validation_errors', orm.Dict(log['validation_errors']))
        self.out('summary', orm.Dict({
            'bfgs_iterations': log['bfgs_iterations'],
            'final_loss': log['final_loss'],
            'max_iter': log['max_iter'],
            'reached_max_iter': log['reached_max_iter'],
            'pretraining': any(stage['stage'] == 'pretraining' for stage in log['stages']),
            'mindist': log['mindist'],
        }))
        name = self.node.process_class._TRAINED
        content = self._text(name)
        if content is None:
            return self._failure(status, name)
        try:
            potential = MtpPotentialData(content, species=self.node.inputs.potential.species,
                                         training_errors=errors, filename=name)
        except (FormatError, ValueError) as exception:
            return self.exit('ERROR_BAD_POTENTIAL_FILE', detail=str(exception))
        if not potential.is_trained:
            return self.exit('ERROR_BAD_POTENTIAL_FILE', detail='the file holds no coefficients')
        self.out('potential', potential)
        if log['reached_max_iter']:
            return self.exit('ERROR_NOT_CONVERGED', max_iter=log['max_iter'])
        return None


# ----------------------------------------------------------------------------------------- calc-efs / errors


class MlpCalcEfsParser(_MlipParser):
    """``predictions.cfg`` -> TrainingSetData with the MTP's labels and the input frames' exact geometry."""

    def parse(self, **kwargs):
        status = self.exit_status()
        name = self.node.process_class._PREDICTIONS
        if not self._has(name):
            return self._failure(status, name)
        frames, exit_code = self._read_frames(name)
        if exit_code:
            return exit_code
        reference = list(self.node.inputs.frames.iter_frames())
        if len(frames) != len(reference):
            return self.exit('ERROR_OUTPUT_MISMATCH',
                             filename=name, detail=f'{len(frames)} frames for {len(reference)} inputs')
        predictions = []
        for index, (frame, original) in enumerate(zip(frames, reference)):
            if not _same_geometry(frame, original):
                return self.exit('ERROR_OUTPUT_MISMATCH', filename=name, detail=f'frame {index} differs')
            predictions.append(Frame(symbols=original.symbols, cell=original.cell, positions=original.positions,
                                     pbc=original.pbc, energy=frame.energy, forces=frame.forces, stress=frame.stress,
                                     weight=original.weight, info=_metadata(original.info)))
        self.out('predictions', TrainingSetData.from_frames(predictions, species=self.node.inputs.frames.species))
        return None


class MlpCalcErrorsParser(_MlipParser):
    """The error report ``mlp calc-errors`` prints -> Dict."""

    def parse(self, **kwargs):
        status = self.exit_status()
        text, exit_code = self._stdout()
        if exit_code:
            return exit_code
        try:
            errors = read_errors_report(text)
        except ValueError as exception:
            if status:
                return self.exit('ERROR_NONZERO_EXIT_STATUS', status=status, detail=self._last_words())
            return self.exit('ERROR_UNREADABLE_STDOUT', detail=str(exception))
        self.out('errors', orm.Dict(errors))
        return None


# ----------------------------------------------------------------------------------------- calc-grade


class MlpCalcGradeParser(_MlipParser):
    """``graded.cfg`` -> grades (ArrayData ``mv_grade``) and the graded frames with their input references;
    ``state.als`` -> SinglefileData."""

    def parse(self, **kwargs):
        status = self.exit_status()
        process = self.node.process_class
        for name in (process._GRADED, process._STATE):
            if not self._has(name):
                return self._failure(status, name)
        frames, exit_code = self._read_frames(process._GRADED)
        if exit_code:
            return exit_code
        inputs = self.node.inputs
        reference_node = inputs.frames if 'frames' in inputs else inputs.training_set
        reference = list(reference_node.iter_frames())
        if len(frames) != len(reference):
            return self.exit('ERROR_OUTPUT_MISMATCH',
                             filename=process._GRADED, detail=f'{len(frames)} frames for {len(reference)} inputs')
        grades = []
        for index, (frame, original) in enumerate(zip(frames, reference)):
            if not _same_geometry(frame, original):
                return self.exit('ERROR_OUTPUT_MISMATCH', filename=process._GRADED,
                                                                   detail=f'frame {index} differs')
            if 'mv_grade' not in frame.info:
                return self.exit('ERROR_UNREADABLE_OUTPUT',
                                 filename=process._GRADED, detail=f'frame {index} has no MV_grade feature')
            grades.append(frame.info['mv_grade'])
        array = orm.ArrayData()
        array.set_array('mv_grade', np.array(grades, dtype=float))
        self.out('grades', array)
        # mlp calc-grade keeps the input's reference labels; the node keeps them exactly (no 6-decimal round trip).
        self.out('graded_frames', TrainingSetData.from_frames(reference, species=reference_node.species))
        self.out('state', self._state(process._STATE))
        return None


# ----------------------------------------------------------------------------------------- select-add


class MlpSelectAddParser(_MlipParser):
    """``diff.cfg`` -> the selected candidates (unlabelled, for DFT), ``state.als``, and the counts."""

    def parse(self, **kwargs):
        status = self.exit_status()
        process = self.node.process_class
        text, exit_code = self._stdout()
        if exit_code:
            return exit_code
        try:
            log = read_select_add_log(text)
        except ValueError as exception:
            if status:
                return self.exit('ERROR_NONZERO_EXIT_STATUS', status=status, detail=self._last_words())
            return self.exit('ERROR_UNREADABLE_STDOUT', detail=str(exception))
        for name in (process._STATE, process._DIFF):
            if not self._has(name):
                return self._failure(status, name)
        frames, exit_code = self._read_frames(process._DIFF)
        if exit_code:
            return exit_code
        candidates = list(self.node.inputs.candidates.iter_frames())
        indices = []
        for index, frame in enumerate(frames):
            match = next((i for i, candidate in enumerate(candidates)
                          if i not in indices and _same_geometry(frame, candidate)), None)
            if match is None:
                return self.exit('ERROR_OUTPUT_MISMATCH',
                                 filename=process._DIFF, detail=f'selected frame {index} is none of the candidates')
            indices.append(match)
        if indices:
            selected = [_unlabelled(candidates[i], _metadata(candidates[i].info)) for i in indices]
            self.out('selected', TrainingSetData.from_frames(selected, species=self.node.inputs.candidates.species))
        self.out('state', self._state(process._STATE))
        summary = {key: log.get(key) for key in ('num_training', 'active_set_size', 'num_candidates')}
        summary.update({'num_selected': len(indices), 'candidate_indices': indices})
        if 'selection_limit' in log:
            summary['selection_limit'] = log['selection_limit']
        self.out('summary', orm.Dict(summary))
        return None


# ----------------------------------------------------------------------------------------- LAMMPS


class LammpsMlipExploreParser(_MlipParser):
    """``preselected.cfg*`` -> unlabelled frames + grades; exit status 8 (or mlip's "Breaking threshold exceeded"
    message) -> ``stopped_on_extrapolation``: a successful exploration that found an extrapolative configuration."""

    def parse(self, **kwargs):
        status = self.exit_status()
        process = self.node.process_class
        if status == EXIT_MLIP_INIT_FAILED:
            return self.exit('ERROR_MLIP_INIT_FAILED', detail=self._last_words())
        log_text = self._text(process._LOG)
        if log_text is None:
            return self._failure(status, process._LOG)
        log = read_lammps_log(log_text)
        messages = '\n'.join(self._text(name) or '' for name in (process._STDOUT, process._STDERR))
        break_grade = find_break_grade(messages) or log['break_grade']
        stopped = status == EXIT_EXTRAPOLATION_STOP or break_grade is not None
        if not stopped:
            if status not in (0, None):
                detail = f'; {log["errors"][-1]}' if log['errors'] else self._last_words()
                return self.exit('ERROR_NONZERO_EXIT_STATUS', status=status, detail=detail)
            if not log['completed']:
                return self.exit('ERROR_NOT_FINISHED', detail=': log.lammps ends before the run finished and no '
                                 'extrapolation stop was reported')

        parameters = check_lammps_parameters(self.node.inputs.parameters.get_dict())
        frames, grades = [], []
        names = sorted(name for name in self._names() if name.startswith(process._PRESELECTED))
        for name in names:
            found, exit_code = self._read_frames(name)
            if exit_code:
                return exit_code
            frames += found
        info = {'origin': 'mlip-preselected', 'source_uuid': self.node.uuid, 'temperature': parameters['temperature']}
        for index, frame in enumerate(frames):
            if 'mv_grade' not in frame.info:
                return self.exit('ERROR_UNREADABLE_OUTPUT',
                                 filename=process._PRESELECTED, detail=f'frame {index} has no MV_grade feature')
            grades.append(frame.info['mv_grade'])
        if stopped and not frames:
            self.logger.warning('mlip stopped on extrapolation but saved no preselected configuration')
        if frames:
            species = self.node.inputs.potential.species
            self.out('preselected', TrainingSetData.from_frames([_unlabelled(f, info) for f in frames],
                                                                species=species))
            array = orm.ArrayData()
            array.set_array('mv_grade', np.array(grades, dtype=float))
            self.out('grades', array)
        self.out('summary', orm.Dict({
            'stopped_on_extrapolation': bool(stopped),
            'exit_status': status,
            'num_preselected': len(frames),
            'max_grade': max(grades) if grades else None,
            'break_grade': break_grade if break_grade is None or np.isfinite(break_grade) else None,
            'last_step': log['last_step'],
            'completed': log['completed'],
            'preselected_files': names,
        }))
        return None
