"""Parser of ``mlcampaign.nep.train``: a thin layer over ``aiida_mlcampaign.formats.nep`` and ``.neppo``.

Both engines (GPUMD's ``nep``, neppo) write the same files; only their logs differ, and neppo keeps the parity
rows in ``train.xyz`` order. Whatever the engine left that can be read is attached before an exit code is
returned, most importantly ``potential`` and (GPUMD) ``restart`` after a walltime stop.
"""

from __future__ import annotations

import io

import numpy as np
from aiida import orm

from aiida_mlcampaign.calculations.nep import build_nep_in, nep_engine
from aiida_mlcampaign.data.nep_potential import NepPotentialData
from aiida_mlcampaign.formats.frames import FormatError
from aiida_mlcampaign.formats.nep import PARITY_RMSE_UNITS, parity_rmse, read_loss, read_nep_stdout, read_parity_set
from aiida_mlcampaign.formats.neppo import read_neppo_stdout
from aiida_mlcampaign.parsers.base import PluginParser

__all__ = ('NepTrainParser',)

_PARITY_KINDS = ('energy', 'force', 'virial', 'stress', 'dipole', 'polarizability')
#: Units of the parity arrays as nep writes them (doc §4.4); stress has the sign of pressure (compression > 0).
_PARITY_UNITS = {'energy': 'eV/atom', 'force': 'eV/Å', 'virial': 'eV/atom', 'stress': 'GPa, positive = compressed',
                 'dipole': 'per atom, units of the targets', 'polarizability': 'per atom, units of the targets'}


class NepTrainParser(PluginParser):
    """Reads stdout/stderr, ``loss.out``, ``nep.txt``, ``nep.restart`` and the parity files of a nep/neppo run."""

    def parse(self, **kwargs):
        self.exit_status()
        calc = self.node.process_class
        stdout_name = self.node.get_option('output_filename') or calc._STDOUT
        stdout = self._text(stdout_name)
        stderr = self._text(calc._STDERR) or ''
        self._engine = nep_engine(self.node.inputs.code) if 'code' in self.node.inputs else 'gpumd'
        if self._engine == 'neppo':
            log = read_neppo_stdout(stdout or '', stderr)
        else:
            log = read_nep_stdout((stdout or '') + '\n' + stderr)
        if log['errors']:
            error = log['errors'][0]
            where = f' ({error["file"]}, line {error["line"]})' if error.get('file') else ''
            return self.exit('ERROR_INPUT_REFUSED', detail=f'{error["kind"]}: {error["text"]}{where}')
        if stdout is None:
            return self.exit('ERROR_MISSING_STDOUT', detail=f' ({stdout_name})')

        settings = self._settings()
        prediction = bool(settings.get('prediction', 0))
        if self._engine == 'neppo':
            generation = settings.get('generation', 1)
            stages = len(generation) if isinstance(generation, list) else 1
            log['finished'] = log['prediction_finished'] if prediction else log['stages_finished'] >= stages
        exit_code = None
        parameters = {
            'engine': self._engine,
            'engine_version': log['version'],
            'mode': self._mode(prediction),
            'finished': log['finished'],
            'time_initialization_s': log['time_initialization_s'],
            'time_training_s': log['time_training_s'],
            'time_predicting_s': log['time_predicting_s'],
            'num_devices': log['num_devices'],
            'num_batches': log['num_batches'],
            'batch_size_used': log['batch_size'],
            'generations_done': log['last_generation'],
            'settings': settings,
        }
        if self._engine == 'neppo':
            parameters.update({key: log[key] for key in ('torch_version', 'device', 'cpu_threads', 'warnings')})
        else:
            parameters['gpumd_version_printed'] = log['version']

        final_loss, nan_exit = None, None
        if not prediction:
            if calc._RESTART in self._names():
                self.out('restart', orm.SinglefileData(io.BytesIO(self._bytes(calc._RESTART)), filename=calc._RESTART))
            loss, exit_code = self._loss()
            if loss is not None:
                generations = loss['data'][:, 0]
                parameters['generations_done'] = int(generations[-1])
                parameters['loss_rows'] = int(len(generations))
                final_loss = {name: _json_number(value) for name, value in zip(loss['columns'], loss['data'][-1])}
                bad = ~np.isfinite(loss['data']).all(axis=1)
                if bad.any():
                    nan_exit = self.exit('ERROR_NAN_LOSS', generation=int(generations[bad.argmax()]))
            if calc._MODEL in self._names():
                try:
                    self.out('potential', NepPotentialData(self._text(calc._MODEL), filename=calc._MODEL))
                except (FormatError, ValueError) as error:
                    exit_code = exit_code or self.exit('ERROR_UNREADABLE_OUTPUT', filename=calc._MODEL,
                                                       detail=str(error))
            else:
                exit_code = exit_code or self.exit('ERROR_MISSING_OUTPUT_FILE', filename=calc._MODEL)

        parity, errors, parity_exit = self._parity(settings, prediction)
        exit_code = exit_code or parity_exit
        parameters.update({f'parity_{split}_order': how for split, how in parity.pop('_order').items()})
        if parity:
            array = orm.ArrayData()
            for name, values in parity.items():
                array.set_array(name, values)
            array.base.attributes.set('units', {kind: unit for kind, unit in _PARITY_UNITS.items()
                                                if f'{kind}_train_prediction' in parity
                                                or f'{kind}_test_prediction' in parity})
            self.out('parity', array)
        if errors or final_loss is not None:
            self.out('errors', orm.Dict({**errors, 'final_loss': final_loss}))
        self.out('output_parameters', orm.Dict(parameters))

        if nan_exit is not None:
            return nan_exit
        if not log['finished']:
            return self.exit('ERROR_NOT_FINISHED', detail=(
                ': the last model written is the potential output, with the restart output when GPUMD\'s nep '
                'wrote one, so the run can be resumed (neppo cannot resume)'))
        if not prediction and _collapsed(parity):
            return self.exit('ERROR_COLLAPSED_MODEL')
        return exit_code

    # ------------------------------------------------------------------------------------------------ helpers
    def _settings(self) -> dict:
        """The settings nep ran with (all defaults of the version filled in), rebuilt from the inputs as written."""
        try:
            return build_nep_in(self.node.inputs)[1]
        except ValueError:  # inputs that the current validation refuses (an older or imported node)
            settings = self.node.inputs.settings.get_dict() if 'settings' in self.node.inputs else {}
            return {'prediction': int('potential' in self.node.inputs), 'batch': settings.get('batch', 1000)}

    def _mode(self, prediction: bool) -> str:
        inputs = self.node.inputs
        if prediction:
            return 'prediction'
        if 'foundation' in inputs:
            return 'fine_tune'
        return 'resume' if 'restart' in inputs else 'training'

    def _loss(self):
        name = self.node.process_class._LOSS
        if name not in self._names():
            return None, self.exit('ERROR_MISSING_OUTPUT_FILE', filename=name)
        try:
            loss = read_loss(io.StringIO(self._text(name)))
        except FormatError as error:
            return None, self.exit('ERROR_UNREADABLE_OUTPUT', filename=name, detail=str(error))
        array = orm.ArrayData()
        for column, values in zip(loss['columns'], loss['data'].T):
            array.set_array(column, values)
        array.base.attributes.set('kind', loss['kind'])
        array.base.attributes.set('columns', list(loss['columns']))
        self.out('loss', array)
        return loss, None

    def _parity(self, settings: dict, prediction: bool):
        """Parity arrays in train.xyz/test.xyz order, RMSEs, and the first problem as an exit code."""
        inputs = self.node.inputs
        arrays, errors, order, exit_code = {}, {}, {}, None
        batch = settings.get('batch', 1000)
        batch = batch[0] if isinstance(batch, list) else batch
        if self._engine == 'neppo':
            batch = None  # neppo writes the rows in train.xyz order whatever its batches
        for split, port in (('train', 'training_set'), ('test', 'test_set')):
            texts = {f'{kind}_{split}.out': self._text(f'{kind}_{split}.out') for kind in _PARITY_KINDS}
            if not any(texts.values()):
                if split == 'train' and prediction:
                    exit_code = exit_code or self.exit('ERROR_MISSING_OUTPUT_FILE', filename='energy_train.out')
                continue
            frames = inputs[port] if port in inputs else None
            frame_data = {}
            if frames is not None:
                natoms = frames.get_array('natoms')
                frame_data = {'natoms': natoms, 'energies_per_atom': frames.get_array('energies') / natoms,
                              'forces': frames.get_array('forces')}
            try:
                result = read_parity_set(texts, split, batch_size=batch, prediction=prediction, **frame_data)
            except FormatError as error:
                names = ', '.join(name for name, text in texts.items() if text)
                exit_code = exit_code or self.exit('ERROR_UNREADABLE_OUTPUT', filename=names,
                                                                                         detail=str(error))
                continue
            order[split] = result['order']
            for kind, parity in result['kinds'].items():
                arrays[f'{kind}_{split}_prediction'] = parity['prediction']
                arrays[f'{kind}_{split}_target'] = parity['target']
                rmse, used = parity_rmse(parity)
                unit = PARITY_RMSE_UNITS[kind][0]
                errors[f'rmse_{kind}_{split}_{unit}'] = None if rmse is None else _json_number(rmse)
                errors[f'rows_with_target_{kind}_{split}'] = used
        arrays['_order'] = order
        return arrays, errors, exit_code


#: Below this largest |force| (eV/Å) on every training frame a model predicts no forces at all.
_ZERO_FORCE = 1e-6


def _collapsed(parity: dict) -> bool:
    """Whether the model's forces are zero on every training atom while the labels are not.

    A fit whose neurons all saturated (e.g. too large a learning rate on little data) ends as a constant energy:
    the loss stops moving, nothing is NaN, and the potential looks fine until an MD run goes nowhere. Seen with
    neppo's default learning rate on three 2-atom frames.
    """
    predicted, target = parity.get('force_train_prediction'), parity.get('force_train_target')
    if predicted is None or target is None or not len(predicted):
        return False
    labels = np.abs(target[np.isfinite(target)])
    return bool(np.abs(predicted).max() < _ZERO_FORCE and labels.size and labels.max() > 1e3 * _ZERO_FORCE)


def _json_number(value) -> float | None:
    """Dict attributes are JSON: a NaN (diverged fit) is stored as None."""
    value = float(value)
    return value if np.isfinite(value) else None
