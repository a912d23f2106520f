"""Parsers of the exploration CalcJobs (MTP and NEP): ``summary.json`` and ``candidates.xyz`` back into nodes."""

from __future__ import annotations

import json

import numpy as np
from aiida import orm

from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.extxyz import read_extxyz
from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.exploration import ERROR_MARKER
from aiida_mlcampaign.parsers.base import PluginParser

__all__ = ('ExploreParser', 'MtpExploreParser', 'NepExploreParser')


class ExploreParser(PluginParser):
    """Outputs ``statistics`` (the summary), and when there are candidates ``candidates`` (unlabelled
    ``TrainingSetData``, origin ``explore``, temperature per frame, ``source_uuid`` = this calculation)
    and ``grades`` (``ArrayData``: ``grades``, ``walkers``, ``steps``, ``temperatures``, ``seeds``,
    ``starts``, one entry per candidate in file order; for a NEP committee the grade is the force
    deviation in eV/Å)."""

    def _species(self) -> list[str]:
        """Species order of the candidates node (the potential's)."""
        return list(self.node.inputs.potential.species)

    def parse(self, **kwargs):
        process = self.node.process_class
        names = self.retrieved.base.repository.list_object_names()

        self.exit_status()
        if process._STDOUT not in names:
            return self.exit('ERROR_MISSING_STDOUT', detail=f' ({process._STDOUT})')
        stdout = self.retrieved.base.repository.get_object_content(process._STDOUT)
        errors = [line for line in stdout.splitlines() if line.startswith(ERROR_MARKER)]
        if errors:
            return self.exit('ERROR_INPUT_REFUSED', detail=errors[-1][len(ERROR_MARKER):].lstrip(': '))

        if process._SUMMARY not in names:
            last = (stdout.strip().splitlines() or ['(empty)'])[-1]
            return self.exit('ERROR_MISSING_OUTPUT_FILE', filename=process._SUMMARY,
                             detail=f' (killed or out of time?); last output line: {last}')
        try:
            summary = json.loads(self.retrieved.base.repository.get_object_content(process._SUMMARY))
            totals = summary['totals']
            walkers = summary['walkers']
            expected = int(totals['candidates'])
        except (ValueError, KeyError, TypeError) as exception:
            return self.exit('ERROR_UNREADABLE_OUTPUT', filename=process._SUMMARY, detail=str(exception))

        if process._CANDIDATES not in names:
            return self.exit('ERROR_MISSING_OUTPUT_FILE', filename=process._CANDIDATES)
        try:
            with self.retrieved.base.repository.open(process._CANDIDATES) as handle:
                frames = list(read_extxyz(handle))
        except FormatError as exception:
            return self.exit('ERROR_UNREADABLE_OUTPUT', filename=process._CANDIDATES, detail=str(exception))
        if len(frames) != expected:
            return self.exit('ERROR_OUTPUT_MISMATCH', filename=process._CANDIDATES,
                             detail=f'{len(frames)} frames, but the summary counts {expected}')

        self.out('statistics', orm.Dict(summary))
        if frames:
            species = self._species()
            columns = {key: [] for key in ('grade', 'walker', 'step', 'temperature', 'seed', 'start')}
            for index, frame in enumerate(frames):
                missing = [key for key in columns if key not in frame.info]
                if missing:
                    return self.exit('ERROR_UNREADABLE_OUTPUT', filename=process._CANDIDATES,
                                     detail=f'frame {index} lacks the info key(s) {missing}')
                for key, values in columns.items():
                    values.append(frame.info[key])
                frame.info = {'origin': 'explore', 'temperature': frame.info.get('temperature'),
                              'source_uuid': self.node.uuid}
            self.out('candidates', TrainingSetData.from_frames(frames, species=species))
            grades = orm.ArrayData()
            grades.set_array('grades', np.array(columns['grade'], dtype=float))
            for key in ('walker', 'step', 'seed', 'start'):
                grades.set_array(key + 's', np.array(columns[key], dtype=np.int64))
            grades.set_array('temperatures', np.array(columns['temperature'], dtype=float))
            self.out('grades', grades)

        if walkers and int(totals['exploded']) == len(walkers):
            return self.exit_codes.ERROR_ALL_WALKERS_EXPLODED.format(walkers=len(walkers))
        return None


class MtpExploreParser(ExploreParser):
    """Parser of ``MtpExploreCalculation`` (grades: mlip-2 extrapolation grades)."""


class NepExploreParser(ExploreParser):
    """Parser of ``NepExploreCalculation`` (grades: committee force deviations, eV/Å)."""

    def _species(self) -> list[str]:
        from aiida_mlcampaign.calculations.explore import _natural_key

        links = self.node.base.links.get_incoming(link_label_filter='potentials__%').all()
        first = min(links, key=lambda link: _natural_key(link.link_label[len('potentials__'):]))
        return list(first.node.species)
