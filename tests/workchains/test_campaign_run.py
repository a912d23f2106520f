"""The campaign's first stages for real on a material with none of the model case's elements (NaCl): nothing in
``mlcampaign.campaign`` is wired to Cu, P or S. Real ld1.x pseudopotentials and real pw.x (relax, labels), run in
this process; the whole campaign through the daemon is tests/daemon/test_daemon.py."""

import pytest
from ase.build import bulk

from tests.helpers import require_executable

pytestmark = pytest.mark.pw

CONFIG = {
    'campaign': {'name': 'nacl'},
    'material': {'structures': ['nacl.xyz']},
    'dft': {'protocol': 'fast', 'pseudo_family': 'mlcampaign-test-NaCl',
            'overrides': {'kpoints_distance': 1.0,
                          'pw': {'parameters': {'SYSTEM': {'ecutwfc': 20.0, 'ecutrho': 160.0}}}}},
    'stages': {'relax': {'max_steps': 2},
               'seed': {'rattle': {'count': 2, 'amplitude': 0.04, 'strain': 0.01, 'seed': 3,
                                   'per_species': {'Na': 1.5}}},
               'test_set': {'fraction': 0.5}},
    'computers': {'dft': {'code': 'pw@localhost', 'max_concurrent': 2}},
}


def test_first_stages_on_nacl(aiida_profile, tmp_path_factory):
    require_executable('ld1.x')
    from aiida import orm
    from aiida.common.links import LinkType
    from aiida.engine import run_get_node

    from aiida_mlcampaign.campaign.config import parse_config
    from aiida_mlcampaign.setup.pseudos import install_pseudo_family
    from aiida_mlcampaign.workchains.campaign import CampaignWorkChain
    from tests.helpers import local_codes

    install_pseudo_family(label='mlcampaign-test-NaCl', elements=['Na', 'Cl'],
                          cache_dir=tmp_path_factory.mktemp('pseudo-cache-nacl'))
    pw = local_codes(tmp_path_factory, 'pw.x')['pw.x']
    atoms = bulk('NaCl', 'rocksalt', a=5.64, cubic=True)
    config = parse_config(CONFIG, atoms=[atoms])
    builder = CampaignWorkChain.get_builder()
    builder.config = orm.Dict(config.model_dump(mode='json'))
    builder.structures = {'nacl': orm.StructureData(ase=atoms)}
    builder.codes = {'dft': pw}
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    outputs = node.outputs
    assert outputs.seed_set.num_frames == 2 and set(outputs.seed_set.species) == {'Na', 'Cl'}
    assert outputs.test_set.num_frames == 1 and outputs.training_set.num_frames == 1
    relaxed = outputs.structures['nacl']
    assert relaxed.get_formula() == 'Cl4Na4'
    creator = relaxed.base.links.get_incoming(link_type=LinkType.CREATE).one()
    assert creator.link_label == 'output_structure' and creator.node.process_type.endswith('quantumespresso.pw')
    children = {link.link_label for link in node.base.links.get_outgoing().all()}
    assert {'relax_nacl', 'rattle_nacl', 'seed_label', 'split', 'report'} <= children
    rattle = node.base.links.get_outgoing(link_label_filter='rattle_nacl').one().node
    amplitudes = rattle.inputs.per_species.get_dict()
    assert amplitudes['Na'] == pytest.approx(0.06) and amplitudes['Cl'] <= 0.04
    report = outputs.report.get_dict()
    assert set(report['species']) == {'Na', 'Cl'}
    assert report['families'] == {}
