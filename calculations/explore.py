"""Exploration MD CalcJobs: ``MtpExploreCalculation`` (ASE + motep) and ``NepExploreCalculation`` (ASE + calorine).

The CalcJobs only move data: the potential(s), for the MTP the training set (as an mlip ``.cfg`` in the
potential's species order, for the active set), the starting structures (extended XYZ) and the
settings (JSON) go into the working directory; the driver ``mlcampaign-explore`` (console script of
this package, :mod:`aiida_mlcampaign.exploration`) runs the walkers and writes ``candidates.xyz``
and ``summary.json``, which the parsers ``mlcampaign.mtp.explore`` / ``mlcampaign.nep.explore`` read back.
The computer needs this package (with motep for the MTP, calorine for the NEP), nothing else. Both share
:class:`ExploreCalculation`; only the potential inputs and the ``family`` key of the settings differ.
"""

from __future__ import annotations

import json
import re

import numpy as np
from aiida import orm

from aiida_mlcampaign.calculations.base import PluginCalcJob
from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.exploration import (
    CANDIDATES_FILENAME,
    SUMMARY_FILENAME,
    check_explore_settings,
)
from aiida_mlcampaign.mtp.selection import min_interatomic_distance

__all__ = ('ExploreCalculation', 'MtpExploreCalculation', 'NepExploreCalculation')

#: Starting structures with two atoms closer than this (Å) are refused.
MIN_START_DISTANCE = 0.5


def _parameters_validator(family: str):
    """Validator of ``parameters`` for one family: the CalcJob sets ``family`` itself, a different one is refused."""

    def validator(value, _):
        if value is None:
            return None
        settings = value.get_dict()
        given = settings.get('family', 'mtp' if family == 'mtp' else None)
        if given is not None and given != family:
            return f'parameters.family: this calculation explores with family {family!r}, got {given!r}'
        try:
            check_explore_settings({**settings, 'family': family} if family != 'mtp' else settings)
        except ValueError as exception:
            message = str(exception)
            if message.startswith('settings: '):
                return 'parameters: ' + message[len('settings: '):]
            return f'parameters.{message}'
        return None

    return validator


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


def _check_starts(inputs, species: list[str], what: str, periodic_reason: str | None = None) -> str | None:
    """Starting structures against the potential's species; npt (and nep_cpu) need fully periodic cells."""
    ensemble = None
    if 'parameters' in inputs:
        ensemble = inputs['parameters'].get_dict().get('ensemble', 'nvt')
    for key, structure in sorted(inputs.get('structures', {}).items()):
        extra = sorted(set(_structure_symbols(structure)) - set(species))
        if extra:
            return f"structures.{key}: elements {extra} are not in the {what} species {species}"
        if ensemble == 'npt' and not all(structure.pbc):
            return f'structures.{key}: npt needs a structure periodic in all three directions'
        if periodic_reason and not all(structure.pbc):
            return f'structures.{key}: {periodic_reason}'
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
    return _check_starts(inputs, species, "potential's")


def _natural_key(key: str):
    """``member_2`` before ``member_10``: the committee's order follows the numbers in the keys."""
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', key)]


def _validate_committee(value, _):
    if not value:
        return 'potentials: a committee of at least 2 NEPs is needed'
    keys = sorted(value, key=_natural_key)
    if len(keys) < 2:
        return f'potentials: a committee needs at least 2 NEPs to measure a deviation, got {len(keys)}'
    first = value[keys[0]]
    for key in keys:
        potential = value[key]
        if potential.model_type != 'potential':
            return f'potentials.{key}: a {potential.model_type} model predicts no forces; an energy model is needed'
        if potential.base.attributes.get('body_matches') is False:
            return f'potentials.{key}: the parameter count does not match the header'
        if potential.species != first.species:
            return (f'potentials.{key}: species {potential.species} differ from potentials.{keys[0]} '
                    f'{first.species}; every member needs the same species in the same order')
    return None


def _validate_nep_inputs(inputs, _):
    potentials = inputs.get('potentials')
    if not potentials:
        return None
    species = list(potentials[sorted(potentials, key=_natural_key)[0]].species)
    return _check_starts(inputs, species, "potentials'",
                         'nep_cpu treats every cell as periodic; the structure must be periodic in all three '
                         'directions')


class ExploreCalculation(PluginCalcJob):
    """Exploration MD: walkers = temperatures x seeds x starting structures (shared by both families).

    Each walker runs ASE molecular dynamics (Langevin NVT or Berendsen NPT) and grades the frame every
    ``grade_every`` steps; frames above ``select_threshold`` become unlabelled candidates,
    ``break_threshold`` stops the walker after saving the frame, exploded walkers (close atoms,
    non-finite energy or forces, grade above ``explode_grade``) stop without saving. See
    :func:`aiida_mlcampaign.exploration.check_explore_settings` for ``parameters``. Subclasses add the
    potential inputs and write them (:meth:`_write_potentials`). The walkers run one after the other on one core.
    """

    _FAMILY = 'mtp'
    _DEFAULT_PARSER = 'mlcampaign.mtp.explore'
    _SETTINGS = 'settings.json'
    _STARTS = 'starts.xyz'
    _STDOUT = 'explore.out'
    _CANDIDATES = CANDIDATES_FILENAME
    _SUMMARY = SUMMARY_FILENAME
    _PARAMETERS_HELP = ''

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                             validator=_validate_structures,
                             help='Starting structures; every one is run at every temperature with every seed.')
        spec.input('parameters', valid_type=orm.Dict, validator=_parameters_validator(cls._FAMILY),
                   help='temperatures, seeds, steps, time_step, grade_every and the optional settings of '
                        'aiida_mlcampaign.exploration.check_explore_settings.' + cls._PARAMETERS_HELP)

        spec.output('candidates', valid_type=TrainingSetData, required=False,
                    help='Unlabelled frames above the select threshold (origin "explore", temperature set); '
                         'absent when there are none.')
        spec.output('grades', valid_type=orm.ArrayData, required=False,
                    help='Per candidate: grades, walkers, steps, temperatures, seeds, starts.')
        spec.output('statistics', valid_type=orm.Dict,
                    help='The driver summary: per-walker records and totals (candidate_fraction, exploded, ...).')
        spec.default_output_node = 'statistics'

        spec.exit_code(500, 'ERROR_ALL_WALKERS_EXPLODED',
                       message='Every walker exploded ({walkers} walkers): the potential or the settings '
                               '(time_step, temperatures, starting structures) are unusable.')

    def _start_keys(self) -> list[str]:
        return sorted(self.inputs.structures.keys())

    def _write_potentials(self, folder) -> dict:
        """Write the potential files; return the settings entries that name them (and ``species``)."""
        raise NotImplementedError

    def prepare_for_submission(self, folder):
        from aiida_mlcampaign.formats.extxyz import write_extxyz
        from aiida_mlcampaign.formats.frames import Frame

        settings = self.inputs.parameters.get_dict()
        if self._FAMILY != 'mtp':
            settings['family'] = self._FAMILY
        settings = check_explore_settings(settings)
        document = {**settings, **self._write_potentials(folder), 'starts': self._STARTS}
        with folder.open(self._SETTINGS, 'w') as handle:
            json.dump(document, handle, indent=1)

        frames = []
        for key in self._start_keys():
            structure = self.inputs.structures[key]
            frames.append(Frame(
                symbols=_structure_symbols(structure), cell=np.array(structure.cell),
                positions=np.array([site.position for site in structure.sites], dtype=float),
                pbc=tuple(structure.pbc), info={'label': key},
            ))
        write_extxyz(frames, folder.get_abs_path(self._STARTS), convention='ase')

        return self._calcinfo([self._SETTINGS], [self._SUMMARY, self._CANDIDATES])


class MtpExploreCalculation(ExploreCalculation):
    """Exploration MD with an MTP: walkers = temperatures x seeds x starting structures.

    The grade is mlip-2's extrapolation grade against the active set of ``training_set``; frames with
    ``grade > select_threshold`` are candidates, ``grade > break_threshold`` stops the walker.
    """

    _FAMILY = 'mtp'
    _DEFAULT_PARSER = 'mlcampaign.mtp.explore'
    _POTENTIAL = 'potential.mtp'
    _TRAINING = 'training.cfg'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('potential', valid_type=MtpPotentialData, validator=_validate_potential,
                   help='The trained MTP that drives the MD.')
        spec.input('training_set', valid_type=TrainingSetData,
                   help='The frames the potential was trained on: their active set defines the grades '
                        '(labels are not needed).')
        spec.inputs.validator = _validate_inputs

    def _write_potentials(self, folder) -> dict:
        potential = self.inputs.potential
        species = list(potential.species)
        with folder.open(self._POTENTIAL, 'w') as handle:
            handle.write(potential.get_content())
        self.inputs.training_set.export_cfg(folder.get_abs_path(self._TRAINING), species_order=species)
        return {'species': species, 'potential': self._POTENTIAL, 'training': self._TRAINING}


class NepExploreCalculation(ExploreCalculation):
    """Exploration MD with a NEP committee: the first member drives the MD (calorine's CPUNEP), the grade is
    the committee's largest per-atom force deviation (eV/Å).

    ``select_threshold`` and ``break_threshold`` are the trust window ``[lower, upper)``: frames with
    ``lower <= deviation`` are candidates, ``deviation >= upper`` is saved and stops the walker (defaults
    0.1 and 0.5 eV/Å). The members are ordered by their keys with numbers compared as numbers
    (``member_2`` before ``member_10``); the first one drives the MD.
    """

    _FAMILY = 'nep'
    _DEFAULT_PARSER = 'mlcampaign.nep.explore'
    _PARAMETERS_HELP = (' Here select_threshold/break_threshold are the trust window of the committee force '
                        'deviation in eV/Å (defaults 0.1/0.5); family is set to nep; engine does not apply.')

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace('potentials', valid_type=NepPotentialData, dynamic=True, validator=_validate_committee,
                             help='The committee: at least 2 NEP energy models with the same species in the same '
                                  'order; the first key (natural order) drives the MD.')
        spec.inputs.validator = _validate_nep_inputs

    def _members(self) -> list[str]:
        return sorted(self.inputs.potentials.keys(), key=_natural_key)

    def _write_potentials(self, folder) -> dict:
        names = []
        for number, key in enumerate(self._members()):
            name = f'potential_{number}.txt'
            with folder.open(name, 'wb') as handle:
                handle.write(self.inputs.potentials[key].get_content(mode='rb'))
            names.append(name)
        species = list(self.inputs.potentials[self._members()[0]].species)
        return {'species': species, 'potentials': names}
