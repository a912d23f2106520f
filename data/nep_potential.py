"""``NepPotentialData``: one GPUMD neuroevolution potential ``nep.txt`` with its parsed header.

The header (model tag, species in type order, ZBL, cutoffs, neighbour counts, ``n_max``, ``basis_size``,
``l_max``, neurons, descriptor size, parameter counts; see
:func:`aiida_mlcampaign.formats.nep.read_nep_header`) is stored as attributes, so potentials can be queried by
species or architecture. A file whose header is malformed, whose body holds something other than one number per
line, or whose number of body values differs from what the header implies (truncated or mixed-up files) is
refused. Line endings are normalised to LF; ``checksum`` is the sha256 of the stored text.
"""

from __future__ import annotations

import os
import typing as t

from aiida_mlcampaign.data.potential import PotentialData
from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.textio import read_text_input
from aiida_mlcampaign.formats.nep import architecture_from_header, read_nep_header

__all__ = ('NepPotentialData',)

_HEADER_KEYS = (
    'model', 'nep_version', 'model_type', 'charge_mode', 'vdw', 'zbl', 'zbl_radii', 'zbl_typewise_factor',
    'zbl_flexible', 'species', 'n_types', 'per_species_cutoffs', 'cutoffs', 'cutoff', 'max_neighbors', 'n_max',
    'basis_size', 'l_max', 'four_body', 'five_body', 'extra_four_body', 'neurons', 'dim_radial', 'dim_angular',
    'descriptor_dim', 'n_ann_parameters', 'n_descriptor_parameters', 'n_parameters', 'n_q_scalers',
    'n_zbl_parameters', 'n_header_lines', 'n_body_lines', 'expected_body_lines', 'body_matches',
    'loadable_by_gpumd_5_3_plus',
)
_REQUIRED_ATTRIBUTES = (*_HEADER_KEYS, 'checksum')


class NepPotentialData(PotentialData):
    """A GPUMD ``nep.txt`` (NEP3/NEP4/NEP5 potential, qNEP, dipole, polarizability or temperature model).

    Attributes: every key of :func:`~aiida_mlcampaign.formats.nep.read_nep_header` (``model``, ``species``,
    ``cutoff``, ``n_max``, ``basis_size``, ``l_max``, ``neurons``, ``n_parameters``, ``body_matches`` ...) and
    ``checksum`` (sha256 of the stored text). ``body_matches`` is True, or None for the experimental ``_vdw``
    models whose body layout is not documented.
    """

    DEFAULT_FILENAME = 'nep.txt'
    REQUIRED_ATTRIBUTES = _REQUIRED_ATTRIBUTES

    def __init__(self, file: str | os.PathLike | t.IO | None = None, filename: str | None = None, **kwargs):
        """``file`` is a path, an open handle, bytes or the text itself (a str containing a newline)."""
        content = kwargs.pop('content', None)
        super().__init__(**kwargs)
        if file is None:
            file = content
        if file is not None:
            self.set_file(file, filename=filename)

    def set_file(self, file, filename: str | None = None, **kwargs) -> None:
        """Validate and store ``file``; raises :class:`FormatError` naming the field or line if it is malformed."""
        text, default_name = read_text_input(file, 'nep.txt')
        text = text.replace('\r\n', '\n').replace('\r', '\n')
        header = read_nep_header(text)
        if header['body_matches'] is False:
            raise FormatError(
                f'nep.txt: parameters: the header ({header["model"]}, {header["n_types"]} types, descriptor '
                f'dimension {header["descriptor_dim"]}) implies {header["expected_body_lines"]} numbers after the '
                f'{header["n_header_lines"]} header lines ({header["n_parameters"]} parameters + '
                f'{header["n_q_scalers"]} q_scalers' + (f' + {header["n_zbl_parameters"]} ZBL' if
                                                         header['n_zbl_parameters'] else '')
                + f'), the file has {header["n_body_lines"]}'
            )
        self._store_text(text, filename or default_name or self.DEFAULT_FILENAME)
        for key in _HEADER_KEYS:
            self.base.attributes.set(key, header[key])


    # ----------------------------------------------------------------------------------------- reading

    def get_header(self) -> dict:
        """The parsed header (from the attributes)."""
        return {key: self.base.attributes.get(key) for key in _HEADER_KEYS}

    def get_architecture(self) -> dict:
        """The ``nep.in`` architecture keywords of this model (for ``prediction``/``fine_tune``/restarts)."""
        return architecture_from_header(self.get_header())


    @property
    def model(self) -> str:
        return self.base.attributes.get('model')

    @property
    def nep_version(self) -> int:
        return int(self.base.attributes.get('nep_version'))

    @property
    def model_type(self) -> str:
        return self.base.attributes.get('model_type')

    @property
    def cutoff(self) -> list[float]:
        return list(self.base.attributes.get('cutoff'))

    @property
    def n_parameters(self) -> int | None:
        return self.base.attributes.get('n_parameters')



