"""Parsers of the motep CalcJobs: thin layers over ``aiida_mlcampaign.formats.motep`` and ``.mlip_cfg``."""

from __future__ import annotations

from aiida import orm

from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.mlip_cfg import read_cfg
from aiida_mlcampaign.formats.motep import optimiser_iterations, read_motep_log
from aiida_mlcampaign.parsers.base import PluginParser


class _MotepParser(PluginParser):
    def _log(self):
        self.exit_status()
        text = self._text(self.node.process_class._STDOUT)
        if text is None:
            return None, self.exit('ERROR_MISSING_STDOUT')
        try:
            log = read_motep_log(text)
        except ValueError as exception:
            return None, self.exit('ERROR_UNREADABLE_STDOUT', detail=f'no error table: {exception}')
        # motep prints nan for a quantity the frames lack (stresses of molecules or of frames without a stress):
        # the database stores no NaN, so such an error is None, 'not measured'
        log['errors'] = {key: _finite(value) for key, value in log['errors'].items()}
        return log, None


def _finite(value):
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


class MotepTrainParser(_MotepParser):
    """Reads ``final.mtp`` (repairing motep 0.2.0's layout) and the last error table of the log."""

    def parse(self, **kwargs):
        log, exit_code = self._log()
        if exit_code:
            return exit_code
        self.out('training_errors', orm.Dict(log['errors']))
        final = self.node.process_class._FINAL
        if final not in self.retrieved.base.repository.list_object_names():
            return self.exit('ERROR_MISSING_OUTPUT_FILE', filename=final)
        try:
            potential = MtpPotentialData(
                self.retrieved.base.repository.get_object_content(final),
                species=self.node.inputs.potential.species, training_errors=log['errors'], filename='trained.mtp',
            )
        except (FormatError, ValueError) as exception:
            return self.exit('ERROR_BAD_POTENTIAL_FILE', detail=str(exception))
        if not potential.is_trained:
            return self.exit('ERROR_BAD_POTENTIAL_FILE', detail='the file holds no coefficients')
        self.out('potential', potential)
        iterations = optimiser_iterations(log)
        if iterations and iterations[1] is not None and iterations[0] >= iterations[1]:
            return self.exit('ERROR_NOT_CONVERGED', max_iter=iterations[1])
        return None


class MotepEvaluateParser(_MotepParser):
    """Reads the predictions cfg into a ``TrainingSetData`` with the MTP's labels."""

    def parse(self, **kwargs):
        log, exit_code = self._log()
        if exit_code is None and log is not None:
            self.out('errors', orm.Dict(log['errors']))
        elif exit_code is not None and exit_code.status == self.exit_codes.ERROR_MISSING_STDOUT.status:
            return exit_code  # an unreadable error table is no reason to drop the predictions
        name = self.node.process_class._PREDICTIONS
        if name not in self.retrieved.base.repository.list_object_names():
            return self.exit('ERROR_MISSING_OUTPUT_FILE', filename=name)
        reference = self.node.inputs.frames
        # motep writes the predictions with its own type numbering, not the potential's: types in the order the
        # elements first appear in the frames (motep.io.mlip.cfg._get_species). Read them back in that order.
        species = []
        for frame in reference.iter_frames():
            species.extend(symbol for symbol in dict.fromkeys(frame.symbols) if symbol not in species)
        with self.retrieved.base.repository.open(name) as handle:
            frames = list(read_cfg(handle, species))
        for frame, info in zip(frames, reference.iter_frames()):
            frame.info = {key: value for key, value in info.info.items() if key in ('source_uuid', 'origin')}
        self.out('predictions', TrainingSetData.from_frames(frames, species=reference.species))
        return None
