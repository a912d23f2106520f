"""``PotentialData``: what the plugin's potential nodes share (one text file, its species, a checksum).

Why a base: the MTP and NEP node types (and any later family) must be interchangeable where the active-learning
loop, the exploration driver and the analysis only need "a potential for these elements": the same ``species``,
``checksum``, ``write`` and the same refusal of a stored file changed after it was validated. Subclasses parse and
validate their format in ``set_file`` and list the attributes that must then be set in ``REQUIRED_ATTRIBUTES``.
"""

from __future__ import annotations

import hashlib
import io
import pathlib

from aiida import orm
from aiida.common.exceptions import ValidationError

__all__ = ('PotentialData',)


class PotentialData(orm.SinglefileData):
    """A potential stored as one text file: ``species`` (element symbols in type order) and ``checksum`` (sha256
    of the stored text, line endings normalised to LF) are attributes of every subclass."""

    #: Attributes ``set_file`` must have set before the node may be stored (``species`` and ``checksum`` always).
    REQUIRED_ATTRIBUTES: tuple[str, ...] = ('species', 'checksum')

    def _store_text(self, text: str, filename: str) -> bytes:
        """Store ``text`` (LF line endings) as the file and set ``checksum``; returns the stored bytes."""
        data = text.encode('utf-8')
        orm.SinglefileData.set_file(self, io.BytesIO(data), filename=filename)
        self.base.attributes.set('checksum', hashlib.sha256(data).hexdigest())
        return data

    def _validate(self):
        super()._validate()
        attributes = self.base.attributes.all
        missing = [key for key in self.REQUIRED_ATTRIBUTES if key not in attributes]
        if missing:
            raise ValidationError(f'{type(self).__name__}: attributes {missing} are not set; build it with set_file()')
        if hashlib.sha256(self.get_content(mode='rb')).hexdigest() != self.base.attributes.get('checksum'):
            raise ValidationError('checksum: the stored file was changed after set_file()')

    def write(self, path) -> pathlib.Path:
        """Write the stored text byte for byte to ``path`` (a file name or an existing directory)."""
        path = pathlib.Path(path)
        if path.is_dir():
            path = path / self.filename
        path.write_bytes(self.get_content(mode='rb'))
        return path

    @property
    def species(self) -> list[str]:
        """Element symbols in type order (type 0 first)."""
        return list(self.base.attributes.get('species'))

    @property
    def checksum(self) -> str:
        """sha256 of the stored text."""
        return self.base.attributes.get('checksum')
