"""The README quickstart: embedded profile, real pw.x labels and real MTP active learning on the daemon.

It shows a whole (small) campaign on a laptop: an 8-atom Cu3PS4 cell (zincblende-derived, the
smallest cell with the model case's three elements) is rattled and strained into a few structures
with provenance, labelled with pw.x by ``mlcampaign.dft.label``, then ``mlcampaign.al.loop`` fits
a moment tensor potential with motep, explores with MD while grading the extrapolation, sends the
D-optimal extrapolative frames to pw.x and retrains. DFT settings are demo-grade (Γ point, low
cutoffs) so that it finishes in minutes on 2 cores.
"""

from __future__ import annotations

import time

import click
import numpy as np

DEMO_DFT = {'kpoints_distance': 1.5}  # Γ only for the 5.35 Å cell: demo speed, not converged physics


def demo_structure():
    """Cu3PS4 on a zincblende lattice (a = 5.35 Å): Cu/P on fcc sites, S on tetrahedral sites."""
    from ase import Atoms

    a = 5.35
    fcc = [(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]
    tetra = [(0.25, 0.25, 0.25), (0.25, 0.75, 0.75), (0.75, 0.25, 0.75), (0.75, 0.75, 0.25)]
    return Atoms('Cu3PS4', scaled_positions=fcc + tetra, cell=[a, a, a], pbc=True)


def _wait(node, start: float, timeout: float, profile_name: str):
    while not node.is_terminated:
        if time.monotonic() - start > timeout:
            raise click.ClickException(f'{node.process_label}<{node.pk}> did not finish within {timeout} s')
        time.sleep(2)
    if not node.is_finished_ok:
        raise click.ClickException(f'{node.process_label}<{node.pk}> failed: exit status {node.exit_status}. '
                                   f'See: verdi -p {profile_name} process report {node.pk}')


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo('  '.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def check_options(*, count: int, mpiprocs: int, iterations: int, timeout: float = 1800.0) -> None:
    """Refuse options that could only fail later, before a profile is made or any pw.x runs.

    The active-learning part holds one labelled frame out as its test set, so it needs at least two labels.
    """
    problems = []
    for name, value, lowest in (('--count', count, 1), ('--mpiprocs', mpiprocs, 1), ('--iterations', iterations, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            problems.append(f'{name}: must be an integer >= {lowest}, got {value!r}')
    if not problems and iterations > 0 and count < 2:
        problems.append(f'--count: active learning (--iterations {iterations}) holds one labelled frame out as its '
                        f'test set and needs at least 2 structures, got {count} (or give --iterations 0)')
    if not timeout > 0:
        problems.append(f'timeout: must be positive, got {timeout!r}')
    if problems:
        raise click.UsageError('; '.join(problems))


def run_quickstart(profile_name: str = 'mlcampaign-quickstart', count: int = 4, mpiprocs: int = 2,
                   iterations: int = 2, timeout: float = 1800.0) -> int:
    from aiida import orm
    from aiida.engine import submit
    from aiida.engine.daemon.client import get_daemon_client

    from aiida_mlcampaign.calculations.structures import generate_rattled_set
    from aiida_mlcampaign.setup import profile as profile_setup
    from aiida_mlcampaign.setup.pseudos import install_pseudo_family
    from aiida_mlcampaign.workchains.dft_label import DftLabelWorkChain

    check_options(count=count, mpiprocs=mpiprocs, iterations=iterations, timeout=timeout)
    start = time.monotonic()
    profile, created = profile_setup.ensure_profile(profile_name, storage='sqlite', broker='zeromq')
    click.echo(f'profile {profile.name} ({"created" if created else "reused"}; sqlite + ZeroMQ, no services)')
    computer = profile_setup.ensure_localhost(mpiprocs=mpiprocs)
    codes = profile_setup.discover_codes(computer)
    missing = [name for name in ('pw.x', 'motep', 'mlcampaign-explore') if name not in codes]
    if 'pw.x' in missing or (iterations and missing):
        raise click.ClickException(f'not found on PATH: {missing} (apt-get install quantum-espresso; '
                                   'pip install aiida-mlcampaign)')
    family = install_pseudo_family()
    click.echo(f'pseudopotentials: {family.label} ({len(family.nodes)} elements, generated with ld1.x)')

    base = orm.StructureData(ase=demo_structure())
    rattled = generate_rattled_set(base, orm.Int(count), orm.Float(0.05), orm.Float(0.02), orm.Int(7))
    options = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': mpiprocs}, 'max_wallclock_seconds': 1800}
    builder = DftLabelWorkChain.get_builder_from_protocol(
        codes['pw.x'], dict(sorted(rattled.items())), protocol='fast', pseudo_family=family.label,
        overrides={'dft': DEMO_DFT, 'origin': 'quickstart-rattle'}, options=options,
    )
    builder.max_concurrent = orm.Int(1)

    client = get_daemon_client(profile.name)
    if not client.is_daemon_running:
        client.start_daemon(number_workers=1)
    node = submit(builder)
    click.echo(f'submitted DftLabelWorkChain<{node.pk}> to the daemon; watch it with: '
               f'verdi -p {profile.name} process list')
    _wait(node, start, timeout, profile.name)

    training_set = node.outputs.training_set
    pw_walltime = sum(
        calc.outputs.output_parameters['wall_time_seconds']
        for calc in node.called_descendants
        if calc.process_type and calc.process_type.endswith('quantumespresso.pw') and calc.is_finished_ok
    )
    natoms = training_set.get_array('natoms')
    energies = training_set.get_array('energies') / natoms
    forces = np.linalg.norm(training_set.get_array('forces'), axis=1)
    click.echo('')
    _table([
        ('frames', f'{training_set.num_frames}'),
        ('energy range (eV/atom)', f'{energies.min():.4f} .. {energies.max():.4f}'),
        ('max |force| (eV/Å)', f'{forces.max():.3f}'),
        ('pw.x wall time (s)', f'{pw_walltime:.1f}'),
        ('total wall time (s)', f'{time.monotonic() - start:.1f}'),
        ('TrainingSetData PK', f'{training_set.pk}'),
    ])
    click.echo(f'\nexport: aiida-mlcampaign data -p {profile.name} export {training_set.pk} -o train.xyz')
    if iterations:
        run_active_learning(profile.name, codes, family.label, base, training_set, builder, iterations,
                            start, timeout)
    return training_set.pk


def run_active_learning(profile_name, codes, family_label, base, labelled, label_builder, iterations, start,
                        timeout):
    """Two (or ``iterations``) MTP active-learning iterations, one frame held out as the test set."""
    from aiida import orm
    from aiida.engine import submit

    from aiida_mlcampaign.calculations.training_set import split_training_set
    from aiida_mlcampaign.data.mtp_potential import MtpPotentialData
    from aiida_mlcampaign.workchains.active_learning import ActiveLearningWorkChain

    split = split_training_set(labelled, orm.Float(0.25), orm.Int(0))
    builder = ActiveLearningWorkChain.get_builder()
    builder.training_set = split['train']
    builder.test_set = split['test']
    builder.mtp.potential = MtpPotentialData.from_template(6, ['Cu', 'P', 'S'], min_dist=1.8, max_dist=5.0)
    builder.mtp.train.code = codes['motep']
    builder.mtp.train.settings = orm.Dict({'max_iter': 300, 'seed': 1})
    builder.mtp.explore.code = codes['mlcampaign-explore']
    builder.mtp.explore.structures = {'cu3ps4': base}
    builder.mtp.explore.parameters = orm.Dict({'temperatures': [300.0, 600.0], 'seeds': [1, 2], 'steps': 200,
                                               'time_step': 1.0, 'grade_every': 10})
    for key in ('dft', 'pseudo_family', 'conv_thr_per_atom', 'max_failed_fraction', 'min_distance'):
        setattr(builder.label, key, label_builder[key])
    builder.label.max_concurrent = orm.Int(1)
    builder.label_budget = orm.Int(3)
    builder.max_iterations = orm.Int(iterations)
    node = submit(builder)
    click.echo(f'\nsubmitted ActiveLearningWorkChain<{node.pk}> (MTP level 06, motep + pw.x, {iterations} '
               f'iterations at most)')
    _wait(node, start, timeout, profile_name)

    rows = [('iteration', 'training frames', 'force RMSE train', 'force RMSE test', 'candidate fraction',
             'labels added')]
    for row in node.outputs.summary.get_list():
        rows.append((str(row['iteration']), str(row['training_frames']), _fmt(row.get('train_force_rmse')),
                     _fmt(row.get('test_force_rmse')), f"{row['candidate_fraction']:.3f}", str(row['labels_added'])))
    click.echo('')
    _table(rows)
    click.echo(f'\nstop reason: {node.outputs.stop_reason.value}')
    potential = node.outputs.potential
    click.echo(f'potential: MtpPotentialData<{potential.pk}> (verdi -p {profile_name} node repo cat {potential.pk} '
               f'{potential.filename} > pot.mtp); training set: TrainingSetData<{node.outputs.training_set.pk}>; '
               f'total wall time {time.monotonic() - start:.0f} s')


def _fmt(value) -> str:
    return '-' if value is None else f'{value:.4f} eV/Å'
