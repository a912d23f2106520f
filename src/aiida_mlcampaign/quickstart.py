"""The README quickstart: embedded profile, real pw.x labels through the daemon, a summary table.

It shows the whole DFT half of a campaign on a laptop in a few minutes: an 8-atom Cu3PS4 cell
(zincblende-derived, the smallest cell with the model case's three elements) is rattled into a few
structures with provenance, labelled with pw.x by ``mlcampaign.dft.label`` under the daemon, and the
resulting ``TrainingSetData`` is summarised and exported.
"""

from __future__ import annotations

import time

import click
import numpy as np


def demo_structure():
    """Cu3PS4 on a zincblende lattice (a = 5.35 Å): Cu/P on fcc sites, S on tetrahedral sites."""
    from ase import Atoms

    a = 5.35
    fcc = [(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]
    tetra = [(0.25, 0.25, 0.25), (0.25, 0.75, 0.75), (0.75, 0.25, 0.75), (0.75, 0.75, 0.25)]
    return Atoms('Cu3PS4', scaled_positions=fcc + tetra, cell=[a, a, a], pbc=True)


def run_quickstart(profile_name: str = 'mlcampaign-quickstart', count: int = 3, mpiprocs: int = 2,
                   timeout: float = 900.0) -> int:
    from aiida import orm
    from aiida.engine import submit
    from aiida.engine.daemon.client import get_daemon_client

    from aiida_mlcampaign.calculations.structures import generate_rattled_set
    from aiida_mlcampaign.setup import profile as profile_setup
    from aiida_mlcampaign.setup.pseudos import install_pseudo_family
    from aiida_mlcampaign.workchains.dft_label import DftLabelWorkChain

    start = time.monotonic()
    profile, created = profile_setup.ensure_profile(profile_name, storage='sqlite', broker='zeromq')
    click.echo(f'profile {profile.name} ({"created" if created else "reused"}; sqlite + ZeroMQ, no services)')
    computer = profile_setup.ensure_localhost(mpiprocs=mpiprocs)
    codes = profile_setup.discover_codes(computer)
    if 'pw.x' not in codes:
        raise click.ClickException('pw.x not found on PATH: apt-get install quantum-espresso')
    family = install_pseudo_family()
    click.echo(f'pseudopotentials: {family.label} ({len(family.nodes)} elements, generated with ld1.x)')

    base = orm.StructureData(ase=demo_structure())
    rattled = generate_rattled_set(base, orm.Int(count), orm.Float(0.05), orm.Float(0.02), orm.Int(7))
    structures = {key: node for key, node in sorted(rattled.items())}
    builder = DftLabelWorkChain.get_builder_from_protocol(
        codes['pw.x'], structures, protocol='fast', pseudo_family=family.label,
        overrides={'dft': {'kpoints_distance': 0.6}, 'origin': 'quickstart-rattle'},
        options={'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': mpiprocs},
                 'max_wallclock_seconds': 1800},
    )
    builder.max_concurrent = orm.Int(1)

    client = get_daemon_client(profile.name)
    if not client.is_daemon_running:
        client.start_daemon(number_workers=1)
    node = submit(builder)
    click.echo(f'submitted DftLabelWorkChain<{node.pk}> to the daemon; watch it with: '
               f'verdi -p {profile.name} process list')
    while not node.is_terminated:
        if time.monotonic() - start > timeout:
            raise click.ClickException(f'DftLabelWorkChain<{node.pk}> did not finish within {timeout} s')
        time.sleep(2)
    if not node.is_finished_ok:
        raise click.ClickException(f'DftLabelWorkChain<{node.pk}> failed: exit status {node.exit_status}. '
                                   f'See: verdi -p {profile.name} process report {node.pk}')

    training_set = node.outputs.training_set
    pw_walltime = sum(
        calc.outputs.output_parameters['wall_time_seconds']
        for calc in node.called_descendants
        if calc.process_type and calc.process_type.endswith('quantumespresso.pw') and calc.is_finished_ok
    )
    natoms = training_set.get_array('natoms')
    energies = training_set.get_array('energies') / natoms
    forces = np.linalg.norm(training_set.get_array('forces'), axis=1)
    rows = [
        ('frames', f'{training_set.num_frames}'),
        ('energy range (eV/atom)', f'{energies.min():.4f} .. {energies.max():.4f}'),
        ('max |force| (eV/Å)', f'{forces.max():.3f}'),
        ('pw.x wall time (s)', f'{pw_walltime:.1f}'),
        ('total wall time (s)', f'{time.monotonic() - start:.1f}'),
        ('TrainingSetData PK', f'{training_set.pk}'),
    ]
    width = max(len(name) for name, _ in rows)
    click.echo('')
    for name, value in rows:
        click.echo(f'{name:<{width}}  {value}')
    click.echo(f'\nexport: aiida-mlcampaign data -p {profile.name} export {training_set.pk} -o train.xyz')
    return training_set.pk
