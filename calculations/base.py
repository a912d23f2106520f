"""The one base of this plugin's CalcJobs: option defaults, one exit-code table, the executable's exit status.

Why one base: a handler, a test or a user reading ``verdi process list`` should find the same number meaning the
same thing on every CalcJob here (as aiida-quantumespresso's calculations share one table):

* 300s: an output is missing or cannot be read (the run did not do what it should; the outputs are not cached);
* 310s: the executable refused its input or failed with a non-zero exit status;
* 400s: recoverable, the run stopped early (walltime, node failure) and what it wrote is attached for a restart,
  or an optimiser hit its iteration limit;
* 500s: scientific failures, declared by each CalcJob (an MD that blew up, a loss that diverged...).

Scheduler failures keep aiida-core's own codes and labels (``ERROR_SCHEDULER_OUT_OF_WALLTIME``, 120...): a parser
passes them on by label and never redefines them. Options get their defaults with ``.default`` on aiida-core's
own ports (as aiida-shell does), so the ports keep aiida-core's types and help. The job script writes the
executable's exit status to :data:`EXIT_STATUS_FILE` right after the run line; the parsers' base
(:class:`aiida_mlcampaign.parsers.base.PluginParser`) reads it back as the ``exit_status`` output.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import CalcInfo, CodeInfo
from aiida.engine import CalcJob

__all__ = ('EXIT_CODES', 'EXIT_STATUS_FILE', 'EXIT_STATUS_LINE', 'PluginCalcJob')

#: Written by the line appended after the run line; holds the executable's exit status.
EXIT_STATUS_FILE = 'exit_status.txt'
EXIT_STATUS_LINE = f'echo $? > {EXIT_STATUS_FILE}'

#: The shared table: (status, label, message, whether a finished node with it must not be reused by caching).
#: Every placeholder is filled by ``PluginParser.exit`` ('' where the parser has nothing to say).
EXIT_CODES = (
    (300, 'ERROR_MISSING_STDOUT', 'The executable wrote no standard output{detail}.', True),
    (301, 'ERROR_MISSING_OUTPUT_FILE', 'The run did not write {filename}{detail}.', True),
    (302, 'ERROR_UNREADABLE_OUTPUT', '{filename} cannot be read: {detail}', True),
    (303, 'ERROR_UNREADABLE_STDOUT', 'The standard output is incomplete or unreadable: {detail}', True),
    (304, 'ERROR_OUTPUT_MISMATCH', '{filename} does not match the inputs: {detail}', True),
    (305, 'ERROR_BAD_POTENTIAL_FILE', 'The potential the executable wrote is not usable: {detail}', True),
    (310, 'ERROR_INPUT_REFUSED', 'The executable refused its input: {detail}', True),
    (311, 'ERROR_NONZERO_EXIT_STATUS', 'The executable exited with status {status}{detail}.', True),
    (400, 'ERROR_NOT_FINISHED', 'The run stopped before its end (walltime, node failure or a kill); what it wrote '
                                'is attached{detail}.', True),
    (410, 'ERROR_NOT_CONVERGED', 'The optimiser used all {max_iter} iterations; the result is attached but not '
                                 'converged.', False),
)


class PluginCalcJob(CalcJob):
    """Serial defaults, the shared exit codes, the ``exit_status`` output and a one-code ``CalcInfo``.

    Subclasses set :attr:`_DEFAULT_PARSER`, :attr:`_STDOUT` (and :attr:`_STDERR`), declare their 500s, and build
    their ``CalcInfo`` with :meth:`_calcinfo`.
    """

    _DEFAULT_PARSER: str | None = None
    _DEFAULT_RESOURCES = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
    _STDOUT = 'aiida.out'
    _STDERR: str | None = None

    @classmethod
    def define(cls, spec):
        super().define(spec)
        options = spec.inputs['metadata']['options']
        options['resources'].default = dict(cls._DEFAULT_RESOURCES)
        options['resources'].required = False  # what plumpy does for a port declared with a default
        options['withmpi'].default = False
        if cls._DEFAULT_PARSER:
            options['parser_name'].default = cls._DEFAULT_PARSER
        spec.output('exit_status', valid_type=orm.Int, required=False,
                    help='Exit status of the executable, as the job script recorded it right after the run line.')
        for status, label, message, invalidates_cache in EXIT_CODES:
            spec.exit_code(status, label, message=message, invalidates_cache=invalidates_cache)

    def _calcinfo(self, arguments: list[str], retrieve: list[str], stdout: str | None = None) -> CalcInfo:
        """One run of the code with ``arguments``, stdout/stderr redirected, its exit status recorded right after
        the run line (``metadata.options.append_text`` would come first), and ``retrieve`` brought back."""
        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = list(arguments)
        codeinfo.stdout_name = stdout or self._STDOUT
        if self._STDERR:
            codeinfo.stderr_name = self._STDERR
        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.append_text = EXIT_STATUS_LINE
        names = [codeinfo.stdout_name, *([self._STDERR] if self._STDERR else []), EXIT_STATUS_FILE, *retrieve]
        calcinfo.retrieve_list = list(dict.fromkeys(names))
        return calcinfo
