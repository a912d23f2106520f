"""GPU options shared by the CalcJobs of GPUMD's executables (``gpumd``, ``nep``), both run by SLURM on GPU nodes.

``gpus`` adds ``#SBATCH --gpus-per-node=<n>`` (``--gres=gpu:<n>`` with ``metadata.options.gres_syntax``) to the job
script header; ``metadata.options.cuda_visible_devices`` exports ``CUDA_VISIBLE_DEVICES`` after the computer's
prepend text (so it wins over a computer-wide default). Both executables use every GPU they see. Requests that SLURM
would silently ignore or override are refused before submission (:func:`validate_gpu_options`, called by each
CalcJob's inputs validator). See ``docs/gpu-clusters.md``.
"""

from __future__ import annotations

import re

from aiida import orm
from aiida.common import CalcInfo

from aiida_mlcampaign.calculations.base import PluginCalcJob
from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.slurm import find_gpu_requests, gpu_directive

__all__ = ('GpuCalcJob', 'validate_gpu_options')

_DEVICES = re.compile(r'^\d+(,\d+)*$')


def _validate_gpus(value, _):
    if value is None:
        return None
    try:
        gpu_directive(value.value)
    except FormatError as exception:
        return str(exception)


def validate_gpu_options(inputs) -> str | None:
    """The GPU part of an inputs validator: a message naming the field, or None."""
    options = inputs.get('metadata', {}).get('options', {})
    try:
        custom = find_gpu_requests(options.get('custom_scheduler_commands'))
    except FormatError as exception:
        return f'metadata.options.custom_scheduler_commands: {exception}'
    computer_requests = []
    code = inputs.get('code')
    computer = getattr(code, 'computer', None)
    if computer is not None:
        try:
            computer_requests = find_gpu_requests(computer.get_prepend_text())
        except FormatError as exception:
            return f'code: computer {computer.label} prepend_text: {exception}'
        sbatch = any(line.strip().startswith('#SBATCH') for line in computer.get_prepend_text().splitlines())
        if options.get('environment_variables') and sbatch:
            return ('metadata.options.environment_variables: aiida-core writes these exports before the computer\'s '
                    f'prepend_text, so SLURM would ignore the #SBATCH lines of computer {computer.label} (partition, '
                    'GPUs); export them in the code\'s prepend_text instead (docs/gpu-clusters.md)')
    if 'gpus' in inputs:
        if custom:
            return (f'gpus: metadata.options.custom_scheduler_commands already requests GPUs ({custom[0]["line"]!r}); '
                    'give one of the two')
        if computer_requests:
            return (f'gpus: computer {computer.label} requests GPUs in its prepend_text '
                    f'({computer_requests[0]["line"]!r}), which comes later in the job script and would override '
                    'this request; use a computer without a GPU line for per-job GPU counts (docs/gpu-clusters.md)')
    devices = options.get('cuda_visible_devices')
    if devices is not None:
        if not _DEVICES.match(str(devices)):
            return (f'metadata.options.cuda_visible_devices: expected comma-separated GPU indices like "0" or '
                    f'"0,1", got {devices!r}')
        count = len(str(devices).split(','))
        requested = inputs['gpus'].value if 'gpus' in inputs else (custom or computer_requests or [{}])[0].get('gpus')
        if requested is not None and count > requested:
            return (f'metadata.options.cuda_visible_devices: {count} devices ({devices}) but only {requested} GPU(s) '
                    'requested')
    return None


class GpuCalcJob(PluginCalcJob):
    """A CalcJob whose executable runs on the GPUs of one SLURM node: the ``gpus`` input and the GPU options.

    One process on one machine by default: GPUMD's executables use every GPU they see and are not MPI programs.

    Subclasses call :func:`validate_gpu_options` from their inputs validator (a spec has one) and
    :meth:`_export_visible_devices` on their ``CalcInfo``.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('metadata.options.gres_syntax', valid_type=bool, default=False,
                   help='With gpus: request them as "#SBATCH --gres=gpu:<n>" instead of "--gpus-per-node=<n>" (for '
                        'SLURM sites that only configure generic resources).')
        spec.input('metadata.options.cuda_visible_devices', valid_type=str, required=False,
                   help='Export CUDA_VISIBLE_DEVICES=<this> (e.g. "0,1") before the executable; only when asked, '
                        'because SLURM sets it for the GPUs it allocated.')
        spec.input('gpus', valid_type=orm.Int, required=False, validator=_validate_gpus,
                   help='GPUs per node: adds "#SBATCH --gpus-per-node=<n>" (or --gres=gpu:<n>) to the job script.')

    def _setup_metadata(self, metadata: dict) -> None:
        """Add the ``gpus`` request to ``custom_scheduler_commands`` while the node's options can still change.

        The scheduler header is built from the node's options after ``prepare_for_submission``, when the stored node
        no longer accepts new options; doing it here also records the exact directive on the node.
        """
        super()._setup_metadata(metadata)
        if 'gpus' in self.inputs:
            line = gpu_directive(self.inputs.gpus.value, gres_syntax=bool(self.node.get_option('gres_syntax')))
            custom = (self.node.get_option('custom_scheduler_commands') or '').rstrip('\n')
            self.node.set_option('custom_scheduler_commands', f'{custom}\n{line}' if custom else line)

    def _export_visible_devices(self, calcinfo: CalcInfo) -> CalcInfo:
        """Put the ``CUDA_VISIBLE_DEVICES`` export in the CalcJob's prepend text (after the computer's and code's)."""
        devices = self.node.get_option('cuda_visible_devices')
        if devices:
            calcinfo.prepend_text = f'export CUDA_VISIBLE_DEVICES={devices}'
        return calcinfo
