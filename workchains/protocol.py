"""Protocols of this plugin's work chains: aiida-quantumespresso's ``ProtocolMixin`` on the YAML files in
``workchains/protocols/`` (``<_protocol_name>.yaml``: ``default_inputs``, ``default_protocol``, ``protocols``)."""

from __future__ import annotations

import pathlib
from importlib.resources import files

from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin

__all__ = ('PluginProtocolMixin',)


class PluginProtocolMixin(ProtocolMixin):
    """``get_protocol_inputs(protocol, overrides)`` and friends from ``protocols/<_protocol_name>.yaml``."""

    _protocol_name: str = ''

    @classmethod
    def check_overrides(cls, protocol: str | None, overrides: dict | None, where: str, extra=()) -> None:
        """Refuse an override key the protocol does not have (a typo would otherwise be ignored without a word):
        ``where`` names the overrides in the message; ``extra`` are keys the builder reads besides the file's."""
        known = set(cls.get_protocol_inputs(protocol)) | set(extra)
        unknown = sorted(set(overrides or {}) - known)
        if unknown:
            raise ValueError(f'{where}: unknown key(s) {unknown}; the protocol has {sorted(known)}')

    @classmethod
    def get_protocol_filepath(cls) -> pathlib.Path:
        if not cls._protocol_name:
            raise NotImplementedError(f'{cls.__name__}: has no protocol file')
        return pathlib.Path(str(files('aiida_mlcampaign.workchains') / 'protocols' / f'{cls._protocol_name}.yaml'))
