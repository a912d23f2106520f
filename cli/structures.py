"""``aiida-mlcampaign structures``: bring any ASE-readable structure file into the graph, checked first."""

from __future__ import annotations

import click
from aiida.cmdline.utils.decorators import with_dbenv

from aiida_mlcampaign.cli.params import PROFILE


@click.group('structures')
@PROFILE
def structures_cli():
    """Import structures (CIF, POSCAR, extxyz, ... anything ase.io reads) as StructureData."""


@structures_cli.command('import')
@click.argument('filenames', nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option('--index', default=':', show_default=True, help='ASE index of the images to read from each file.')
@click.option('--format', 'fmt', default=None, help='ASE format name when the extension is ambiguous.')
@click.option('--group', 'group_label', default='', help='Add the structures to this group (created if needed).')
@click.option('--min-distance', default=0.5, show_default=True, help='Refuse structures with atoms closer (Å).')
@with_dbenv()
def import_command(filenames, index, fmt, group_label, min_distance):
    """Read FILENAMES with ASE, check every structure, and store them only if all pass."""
    import ase.io
    from aiida import orm

    from aiida_mlcampaign.structures.variants import check_structure

    structures = []
    for filename in filenames:
        try:
            images = ase.io.read(filename, index=index, format=fmt)
        except Exception as exception:  # noqa: BLE001 - ASE raises many types for unreadable files
            raise click.ClickException(f'{filename}: not readable by ASE ({exception})') from exception
        images = images if isinstance(images, list) else [images]
        for number, atoms in enumerate(images):
            try:
                check_structure(atoms, min_distance=min_distance, field=f'{filename}[{number}]')
            except ValueError as exception:
                raise click.ClickException(str(exception)) from exception
            structures.append(orm.StructureData(ase=atoms))
    for structure in structures:
        structure.store()
    if group_label:
        group, _ = orm.Group.collection.get_or_create(group_label)
        group.add_nodes(structures)
    click.echo(f'stored {len(structures)} StructureData: {" ".join(str(s.pk) for s in structures)}')
