"""``MtpExploreCalculation``: exploration MD with an MTP (ASE + motep) on any computer.

The CalcJob only moves data: the potential, the training set (as an mlip ``.cfg`` in the
potential's species order, for the active set), the starting structures (extended XYZ) and the
settings (JSON) go into the working directory; the driver ``mlcampaign-explore`` (console script of
this package, :mod:`aiida_mlcampaign.mtp.explore`) runs the walkers and writes ``candidates.xyz``
and ``summary.json``, which the parser ``mlcampaign.mtp.explore`` reads back. The computer needs
this package and motep installed, nothing else.
"""

from __future__ import annotations

import json

import numpy as np
from aiida import orm
from aiida.common import CalcInfo, CodeInfo
from aiida.engine import CalcJob

from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.mtp.explore import (
    CANDIDATES_FILENAME,
    SUMMARY_FILENAME,
    check_explore_settings,
)
from aiida_mlcampaign.mtp.selection import min_interatomic_distance

__all__ = ('MtpExploreCalculation',)

#: Starting structures with two atoms closer than this (Å) are refused.
MIN_START_DISTANCE = 0.5


def _validate_parameters(value, _):
    if value is None:
        return None
    try:
        check_explore_settings(value.get_dict())
    except ValueError as exception:
        message = str(exception)
        if message.startswith('settings: '):
            return 'parameters: ' + message[len('settings: '):]
        return f'parameters.{message}'
    return None


def _validate_potential(value, _):
    if value is not None and not value.is_trained:
        return 'potential: the potential has no coefficients (an untrained template); train it first'
    return None


def _structure_symbols(structure: orm.StructureData) -> list[str]:
    return [structure.get_kind(site.kind_name).symbol for site in structure.sites]


def _validate_structures(value, _):
    if not value:
        return 'structures: at least one starting structure is needed'
    for key, structure in sorted(value.items()):
        if not structure.sites:
            return f'structures.{key}: the structure has no atoms'
        kinds = [structure.get_kind(name) for name in structure.get_kind_names()]
        if any(kind.is_alloy or kind.has_vacancies for kind in kinds):
            return f'structures.{key}: alloy or vacancy kinds cannot be simulated'
        positions = np.array([site.position for site in structure.sites], dtype=float)
        try:
            distance = min_interatomic_distance(np.array(structure.cell), positions, structure.pbc)
        except ValueError as exception:
            return f'structures.{key}: {exception}'
        if distance < MIN_START_DISTANCE:
            return (f'structures.{key}: two atoms are {distance:.3f} Å apart (< {MIN_START_DISTANCE} Å); '
                    'the walker would explode at once')
    return None


def _validate_inputs(inputs, _):
    potential = inputs.get('potential')
    if potential is None:
        return None
    species = list(potential.species)
    training_set = inputs.get('training_set')
    if training_set is not None:
        extra = sorted(set(training_set.species) - set(species))
        if extra:
            return f"training_set: species {extra} are not in the potential's species {species}"
    ensemble = None
    if 'parameters' in inputs:
        ensemble = inputs['parameters'].get_dict().get('ensemble', 'nvt')
    for key, structure in sorted(inputs.get('structures', {}).items()):
        extra = sorted(set(_structure_symbols(structure)) - set(species))
        if extra:
            return f"structures.{key}: elements {extra} are not in the potential's species {species}"
        if ensemble == 'npt' and not all(structure.pbc):
            return f'structures.{key}: npt needs a structure periodic in all three directions'
    return None


class MtpExploreCalculation(CalcJob):
    """Exploration MD with an MTP: walkers = temperatures x seeds x starting structures.

    Each walker runs ASE molecular dynamics (Langevin NVT or Berendsen NPT) with the MTP and grades
    the extrapolation every ``grade_every`` steps against the active set of ``training_set``;
    frames above ``select_threshold`` become unlabelled candidates, ``break_threshold`` stops the
    walker after saving the frame, exploded walkers (close atoms, non-finite energy or forces,
    grade above ``explode_grade``) stop without saving. See
    :func:`aiida_mlcampaign.mtp.explore.check_explore_settings` for ``parameters``.
    """

    _SETTINGS = 'settings.json'
    _POTENTIAL = 'potential.mtp'
    _TRAINING = 'training.cfg'
    _STARTS = 'starts.xyz'
    _STDOUT = 'explore.out'
    _CANDIDATES = CANDIDATES_FILENAME
    _SUMMARY = SUMMARY_FILENAME

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('metadata.options.resources', valid_type=dict,
                   default={'num_machines': 1, 'num_mpiprocs_per_machine': 1},
                   help='The walkers run one after the other on one core.')
        spec.input('metadata.options.withmpi', valid_type=bool, default=False, help='Run without mpirun.')
        spec.input('metadata.options.parser_name', valid_type=str, default='mlcampaign.mtp.explore',
                   help='The parser of this CalcJob.')
        spec.input('potential', valid_type=MtpPotentialData, validator=_validate_potential,
                   help='The trained MTP that drives the MD.')
        spec.input('training_set', valid_type=TrainingSetData,
                   help='The frames the potential was trained on: their active set defines the grades '
                        '(labels are not needed).')
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                             validator=_validate_structures,
                             help='Starting structures; every one is run at every temperature with every seed.')
        spec.input('parameters', valid_type=orm.Dict, validator=_validate_parameters,
                   help='temperatures, seeds, steps, time_step, grade_every and the optional settings of '
                        'aiida_mlcampaign.mtp.explore.check_explore_settings.')
        spec.inputs.validator = _validate_inputs

        spec.output('candidates', valid_type=TrainingSetData, required=False,
                    help='Unlabelled frames above the select threshold (origin "explore", temperature set); '
                         'absent when there are none.')
        spec.output('grades', valid_type=orm.ArrayData, required=False,
                    help='Per candidate: grades, walkers, steps, temperatures, seeds, starts.')
        spec.output('statistics', valid_type=orm.Dict,
                    help='The driver summary: per-walker records and totals (candidate_fraction, exploded, ...).')
        spec.default_output_node = 'statistics'

        spec.exit_code(300, 'ERROR_MISSING_SUMMARY', message='The driver wrote no readable summary.json: {detail}')
        spec.exit_code(301, 'ERROR_MISSING_CANDIDATES',
                       message='candidates.xyz is missing or unreadable: {detail}')
        spec.exit_code(310, 'ERROR_DRIVER', message='mlcampaign-explore failed: {detail}')
        spec.exit_code(500, 'ERROR_ALL_WALKERS_EXPLODED',
                       message='Every walker exploded ({walkers} walkers): the potential or the settings '
                               '(time_step, temperatures, starting structures) are unusable.')

    def _start_keys(self) -> list[str]:
        return sorted(self.inputs.structures.keys())

    def prepare_for_submission(self, folder):
        from aiida_mlcampaign.formats.extxyz import write_extxyz
        from aiida_mlcampaign.formats.frames import Frame

        potential = self.inputs.potential
        species = list(potential.species)
        settings = check_explore_settings(self.inputs.parameters.get_dict())
        document = {**settings, 'species': species, 'potential': self._POTENTIAL, 'training': self._TRAINING,
                    'starts': self._STARTS}
        with folder.open(self._SETTINGS, 'w') as handle:
            json.dump(document, handle, indent=1)
        with folder.open(self._POTENTIAL, 'w') as handle:
            handle.write(potential.get_content())
        self.inputs.training_set.export_cfg(folder.get_abs_path(self._TRAINING), species_order=species)

        frames = []
        for key in self._start_keys():
            structure = self.inputs.structures[key]
            frames.append(Frame(
                symbols=_structure_symbols(structure), cell=np.array(structure.cell),
                positions=np.array([site.position for site in structure.sites], dtype=float),
                pbc=tuple(structure.pbc), info={'label': key},
            ))
        write_extxyz(frames, folder.get_abs_path(self._STARTS), convention='ase')

        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = [self._SETTINGS]
        codeinfo.stdout_name = self._STDOUT
        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.retrieve_list = [self._STDOUT, self._SUMMARY, self._CANDIDATES]
        return calcinfo
