"""``aiida-mlcampaign data`` and ``verdi data mlcampaign``: export, import and inspect training sets."""

from __future__ import annotations

import click
from aiida.cmdline.utils.decorators import with_dbenv

from aiida_mlcampaign.cli.params import PROFILE


@click.group('mlcampaign')
@PROFILE
def data_cli():
    """Training sets (TrainingSetData): export to extxyz/cfg, import, show."""


@data_cli.command('export')
@click.argument('identifier')
@click.option('-f', '--format', 'fmt', type=click.Choice(['extxyz', 'cfg']), default='extxyz', show_default=True,
              help='extxyz: GPUMD train.xyz conventions; cfg: mlip-2 configuration database.')
@click.option('-o', '--output', type=click.Path(dir_okay=False), required=True, help='File to write.')
@click.option('--species-order', default='', help='cfg only: comma-separated species order (default: the set\'s).')
@with_dbenv()
def export_command(identifier, fmt, output, species_order):
    """Write the TrainingSetData IDENTIFIER (pk, uuid or label) to a file."""
    from aiida import orm

    node = orm.load_node(identifier)
    from aiida_mlcampaign.data.training_set import TrainingSetData

    if not isinstance(node, TrainingSetData):
        raise click.BadParameter(f'node {identifier} is a {node.__class__.__name__}, not a TrainingSetData',
                                 param_hint='IDENTIFIER')
    from aiida_mlcampaign.formats.frames import FormatError

    try:
        if fmt == 'extxyz':
            node.export_extxyz(output)
        else:
            order = [s.strip() for s in species_order.split(',') if s.strip()] or None
            node.export_cfg(output, species_order=order)
    except (FormatError, ValueError) as exception:
        # The writers go through a temporary file: an existing OUTPUT is left as it was.
        raise click.ClickException(f'{output} not written ({output} unchanged): {exception}') from exception
    click.echo(f'wrote {node.num_frames} frames of TrainingSetData<{node.pk}> to {output}')


@data_cli.command('import')
@click.argument('filename', type=click.Path(exists=True, dir_okay=False))
@click.option('--origin', default='import', show_default=True,
              help='Origin tag for frames whose file gives no config_type.')
@click.option('--label', default='', help='Node label.')
@with_dbenv()
def import_command(filename, origin, label):
    """Store frames from an extended-XYZ file as a TrainingSetData."""
    from aiida_mlcampaign.data.training_set import TrainingSetData
    from aiida_mlcampaign.formats.frames import FormatError

    try:
        node = TrainingSetData.from_extxyz(filename, origin=origin)
    except FormatError as exception:
        raise click.ClickException(f'{filename}: {exception}') from exception
    node.label = label
    node.store()
    click.echo(f'stored TrainingSetData<{node.pk}> with {node.num_frames} frames')


@data_cli.command('show')
@click.argument('identifier')
@with_dbenv()
def show_command(identifier):
    """Summarise a TrainingSetData: frames, species, energy range, largest force."""
    import numpy as np
    from aiida import orm

    node = orm.load_node(identifier)
    natoms = node.get_array('natoms')
    energies = node.get_array('energies') / natoms
    forces = node.get_array('forces')
    click.echo(f'TrainingSetData<{node.pk}> {node.uuid}')
    click.echo(f'frames          {node.num_frames}  (atoms {int(natoms.sum())}, species {" ".join(node.species)})')
    click.echo(f'energy/atom     {np.nanmin(energies):.4f} .. {np.nanmax(energies):.4f} eV')
    click.echo(f'max |force|     {np.nanmax(np.linalg.norm(forces, axis=1)):.4f} eV/Å')
    click.echo(f'stress          {"all frames" if node.base.attributes.get("has_stress") else "not on every frame"}')
