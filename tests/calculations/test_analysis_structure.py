"""The RDF / MSD / diffusion / Arrhenius calcfunctions: provenance, figures, GPUMD files, refusals."""

import io
import pathlib

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType

from aiida_mlcampaign.analysis.transport import BOLTZMANN_EV_PER_K
from aiida_mlcampaign.calculations.analysis_structure import (
    compare_rdfs,
    compute_msd,
    compute_rdf,
    fit_arrhenius,
    fit_diffusion,
)
from aiida_mlcampaign.data.training_set import TrainingSetData
from aiida_mlcampaign.formats.gpumd import read_msd, read_rdf
from aiida_mlcampaign.parsers.gpumd import reader_array_node

MD = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd' / 'md'
SI_LIQUID = MD / 'si_liquid_npt_nve_msd_sdc_rdf_v5.6'


def singlefile(path: pathlib.Path, filename: str | None = None) -> orm.SinglefileData:
    return orm.SinglefileData(io.BytesIO(path.read_bytes()), filename=filename or path.name).store()


def assert_png(node):
    assert isinstance(node, orm.SinglefileData)
    content = node.get_content(mode='rb')
    assert content.startswith(b'\x89PNG') and len(content) > 1000


def calcfunction_count():
    return orm.QueryBuilder().append(orm.CalcFunctionNode).count()


@pytest.fixture(scope='module')
def aimd_set(aiida_profile):
    """A tiny EMT 'AIMD' run: 32 Cu atoms (one vacancy) at 600 K, 40 frames 10 fs apart."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = bulk('Cu', 'fcc', a=3.61, cubic=True).repeat((2, 2, 2))
    del atoms[0]
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=1200, rng=np.random.default_rng(0))
    dynamics = VelocityVerlet(atoms, timestep=5 * units.fs)
    frames = []
    for _ in range(40):
        dynamics.run(2)
        frame = atoms.copy()
        frame.calc = None
        frame.wrap()
        frame.info['temperature'] = atoms.get_temperature()
        frames.append(frame)
    return TrainingSetData.from_ase(frames, origin='aimd').store()


def test_rdf_and_msd_of_an_aimd_training_set_are_linked(aimd_set):
    rdf_outputs, rdf_node = compute_rdf.run_get_node(trajectory=aimd_set, r_max=3.6, bins=72, stride=2, skip=4)
    assert rdf_node.is_finished_ok
    rdf = rdf_outputs['rdf']
    assert rdf.base.attributes.get('num_frames') == 18
    assert rdf.base.attributes.get('pairs') == ['Cu-Cu']
    assert rdf.base.attributes.get('units')['r_A'].startswith('Å')
    shell = rdf.base.attributes.get('first_shell')[0]
    assert shell['peak_A'] == pytest.approx(3.61 / np.sqrt(2), abs=0.1)
    assert 10.5 < shell['cn_ab'] < 12.0  # a vacancy: 31 atoms, 12 x 31 - 2 x 12 neighbours
    assert_png(rdf_outputs['figure'])

    msd_outputs, msd_node = compute_msd.run_get_node(trajectory=aimd_set, time_step_fs=10.0, blocks=4)
    assert msd_node.is_finished_ok
    msd = msd_outputs['msd']
    assert msd.get_array('msd_A2').shape == (40, 1, 3)
    assert msd.get_array('msd_blocks_A2').shape == (4, 10, 1, 3)
    assert msd.get_array('time_ps')[1] == pytest.approx(0.01)
    assert msd.base.attributes.get('counts') == [31]
    assert msd.base.attributes.get('mean_temperature_K') > 100
    assert 0 < msd.get_array('msd_A2')[-1, 0].sum() < 3.0  # a vibrating crystal, not a liquid
    assert_png(msd_outputs['figure'])

    for node, outputs in ((rdf_node, {'rdf', 'figure'}), (msd_node, {'msd', 'figure'})):
        incoming = node.base.links.get_incoming(link_type=LinkType.INPUT_CALC)
        assert incoming.get_node_by_label('trajectory').uuid == aimd_set.uuid
        outgoing = node.base.links.get_outgoing(link_type=LinkType.CREATE)
        assert set(outgoing.all_link_labels()) == outputs
    query = orm.QueryBuilder()
    query.append(TrainingSetData, filters={'id': aimd_set.pk}, tag='set')
    query.append(orm.CalcFunctionNode, with_incoming='set', tag='calc', project='attributes.function_name')
    query.append(orm.SinglefileData, with_incoming='calc', edge_filters={'label': 'figure'})
    assert sorted(name for name, in query.all()) == ['compute_msd', 'compute_rdf']

    diffusion_outputs = fit_diffusion(msd=msd, charges=orm.Dict({'Cu': 1}))
    data = diffusion_outputs['diffusion'].get_dict()
    assert data['species']['Cu']['error_method'] == 'block_average'
    assert data['temperature_K'] == pytest.approx(msd.base.attributes.get('mean_temperature_K'))
    assert data['conductivity']['sigma_S_per_cm'] >= 0 or data['species']['Cu']['D_A2_per_ps'] < 0
    assert_png(diffusion_outputs['figure'])


def test_rdf_of_a_gpumd_dump_in_a_triclinic_cell(aiida_profile):
    """GPUMD's dump.xyz of rock-salt PbTe (250 atoms, fcc-primitive cell): Pb-Te 6 at a/2, Pb-Pb 12 at a/√2."""
    dump = singlefile(MD / 'pbte_static_dump_xyz_master' / 'dump.xyz')
    outputs = compute_rdf(trajectory=dump, r_max=6.0, bins=120)
    rdf = outputs['rdf']
    pairs = rdf.base.attributes.get('pairs')
    shells = dict(zip(pairs, rdf.base.attributes.get('first_shell')))
    a = 16.42598 / 2.5
    assert shells['Te-Pb']['peak_A'] == pytest.approx(a / 2, abs=0.1)
    assert shells['Te-Pb']['cn_ab'] == pytest.approx(6.0) and shells['Te-Pb']['cn_ba'] == pytest.approx(6.0)
    assert shells['Pb-Pb']['peak_A'] == pytest.approx(a / np.sqrt(2), abs=0.1)
    assert shells['Pb-Pb']['cn_ab'] == pytest.approx(12.0, abs=0.05)  # a hot snapshot: shells overlap a little
    assert_png(outputs['figure'])


def test_rdf_of_an_ase_readable_file(aiida_profile, tmp_path):
    import ase.io
    from ase.build import bulk

    images = [bulk('Si', 'diamond', a=5.43, cubic=True).repeat((2, 2, 2)) for _ in range(2)]
    for seed, atoms in enumerate(images):
        atoms.rattle(0.05, seed=seed)
    ase.io.write(tmp_path / 'si.traj', images)
    outputs = compute_rdf(trajectory=singlefile(tmp_path / 'si.traj'), r_max=5.0, bins=100)
    shell = outputs['rdf'].base.attributes.get('first_shell')[0]
    assert shell['peak_A'] == pytest.approx(5.43 * np.sqrt(3) / 4, abs=0.05)
    assert shell['cn_ab'] == pytest.approx(4.0)

    # Crystal against GPUMD's liquid Si (same 100 bins to 5 Å): the same first peak region, far
    # from identical curves; the liquid against itself scores 1.
    gpumd = singlefile(SI_LIQUID / 'rdf.out')
    compared, node = compare_rdfs.run_get_node(rdf_a=outputs['rdf'], rdf_b=gpumd, label_a='diamond', label_b='GPUMD')
    scores = compared['overlap'].get_dict()['overlap']
    assert set(scores) == {'total', 'Si-Si'}
    assert 0.2 < scores['Si-Si'] < 0.8
    assert_png(compared['figure'])
    assert node.base.links.get_incoming().get_node_by_label('rdf_b').uuid == gpumd.uuid
    itself = compare_rdfs(rdf_a=gpumd, rdf_b=gpumd)['overlap'].get_dict()['overlap']
    assert itself['total'] == pytest.approx(1.0)


def test_msd_of_an_extended_xyz_dump_with_stride(aiida_profile, tmp_path):
    """A wrapped random walk written as extended XYZ (GPUMD dump.xyz layout) gives the direct-sum MSD."""
    import ase.io
    from ase import Atoms

    from aiida_mlcampaign.analysis.msd import msd_direct

    rng = np.random.default_rng(2)
    cell = np.array([[9.0, 0.0, 0.0], [2.0, 8.0, 0.0], [0.5, 1.0, 10.0]])
    walk = rng.random((1, 6, 3)) @ cell + np.cumsum(rng.normal(0, 0.3, (24, 6, 3)), axis=0)
    images = []
    for positions in walk:
        atoms = Atoms('Li4O2', positions=positions, cell=cell, pbc=True)
        atoms.wrap()
        images.append(atoms)
    ase.io.write(tmp_path / 'dump.xyz', images, format='extxyz')
    outputs = compute_msd(trajectory=singlefile(tmp_path / 'dump.xyz'), time_step_fs=5.0, stride=2, skip=2, blocks=0)
    msd = outputs['msd']
    used = walk[2::2]
    expected = msd_direct(used - used[0])
    np.testing.assert_allclose(msd.get_array('msd_A2')[:, 0], expected[:, :4].mean(axis=1), atol=1e-4)
    np.testing.assert_allclose(msd.get_array('time_ps')[1], 0.01)
    assert msd.base.attributes.get('species') == ['Li', 'O']
    fit = fit_diffusion(msd=msd)['diffusion'].get_dict()
    assert fit['species']['Li']['error_method'] == 'least_squares_lower_bound'
    assert 'all' in fit and 'conductivity' not in fit


def test_fit_diffusion_from_gpumd_msd_out(aiida_profile):
    msd_out = singlefile(SI_LIQUID / 'msd.out')
    outputs = fit_diffusion(msd=msd_out, group_names=orm.List(['Si']), temperature_K=2500.0,
                            charges=orm.Dict({'Si': 1.0}))
    data = outputs['diffusion'].get_dict()
    si = data['species']['Si']
    assert si['count'] == 8000
    assert data['volume_A3'] == pytest.approx(54.65500846 ** 3, rel=1e-8)
    assert si['D_A2_per_ps'] == pytest.approx(3.2417, rel=1e-3)
    assert si['error_method'] == 'least_squares_lower_bound'
    assert data['conductivity']['sigma_S_per_cm'] > 0  # a formal check only: Si is not an ion here
    assert_png(outputs['figure'])

    # The gpumd parser's ArrayData (read_msd arrays + attributes) gives the same numbers.
    parsed = parser_layout(read_msd(SI_LIQUID / 'msd.out'))
    same = fit_diffusion(msd=parsed, temperature_K=2500.0)['diffusion'].get_dict()
    assert same['species']['group_0']['D_A2_per_ps'] == pytest.approx(si['D_A2_per_ps'])
    assert same['volume_A3'] == pytest.approx(data['volume_A3'])
    scores = compare_rdfs(rdf_a=parser_layout(read_rdf(SI_LIQUID / 'rdf.out')),
                          rdf_b=singlefile(SI_LIQUID / 'rdf.out'))['overlap'].get_dict()['overlap']
    assert scores == {'total': pytest.approx(1.0), 'Si-Si': pytest.approx(1.0)}


def parser_layout(result: dict) -> orm.ArrayData:
    """An ArrayData as the gpumd parser stores a reader's result."""
    return reader_array_node(result).store()


def synthetic_msd(d_A2_per_ps: float, seed: int) -> orm.ArrayData:
    """An ArrayData shaped like compute_msd's output: MSD = 6 D t (+ 1 % noise), 4 blocks."""
    rng = np.random.default_rng(seed)
    time = np.arange(200) * 0.01
    block_time = time[:50]
    msd = (6 * d_A2_per_ps * time / 3)[:, None, None] * np.ones((1, 1, 3))
    blocks = np.array([(2 * d_A2_per_ps * (1 + rng.normal(0, 0.01)) * block_time)[:, None, None] * np.ones((1, 1, 3))
                       for _ in range(4)])
    node = orm.ArrayData()
    node.set_array('time_ps', time)
    node.set_array('msd_A2', msd)
    node.set_array('block_time_ps', block_time)
    node.set_array('msd_blocks_A2', blocks)
    node.base.attributes.set('species', ['Cu'])
    node.base.attributes.set('counts', [28])
    node.base.attributes.set('mean_volume_A3', 1000.0)
    return node.store()


def test_arrhenius_from_diffusion_results(aiida_profile):
    temperatures = [500.0, 700.0, 900.0]
    results = {}
    for i, temperature in enumerate(temperatures):
        d = 20.0 * np.exp(-0.25 / (BOLTZMANN_EV_PER_K * temperature))
        results[f'T{int(temperature)}'] = fit_diffusion(
            msd=synthetic_msd(d, i), temperature_K=temperature, charges=orm.Dict({'Cu': 1})
        )['diffusion']
    outputs, node = fit_arrhenius.run_get_node(quantity='diffusion', **results)
    fit = outputs['arrhenius'].get_dict()
    assert fit['activation_energy_eV'] == pytest.approx(0.25, abs=3 * fit['activation_energy_err_eV'] + 1e-3)
    assert fit['species'] == 'Cu' and fit['weighted']
    assert_png(outputs['figure'])
    assert set(node.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all_link_labels()) >= set(results)

    sigma = fit_arrhenius(**results)['arrhenius'].get_dict()  # every result has a conductivity
    assert sigma['quantity'] == 'conductivity'
    # sigma T ∝ D for fixed N, V: the same Ea
    assert sigma['activation_energy_eV'] == pytest.approx(fit['activation_energy_eV'], rel=1e-6)

    plain = fit_arrhenius(temperatures=orm.List(temperatures),
                          values=orm.List([2.0 * np.exp(-0.4 / (BOLTZMANN_EV_PER_K * t)) for t in temperatures]))
    assert plain['arrhenius'].get_dict()['activation_energy_eV'] == pytest.approx(0.4)


def test_bad_inputs_are_refused_before_running(aimd_set):
    before = calcfunction_count()
    with pytest.raises(ValueError, match='r_max: 4 Å exceeds the largest sphere'):
        compute_rdf(trajectory=aimd_set, r_max=4.0)
    with pytest.raises(ValueError, match='bins: expected an integer >= 1'):
        compute_rdf(trajectory=aimd_set, r_max=3.0, bins=0)
    with pytest.raises(ValueError, match='time_step_fs: expected a positive number'):
        compute_msd(trajectory=aimd_set, time_step_fs=-1.0)
    with pytest.raises(ValueError, match='blocks: 20 blocks of 40 frames'):
        compute_msd(trajectory=aimd_set, time_step_fs=1.0, blocks=20)
    msd = synthetic_msd(0.1, 0)
    with pytest.raises(ValueError, match="charges: no charge given for species 'Cu'"):
        fit_diffusion(msd=msd, charges=orm.Dict({'S': -2}), temperature_K=600.0)
    with pytest.raises(ValueError, match='fit_end_ps: must be larger than fit_start_ps'):
        fit_diffusion(msd=msd, fit_start_ps=1.0, fit_end_ps=0.5)
    with pytest.raises(ValueError, match='diffusion_results: an Arrhenius fit needs at least 2'):
        fit_arrhenius(only=orm.Dict({'species': {'Cu': {}}, 'temperature_K': 500.0}))
    two = {'species': {'Cu': {'D_A2_per_ps': 1.0}, 'S': {'D_A2_per_ps': 0.1}}, 'temperature_K': 500.0}
    with pytest.raises(ValueError, match='species: the results have several species'):
        fit_arrhenius(quantity='diffusion', a=orm.Dict(two), b=orm.Dict({**two, 'temperature_K': 600.0}))
    with pytest.raises(ValueError, match="charges: no charge given for species 'group_0'"):
        fit_diffusion(msd=singlefile(SI_LIQUID / 'msd.out'), charges=orm.Dict({'Si': 1}), temperature_K=2500.0)
    with pytest.raises(ValueError, match='values: 1 values for 2 temperatures'):
        fit_arrhenius(temperatures=orm.List([500.0, 600.0]), values=orm.List([1.0]))
    assert calcfunction_count() == before
