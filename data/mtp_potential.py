"""``MtpPotentialData``: one Moment Tensor Potential ``.mtp`` file with its species order.

The stored file is always readable by mlip-2 (``mlp``, the LAMMPS ``pair_style mlip``) and motep:
a file in motep 0.2.0's broken layout is rewritten into mlip-2's layout on the way in
(``layout_fixed`` attribute), anything else that fails :func:`check_mlip2_layout` is refused. The
``.mtp`` format has no element names, only type indices 0, 1, ...; ``species`` (element symbols in
type order) is therefore part of the node and must be given, and it must match ``species_count``.
Line endings are normalised to LF; ``checksum`` is the sha256 of the stored text.
"""

from __future__ import annotations

import math
import os
import pathlib
import typing as t

from ase.data import atomic_numbers

from aiida_mlcampaign.data.potential import PotentialData
from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.textio import read_text_input
from aiida_mlcampaign.formats.mtp import (
    MtpFile,
    check_mlip2_layout,
    format_mtp,
    initial_potential,
    level_of,
    parameter_count,
    read_mtp,
)

__all__ = ('MtpPotentialData',)

_REQUIRED_ATTRIBUTES = (
    'species', 'species_count', 'level', 'min_dist', 'max_dist', 'radial_basis_size', 'radial_funcs_count',
    'parameter_count', 'is_trained', 'scaling', 'training_errors', 'checksum', 'layout_fixed',
)


class MtpPotentialData(PotentialData):
    """An mlip-2-readable ``.mtp`` potential (trained or a template) and the elements of its types.

    Attributes: ``species`` (element symbols, type 0 first), ``species_count``, ``level`` (None
    for a non-standard basis), ``min_dist`` and ``max_dist`` (Å), ``radial_basis_size``,
    ``radial_funcs_count``, ``parameter_count``, ``is_trained``, ``scaling`` (1.0 when the file has
    none), ``training_errors`` (free dict, e.g. RMSEs from the training run), ``checksum``
    (sha256 of the stored text) and ``layout_fixed`` (True when motep's layout was rewritten).
    """

    DEFAULT_FILENAME = 'potential.mtp'
    REQUIRED_ATTRIBUTES = _REQUIRED_ATTRIBUTES

    def __init__(
        self,
        file: str | os.PathLike | t.IO | None = None,
        species: t.Sequence[str] | None = None,
        training_errors: dict | None = None,
        filename: str | None = None,
        **kwargs,
    ):
        """``file`` is a path, an open handle or the text itself (a str containing a newline)."""
        content = kwargs.pop('content', None)
        super().__init__(**kwargs)
        if file is None:
            file = content
        if file is not None:
            self.set_file(file, filename=filename, species=species, training_errors=training_errors)
        elif species is not None or training_errors is not None:
            raise ValueError('file: species and training_errors need an .mtp file, path or text')

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def from_template(
        cls,
        level,
        species: t.Sequence[str],
        min_dist: float,
        max_dist: float,
        radial_basis_size: int = 8,
        filename: str | None = None,
    ) -> MtpPotentialData:
        """An untrained potential of ``level`` for ``species`` from the shipped MIT templates."""
        species = _check_species(species)
        mtp = initial_potential(level, len(species), min_dist, max_dist, radial_basis_size)
        name = filename or f'init_L{int(level):02d}.mtp'
        return cls(format_mtp(mtp), species=species, filename=name)

    @classmethod
    def from_mtp(cls, mtp: MtpFile, species: t.Sequence[str], training_errors: dict | None = None,
                 filename: str | None = None) -> MtpPotentialData:
        """A node from an in-memory :class:`MtpFile` (written in mlip-2's layout)."""
        return cls(format_mtp(mtp), species=species, training_errors=training_errors, filename=filename)

    def set_file(self, file, filename=None, species: t.Sequence[str] | None = None,
                 training_errors: dict | None = None) -> None:
        """Validate, normalise and store ``file``; ``species`` defaults to the node's current species."""
        text, default_name = read_text_input(file, '.mtp')
        text = text.replace('\r\n', '\n').replace('\r', '\n')
        if species is None:
            species = self.base.attributes.get('species', None)
            if species is None:
                raise ValueError('species: required (element symbols in type order, e.g. ["Cu"])')
        species = _check_species(species)
        if training_errors is None:
            training_errors = self.base.attributes.get('training_errors', None) or {}
        training_errors = _clean_errors(training_errors)

        layout_fixed = False
        problems = check_mlip2_layout(text)
        if problems:
            mtp = read_mtp(text)  # raises FormatError naming the field if the content itself is broken
            if not mtp.motep_layout:
                raise FormatError('mtp: not readable by mlip-2: ' + '; '.join(problems))
            text = format_mtp(mtp)
            layout_fixed = True
            problems = check_mlip2_layout(text)
            if problems:  # pragma: no cover - the writer always produces mlip-2's layout
                raise FormatError('mtp: not readable by mlip-2 after the layout fix: ' + '; '.join(problems))
        mtp = read_mtp(text)
        if len(species) != mtp.species_count:
            raise ValueError(
                f'species: {len(species)} element(s) {species} given but the potential has '
                f'species_count = {mtp.species_count}'
            )

        self._store_text(text, filename or default_name or self.DEFAULT_FILENAME)
        attributes = {
            'species': species,
            'species_count': int(mtp.species_count),
            'level': level_of(mtp),
            'min_dist': float(mtp.min_dist),
            'max_dist': float(mtp.max_dist),
            'radial_basis_size': int(mtp.radial_basis_size),
            'radial_funcs_count': int(mtp.radial_funcs_count),
            'parameter_count': int(parameter_count(mtp)),
            'is_trained': bool(mtp.is_trained),
            'scaling': 1.0 if mtp.scaling is None else float(mtp.scaling),
            'training_errors': training_errors,
            'layout_fixed': layout_fixed,
        }
        for key, value in attributes.items():
            self.base.attributes.set(key, value)


    # ----------------------------------------------------------------------------------------- reading

    def get_mtp(self) -> MtpFile:
        """The potential as an :class:`MtpFile`."""
        return read_mtp(self.get_content())


    def to_motep(self):
        """A motep ``MTPData`` with ``species`` set to the atomic numbers (needs motep installed)."""
        import tempfile

        from motep.io.mlip.mtp import read_mtp as motep_read_mtp

        with tempfile.TemporaryDirectory() as tmp:
            path = self.write(pathlib.Path(tmp) / 'potential.mtp')
            data = motep_read_mtp(path)
        data.species = [atomic_numbers[s] for s in self.species]
        return data

    @property
    def species_count(self) -> int:
        return int(self.base.attributes.get('species_count'))

    @property
    def level(self) -> int | None:
        return self.base.attributes.get('level')

    @property
    def is_trained(self) -> bool:
        return bool(self.base.attributes.get('is_trained'))

    @property
    def parameter_count(self) -> int:
        return int(self.base.attributes.get('parameter_count'))

    @property
    def min_dist(self) -> float:
        return float(self.base.attributes.get('min_dist'))

    @property
    def max_dist(self) -> float:
        return float(self.base.attributes.get('max_dist'))

    @property
    def training_errors(self) -> dict:
        return dict(self.base.attributes.get('training_errors') or {})

    @property
    def layout_fixed(self) -> bool:
        return bool(self.base.attributes.get('layout_fixed'))




def _check_species(species) -> list[str]:
    if isinstance(species, str) or not isinstance(species, t.Sequence):
        raise ValueError(f'species: expected a list of element symbols, got {species!r}')
    species = [str(s) for s in species]
    if not species:
        raise ValueError('species: at least one element is required')
    for symbol in species:
        if symbol not in atomic_numbers or symbol == 'X':
            raise ValueError(f'species: unknown element {symbol!r}')
    duplicates = sorted({s for s in species if species.count(s) > 1})
    if duplicates:
        raise ValueError(f'species: elements listed twice: {duplicates}')
    return species


def _clean_errors(value, path: str = 'training_errors'):
    """A JSON-clean copy (numpy scalars to Python, finite numbers only)."""
    if path == 'training_errors' and not isinstance(value, dict):
        raise ValueError(f'training_errors: expected a dict, got {type(value).__name__}')
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f'{path}: keys must be strings, got {key!r}')
            cleaned[key] = _clean_errors(item, f'{path}.{key}')
        return cleaned
    if isinstance(value, (list, tuple)):
        return [_clean_errors(item, f'{path}[{k}]') for k, item in enumerate(value)]
    if hasattr(value, 'item') and callable(value.item):  # numpy scalar
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f'{path}: not a finite number ({value})')
        return float(value)
    raise ValueError(f'{path}: unsupported value {value!r} (use numbers, strings, lists or dicts)')
