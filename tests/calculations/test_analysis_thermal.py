"""The thermal-conductivity calcfunctions on recorded GPUMD outputs: values, stored figures, provenance links."""

import math
import pathlib

import numpy as np
import pytest
from aiida import orm

from aiida_mlcampaign.calculations.analysis_common import array_node
from aiida_mlcampaign.calculations.analysis_thermal import analyse_green_kubo, analyse_hnemd, analyse_shc
from aiida_mlcampaign.formats.gpumd import array_node_content, read_hac, read_kappa, read_shc

MD = pathlib.Path(__file__).parent.parent / 'fixtures' / 'gpumd' / 'md'
GRAPHENE = MD / 'graphene_hnemd_shc_legacy_v3.x'
# Volume of the SHC group of GPUMD's diffusive-graphene example (see tests/analysis/test_thermal.py).
GROUP_VOLUME = (1.42 * math.sqrt(3) * 100) * (3 * 1.42 * 10) * 3.35


def file_node(path: pathlib.Path) -> orm.SinglefileData:
    return orm.SinglefileData(path).store()


def arrays_of(data: dict) -> orm.ArrayData:
    """What the ``gpumd`` parser stores for a reader's result (arrays, and ``headers``/``units`` attributes)."""
    arrays, attributes = array_node_content(data)
    node = array_node(**arrays)
    for key, value in attributes.items():
        node.base.attributes.set(key, value)
    return node.store()


def links(node) -> tuple[set, set]:
    incoming = {entry.link_label for entry in node.base.links.get_incoming().all()}
    outgoing = {entry.link_label for entry in node.base.links.get_outgoing().all()}
    return incoming, outgoing


def check_figure(figure: orm.SinglefileData, filename: str) -> None:
    assert figure.filename == filename
    with figure.open(mode='rb') as handle:
        content = handle.read()
    assert content.startswith(b'\x89PNG') and len(content) > 1000


def test_hnemd_from_files_with_run_in(aiida_profile):
    kappa = file_node(GRAPHENE / 'kappa.out')
    run_in = file_node(GRAPHENE / 'run.in')
    results, node = analyse_hnemd.run_get_node(kappa=kappa, run_in=run_in)
    assert node.is_finished_ok
    summary = results['summary'].get_dict()
    assert summary['component'] == 'kappa_yy'
    assert summary['kappa_W_per_mK'] == pytest.approx(2283.586693, rel=1e-6)
    assert summary['kappa_in_W_per_mK'] == pytest.approx(850.128873, rel=1e-6)
    assert summary['time_per_row_ps'] == 1.0 and summary['simulated_time_ns'] == pytest.approx(0.2)
    arrays = results['kappa']
    assert arrays.get_array('running_total_W_per_mK').shape == (200,)
    assert arrays.get_array('time_ps')[-1] == pytest.approx(200.0)
    assert arrays.base.attributes.get('units')['running_total_W_per_mK'] == 'W/(m K)'
    check_figure(results['figure'], 'hnemd_kappa.png')
    incoming, outgoing = links(node)
    assert incoming == {'kappa', 'run_in'} and outgoing == {'kappa', 'summary', 'figure'}
    query = orm.QueryBuilder()
    query.append(orm.SinglefileData, filters={'id': kappa.pk}, tag='file')
    query.append(orm.CalcFunctionNode, with_incoming='file', tag='analysis', project='attributes.function_name')
    query.append(orm.Dict, with_incoming='analysis', project='attributes.kappa_W_per_mK')
    assert query.all() == [['analyse_hnemd', pytest.approx(2283.586693, rel=1e-6)]]


def test_hnemd_from_arrays_with_explicit_settings(aiida_profile):
    data = read_kappa(MD / 'carbon_nep_hnemd_legacy_v3.x' / 'kappa.out')
    results = analyse_hnemd(kappa=arrays_of(data), driving_force=orm.List([0.0, 0.0, 2e-4]),
                            time_step=orm.Float(1.0), output_interval=orm.Int(1000), skip_rows=orm.Int(100))
    summary = results['summary'].get_dict()
    assert summary['component'] == 'kappa_zz'
    assert summary['rows_used'] == 100
    assert summary['kappa_W_per_mK'] == pytest.approx(np.mean(data['kappa_block_W_per_mK'][100:, 4]))
    assert 'kappa_in_W_per_mK' not in summary
    assert 'running_in_W_per_mK' not in results['kappa'].get_arraynames()
    check_figure(results['figure'], 'hnemd_kappa.png')


def test_hnemd_needs_a_driving_force(aiida_profile):
    with pytest.raises(ValueError, match='driving_force: give a List'):
        analyse_hnemd(kappa=file_node(GRAPHENE / 'kappa.out'))
    with pytest.raises(ValueError, match=r'kappa: the ArrayData lacks the arrays \[.kappa_block_W_per_mK.\]'):
        analyse_hnemd(kappa=array_node(x=np.ones(3)), driving_force=orm.List([1e-5, 0, 0]))


def test_green_kubo_from_file_and_from_arrays(aiida_profile):
    hac = file_node(MD / 'graphene_emd_hac_v4.8' / 'hac.out')
    results, node = analyse_green_kubo.run_get_node(hac=hac, t_min=orm.Float(2.0), t_max=orm.Float(9.9))
    summary = results['summary'].get_dict()
    assert summary['window_ps'] == [2.0, 9.9]
    running = results['kappa'].get_array('running_kappa_x_W_per_mK')
    time = results['kappa'].get_array('time_ps')
    window = (time >= 2.0) & (time <= 9.9)
    assert summary['kappa_W_per_mK']['x'] == pytest.approx(running[window].mean())
    assert summary['kappa_stderr_W_per_mK']['x'] is None
    check_figure(results['figure'], 'green_kubo_kappa.png')
    assert links(node) == ({'hac', 't_min', 't_max'}, {'kappa', 'summary', 'figure'})
    from_arrays = analyse_green_kubo(hac=arrays_of(read_hac(MD / 'graphene_emd_hac_v4.8' / 'hac.out')))
    assert from_arrays['summary']['kappa_W_per_mK']['x'] == pytest.approx(236.555980, rel=1e-6)


def test_shc_with_run_in_volume_and_hnemd_reference(aiida_profile):
    run_in = file_node(GRAPHENE / 'run.in')
    hnemd = analyse_hnemd(kappa=file_node(GRAPHENE / 'kappa.out'), run_in=run_in)['summary']
    results, node = analyse_shc.run_get_node(shc=file_node(GRAPHENE / 'shc.out'), run_in=run_in,
                                             volume=orm.Float(GROUP_VOLUME), hnemd=hnemd)
    summary = results['summary'].get_dict()
    assert summary['temperature_K'] == 300.0 and summary['driving_force_per_A'] == 1e-5
    assert summary['kappa_W_per_mK']['in'] == pytest.approx(831.47, rel=1e-4)
    assert summary['kappa_W_per_mK']['total'] == pytest.approx(2900.61, rel=1e-4)
    assert summary['kappa_from_K0_W_per_mK']['total'] == pytest.approx(2905.39, rel=1e-4)
    # in-plane agrees with the (truncated) kappa.out; out-of-plane is not converged there (see test_thermal)
    assert summary['ratio_to_hnemd']['in'] == pytest.approx(831.47 / 850.128873, rel=1e-4)
    spectrum = results['spectrum']
    assert spectrum.get_array('nu_THz')[-1] == pytest.approx(400.0 / (2 * math.pi))
    assert spectrum.base.attributes.get('units')['kappa_total_W_per_mK_per_THz'] == 'W/(m K THz)'
    check_figure(results['figure'], 'spectral_kappa.png')
    incoming, _ = links(node)
    assert incoming == {'shc', 'run_in', 'volume', 'hnemd'}
    # the SHC analysis leads back to the HNEMD analysis of the same run
    query = orm.QueryBuilder()
    query.append(orm.CalcFunctionNode, filters={'id': node.pk}, tag='shc')
    query.append(orm.Dict, with_outgoing='shc', tag='hnemd_summary')
    query.append(orm.CalcFunctionNode, with_outgoing='hnemd_summary', project='attributes.function_name')
    assert query.all() == [['analyse_hnemd']]


def test_shc_from_arrays_refuses_missing_or_inconsistent_settings(aiida_profile):
    data = arrays_of(read_shc(GRAPHENE / 'shc.out'))
    with pytest.raises(ValueError, match='temperature: give the HNEMD temperature'):
        analyse_shc(shc=data, volume=orm.Float(GROUP_VOLUME), driving_force=orm.Float(1e-5))
    with pytest.raises(ValueError, match='volume: give the volume'):
        analyse_shc(shc=data, temperature=orm.Float(300.0), driving_force=orm.Float(1e-5))
    results = analyse_shc(shc=data, temperature=orm.Float(300.0), volume=orm.Float(GROUP_VOLUME),
                          driving_force=orm.Float(1e-5))
    assert results['summary']['kappa_W_per_mK']['in'] == pytest.approx(831.47, rel=1e-4)
    # v5.6 file: the header says compute_shc collected direction y (1) for group 4 of method 0
    recent = file_node(MD / 'graphene_hnemd_shc_v5.6' / 'shc.out')
    with pytest.raises(ValueError, match='volume: .*group'):
        analyse_shc(shc=recent, temperature=orm.Float(300.0), driving_force=orm.List([0.0, 1e-5, 0.0]))
    # the same file as the gpumd parser stores it: the header (direction y) comes with the ArrayData
    parsed = arrays_of(read_shc(MD / 'graphene_hnemd_shc_v5.6' / 'shc.out'))
    with pytest.raises(ValueError, match='driving_force: along z, but compute_shc collected direction y'):
        analyse_shc(shc=parsed, temperature=orm.Float(300.0), volume=orm.Float(1.0e5),
                    driving_force=orm.List([0.0, 0.0, 1e-5]))
