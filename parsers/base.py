"""The base of this plugin's parsers: retrieved-file access, the executable's exit status, exit codes by label.

Paired with :class:`aiida_mlcampaign.calculations.base.PluginCalcJob`: the parsers stay thin layers over the
pure readers in ``aiida_mlcampaign.formats`` and return exit codes of the shared table by label with
:meth:`PluginParser.exit`, which fills every placeholder the parser has nothing for with ''.
"""

from __future__ import annotations

import string

from aiida import orm
from aiida.common.exceptions import NotExistent
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_mlcampaign.calculations.base import EXIT_STATUS_FILE

__all__ = ('PluginParser',)


class PluginParser(Parser):
    """Helpers every parser here uses; ``parse`` is the subclass's."""

    def exit(self, label: str, **fields) -> ExitCode:
        """The exit code ``label`` (the shared table's, the CalcJob's own or aiida-core's), its message filled."""
        code = getattr(self.exit_codes, label)
        names = {name for _, name, _, _ in string.Formatter().parse(code.message or '') if name}
        if not names:
            return code
        return code.format(**{**dict.fromkeys(names, ''), **fields})

    def _names(self) -> set[str]:
        try:
            return set(self.retrieved.base.repository.list_object_names())
        except NotExistent:
            return set()

    def _has(self, name: str) -> bool:
        return name in self._names()

    def _bytes(self, name: str) -> bytes:
        return self.retrieved.base.repository.get_object_content(name, mode='rb')

    def _text(self, name: str) -> str | None:
        """A retrieved text file, None when it is absent (undecodable bytes replaced)."""
        if not self._has(name):
            return None
        return self._bytes(name).decode('utf-8', errors='replace')

    def exit_status(self) -> int | None:
        """The executable's exit status from the job script (also the ``exit_status`` output); None when it was
        not recorded, or when a user ``append_text`` ran between the executable and the capture."""
        text = self._text(EXIT_STATUS_FILE)
        if text is None or self.node.get_option('append_text'):
            return None
        try:
            status = int(text.strip())
        except ValueError:
            return None
        self.out('exit_status', orm.Int(status))
        return status
