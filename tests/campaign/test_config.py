"""The campaign file schema (AiiDA-free, fast): the examples load, broken files are refused naming path and line."""

import pathlib

import ase.io
import pytest
from ase import Atoms
from ase.build import bulk

from aiida_mlcampaign.campaign import CampaignConfig, ConfigError, PlanRow, Problem, load_config, parse_config
from aiida_mlcampaign.campaign.config import dotted, split_dotted

EXAMPLES = pathlib.Path(__file__).parent.parent.parent / 'examples'

BASE = """\
campaign:
  name: demo
material:
  builder:
    kind: zincblende
    a: 5.35
    fcc: [Cu, Cu, Cu, P]
    tetrahedral: [S, S, S, S]
dft:
  protocol: fast
stages:
  seed:
    rattle:
      count: 4
  active_learning:
    mtp:
      level: 6
      max_iterations: 1
      label_budget: 2
  md:
    temperatures: [300, 600]
    steps: 200
  analysis:
    rdf:
      r_max: 2.6
computers:
  dft:
    code: pw@localhost
  mtp_train:
    code: motep@localhost
  explore:
    code: mlcampaign-explore@localhost
  md:
    code: mlcampaign-md@localhost
"""

AIMD = """\
    aimd:
      temperatures: [600]
      steps: 20
      equilibration_steps: 5
"""


def mutate(*replacements: tuple[str, str]) -> str:
    """BASE with each (old, new) applied once; the expected error line carries the marker ``#!``."""
    text = BASE
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def write(tmp_path, text: str, name: str = 'campaign.yaml') -> pathlib.Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def marked_line(text: str) -> int:
    (line,) = [number for number, content in enumerate(text.splitlines(), 1) if '#!' in content]
    return line


def refused(path: pathlib.Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


# (id, replacements, dotted path, part of the message); the line is the one marked #!
BROKEN = [
    ('level-odd', [('      level: 6', '      level: 7  #!')], 'stages.active_learning.mtp.level',
     'must be an even number from 2 to 20 (a shipped MTP template), got 7'),
    ('level-too-high', [('      level: 6', '      level: 22  #!')], 'stages.active_learning.mtp.level',
     'got 22'),
    ('unknown-top-key', [('\ndft:\n', '\nextra: 1  #!\ndft:\n')], 'extra', "unknown key 'extra'"),
    ('unknown-key-typo', [('      level: 6', '      levl: 6  #!')], 'stages.active_learning.mtp.levl',
     "did you mean 'level'?"),
    ('name-missing', [('campaign:\n  name: demo', 'campaign:  #!\n  description: x')], 'campaign.name',
     'required'),
    ('name-invalid', [('  name: demo', '  name: -demo  #!')], 'campaign.name', 'must start with a letter'),
    ('builder-kind', [('    kind: zincblende', '    kind: wurtzite  #!')], 'material.builder.kind',
     "must be one of 'argyrodite', 'zincblende'"),
    ('fcc-three', [('    fcc: [Cu, Cu, Cu, P]', '    fcc: [Cu, Cu, P]  #!')], 'material.builder.fcc',
     'must have exactly 4 items, got 3'),
    ('bad-element', [('    tetrahedral: [S, S, S, S]', '    tetrahedral: [S, S, S, Xx]  #!')],
     'material.builder.tetrahedral[3]', "'Xx' is not a chemical element symbol"),
    ('lowercase-element', [('    tetrahedral: [S, S, S, S]', '    tetrahedral: [S, S, s, S]  #!')],
     'material.builder.tetrahedral[2]', "did you mean 'S'?"),
    ('builder-and-structures', [('  builder:', '  structures: [a.cif]\n  builder:  #!')], 'material.builder',
     'either material.structures or material.builder, not both'),
    ('no-builder-no-structures', [('material:\n  builder:\n    kind: zincblende\n    a: 5.35\n'
                                   '    fcc: [Cu, Cu, Cu, P]\n    tetrahedral: [S, S, S, S]\n',
                                   'material:  #!\n  supercell: [1, 1, 1]\n')], 'material',
     'needs structures (files) or a builder'),
    ('species-mismatch', [('    tetrahedral: [S, S, S, S]\n', '    tetrahedral: [S, S, S, S]\n'
                                                               '  species: [Cu, P]  #!\n')],
     'material.species', 'missing S'),
    ('supercell-two', [('    tetrahedral: [S, S, S, S]\n', '    tetrahedral: [S, S, S, S]\n'
                                                            '  supercell: [1, 1]  #!\n')],
     'material.supercell', 'must be 3 integers >= 1'),
    ('supercell-zero', [('    tetrahedral: [S, S, S, S]\n', '    tetrahedral: [S, S, S, S]\n'
                                                             '  supercell: [1, 0, 1]  #!\n')],
     'material.supercell[1]', 'must be >= 1, got 0'),
    ('a-text', [('    a: 5.35', '    a: big  #!')], 'material.builder.a', "must be a number, got 'big'"),
    ('a-negative', [('    a: 5.35', '    a: -5.35  #!')], 'material.builder.a', 'must be > 0, got -5.35'),
    ('a-too-small-for-min-distance', [('    a: 5.35', '    a: 1.0  #!')], 'material.builder.a',
     'closer than dft.min_distance'),
    ('dft-protocol', [('  protocol: fast', '  protocol: quick  #!')], 'dft.protocol',
     "must be one of 'fast', 'balanced' or 'stringent', got 'quick'"),
    ('dft-fraction', [('  protocol: fast', '  protocol: fast\n  max_failed_fraction: 1.5  #!')],
     'dft.max_failed_fraction', 'must be <= 1'),
    ('dft-overrides-typo', [('  protocol: fast', '  protocol: fast\n  overrides:\n    kpoints_distnace: 0.3  #!')],
     'dft.overrides.kpoints_distnace', "did you mean 'kpoints_distance'?"),
    ('dft-overrides-namelist', [('  protocol: fast', '  protocol: fast\n  overrides:\n    pw:\n      parameters:\n'
                                                     '        system: {ecutwfc: 30}  #!')],
     'dft.overrides.pw.parameters.system', "'system' is not a pw.x namelist"),
    ('dft-empty', [('dft:\n  protocol: fast', 'dft:  #!')], 'dft', 'is empty'),
    ('seed-empty', [('  seed:\n    rattle:\n      count: 4', '  seed: {}  #!')], 'stages.seed',
     'needs rattle, aimd or both'),
    ('rattle-count-zero', [('      count: 4', '      count: 0  #!')], 'stages.seed.rattle.count',
     'must be >= 1, got 0'),
    ('rattle-count-float', [('      count: 4', '      count: 4.5  #!')], 'stages.seed.rattle.count',
     'must be an integer, got 4.5'),
    ('amplitude-exponent-as-text', [('      count: 4', '      count: 4\n      amplitude: 1e-3  #!')],
     'stages.seed.rattle.amplitude', 'write 1.0e-3'),
    ('per-species-not-a-species', [('      count: 4', '      count: 4\n      per_species: {Li: 2.0}  #!')],
     'stages.seed.rattle.per_species.Li', 'Li is not a species of the material (Cu, P, S)'),
    ('aimd-equilibration', [('      count: 4\n', '      count: 4\n' + AIMD.replace(
        'equilibration_steps: 5', 'equilibration_steps: 20  #!'))], 'stages.seed.aimd.equilibration_steps',
     'must be < steps (20)'),
    ('aimd-thermostat', [('      count: 4\n', '      count: 4\n' + AIMD + '      thermostat: nose  #!\n')],
     'stages.seed.aimd.thermostat', "got 'nose'"),
    ('aimd-temperature', [('      count: 4\n', '      count: 4\n' + AIMD.replace('[600]', '[600, -5]  #!'))],
     'stages.seed.aimd.temperatures[1]', 'must be > 0, got -5'),
    ('seed-one-label', [('  seed:\n    rattle:\n      count: 4', '  seed:  #!\n    rattle:\n      count: 1')],
     'stages.seed', 'needs at least 2'),
    ('test-fraction-one', [('  active_learning:\n', '  test_set:\n    fraction: 1.0  #!\n  active_learning:\n')],
     'stages.test_set.fraction', 'must be < 1'),
    ('no-family', [('  active_learning:\n    mtp:\n      level: 6\n      max_iterations: 1\n      label_budget: 2\n',
                    '  active_learning:  #!\n    target_force_rmse: 0.1\n')],
     'stages.active_learning', 'names no family'),
    ('order-mismatch', [('      label_budget: 2\n', '      label_budget: 2\n    order: [mtp, nep]  #!\n')],
     'stages.active_learning.order', 'must name exactly the families given (mtp)'),
    ('md-family-absent', [('    steps: 200\n', '    steps: 200\n    families: [nep]  #!\n')],
     'stages.md.families[0]', "'nep' is not an active-learning family"),
    ('md-equilibration', [('    steps: 200\n', '    steps: 200\n    equilibration_steps: 200  #!\n')],
     'stages.md.equilibration_steps', 'must be < steps (200)'),
    ('md-gpumd-mtp', [('    steps: 200\n', '    steps: 200\n    engine: gpumd  #!\n')], 'stages.md.engine',
     "engine 'gpumd' runs NEP potentials only"),
    ('md-temperatures-scalar', [('    temperatures: [300, 600]', '    temperatures: 300  #!')],
     'stages.md.temperatures', 'must be a list (write [300])'),
    ('md-temperatures-empty', [('    temperatures: [300, 600]', '    temperatures: []  #!')],
     'stages.md.temperatures', 'must have at least 1 item(s), got 0'),
    ('analysis-without-md', [('  md:\n    temperatures: [300, 600]\n    steps: 200\n', ''),
                             ('  analysis:', '  analysis:  #!')], 'stages.analysis', 'needs stages.md'),
    ('rdf-r-max', [('      r_max: 2.6', '      r_max: 3.0  #!')], 'stages.analysis.rdf.r_max',
     'exceeds half the smallest width of the MD cell (2.675 Å)'),
    ('rdf-bins', [('      r_max: 2.6', '      r_max: 2.6\n      bins: 5  #!')], 'stages.analysis.rdf.bins',
     'must be >= 10'),
    ('msd-species', [('      r_max: 2.6\n', '      r_max: 2.6\n    msd:\n      species: [Cu, Li]  #!\n')],
     'stages.analysis.msd.species[1]', 'Li is not a species'),
    ('msd-fit-start', [('      r_max: 2.6\n', '      r_max: 2.6\n    msd:\n      fit_start_ps: 5.0  #!\n')],
     'stages.analysis.msd.fit_start_ps', 'not before the end of the production run (0.2 ps)'),
    ('final-fit-int', [('  md:\n    temperatures', '  final_fit:\n    enabled: 1  #!\n  md:\n    temperatures')],
     'stages.final_fit.enabled',
     'must be true or false, got 1'),
    ('code-malformed', [('    code: pw@localhost', '    code: pw  #!')], 'computers.dft.code',
     "must name a code as 'label@computer'"),
    ('code-number', [('    code: pw@localhost', '    code: 12  #!')], 'computers.dft.code', 'must be text, got 12'),
    ('role-missing', [('  mtp_train:\n    code: motep@localhost\n', ''), ('computers:', 'computers:  #!')],
     'computers.mtp_train', 'required: it trains the MTPs'),
    ('role-unknown', [('  md:\n    code: mlcampaign-md@localhost\n',
                       '  md:\n    code: mlcampaign-md@localhost\n  gpu:  #!\n    code: x@y\n')],
     'computers.gpu', "unknown key 'gpu'"),
    ('wallclock', [('    code: pw@localhost', '    code: pw@localhost\n    max_wallclock_seconds: 10  #!')],
     'computers.dft.max_wallclock_seconds', 'must be >= 60, got 10'),
    ('budget-below-seed', [('computers:', 'budgets:\n  dft_labels: 2  #!\ncomputers:')], 'budgets.dft_labels',
     'less than the 4 label(s) the seed stage alone gives'),
    ('target-zero', [('computers:', 'targets:\n  force_rmse: 0  #!\ncomputers:')], 'targets.force_rmse',
     'must be > 0'),
]


@pytest.mark.parametrize('replacements, path, message', [case[1:] for case in BROKEN],
                         ids=[case[0] for case in BROKEN])
def test_broken_config_is_refused_with_path_and_line(tmp_path, replacements, path, message):
    text = mutate(*replacements)
    file = write(tmp_path, text)
    error = refused(file)
    line = marked_line(text)
    expected = f'{file}:{line}: {path}: '
    assert any(row.startswith(expected) and message in row for row in str(error).splitlines()), \
        f'expected {expected}...{message}\ngot:\n{error}'
    assert any(problem.path == path and problem.line == line for problem in error.problems)


def test_at_least_25_distinct_broken_configs():
    assert len({case[2] for case in BROKEN}) >= 25


def test_the_base_config_is_valid(tmp_path):
    config = load_config(write(tmp_path, BASE))
    assert isinstance(config, CampaignConfig)
    assert config.species() == ['Cu', 'P', 'S']
    assert config.warnings == []


@pytest.mark.parametrize('name', ['quickstart', 'cu7ps6-laptop', 'cu7ps6-paper'])
def test_examples_load(name):
    config = load_config(EXAMPLES / f'{name}.yaml')
    assert config.species() == ['Cu', 'P', 'S']
    assert config.warnings == []
    rows = config.plan_rows()
    assert rows and all(isinstance(row, PlanRow) for row in rows)
    assert all(row.cpu_hours >= 0 and row.gpu_hours >= 0 for row in rows)


def test_quickstart_example_attributes():
    config = load_config(EXAMPLES / 'quickstart.yaml')
    assert config.material.builder.kind == 'zincblende' and config.material.builder.a == 5.35
    assert config.dft.protocol == 'fast' and config.dft.overrides['kpoints_distance'] == 1.5
    assert config.stages.seed.rattle.count == 4 and config.stages.test_set.fraction == 0.25
    assert config.stages.active_learning.mtp.level == 6
    assert config.stages.active_learning.nep.committee_size == 2
    assert config.families() == ['mtp', 'nep'] and config.md_families() == ['mtp', 'nep']
    assert config.computers.dft.code_label == 'pw' and config.computers.dft.computer_label == 'localhost'
    assert config.seed_label_count() == 4 + 10  # rattled + every one of 10 AIMD steps
    assert config.expected_dft_calls() == 1 + 14 + 2 + 2  # relax, seed, one iteration of 2 labels per family
    (atoms,) = config.start_structures()
    assert atoms.get_chemical_formula() == 'Cu3PS4' and atoms.pbc.all()


def test_paper_example_runs_nep_in_gpumd():
    config = load_config(EXAMPLES / 'cu7ps6-paper.yaml')
    assert config.stages.md.engine == 'gpumd' and config.md_families() == ['nep']
    assert config.material.builder.kind == 'argyrodite'
    # rattle 20 + 4 temperatures x ceil((2000 - 200) / 10)
    assert config.seed_label_count() == 20 + 4 * 180
    gpu = sum(row.gpu_hours for row in config.plan_rows())
    assert gpu > 0


def test_duplicate_key_is_refused_with_both_lines(tmp_path):
    text = mutate(('      level: 6\n', '      level: 6\n      level: 8  #!\n'))
    file = write(tmp_path, text)
    error = refused(file)
    assert str(error) == (f"{file}:{marked_line(text)}: stages.active_learning.mtp.level: duplicate key 'level' "
                          f'(first at line {marked_line(text) - 1})')


def test_yaml_syntax_error_names_the_line(tmp_path):
    text = mutate(('    steps: 200', '    steps: [200  #!'))
    file = write(tmp_path, text)
    error = refused(file)
    (problem,) = error.problems
    assert problem.path == '' and 'YAML syntax error' in problem.message
    # PyYAML reports an unclosed flow sequence where it notices it: the next line
    assert problem.line in (marked_line(text), marked_line(text) + 1)
    assert str(error).startswith(f'{file}:{problem.line}: YAML syntax error')


def test_yaml_bad_indentation_line(tmp_path):
    text = mutate(('      level: 6', '      level: 6\n     max_steps: 3  #!'))
    error = refused(write(tmp_path, text))
    assert error.problems[0].line == marked_line(text)


def test_empty_file_and_top_level_list(tmp_path):
    assert 'the file is empty' in str(refused(write(tmp_path, '# nothing\n')))
    error = refused(write(tmp_path, '- a\n- b\n'))
    assert 'the top level must be a mapping' in str(error) and error.problems[0].line == 1


def test_missing_file():
    error = refused(pathlib.Path('/nonexistent/campaign.yaml'))
    assert 'cannot read the file' in str(error) and error.problems[0].line is None


def _structures_config(*names: str) -> str:
    listed = ''.join(f'    - {name}\n' for name in names)
    return mutate(('  builder:\n    kind: zincblende\n    a: 5.35\n    fcc: [Cu, Cu, Cu, P]\n'
                   '    tetrahedral: [S, S, S, S]\n', f'  structures:\n{listed}'),
                  ('      r_max: 2.6', '      r_max: 1.8'))


def _cu3ps4(a=5.35):
    fcc = [(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]
    tetra = [(0.25, 0.25, 0.25), (0.25, 0.75, 0.75), (0.75, 0.25, 0.75), (0.75, 0.75, 0.25)]
    return Atoms('Cu3PS4', scaled_positions=fcc + tetra, cell=[a, a, a], pbc=True)


def test_structures_resolve_against_the_yaml_folder(tmp_path, monkeypatch):
    (tmp_path / 'inputs').mkdir()
    ase.io.write(tmp_path / 'inputs' / 'cu3ps4.cif', _cu3ps4())
    file = write(tmp_path, _structures_config('inputs/cu3ps4.cif'))
    monkeypatch.chdir('/')
    config = load_config(file)
    assert config.material.structures == [str(tmp_path / 'inputs' / 'cu3ps4.cif')]
    assert config.species() == ['Cu', 'P', 'S']
    assert config.base_dir == tmp_path


def test_missing_structure_file(tmp_path):
    ase.io.write(tmp_path / 'ok.cif', _cu3ps4())
    text = _structures_config('ok.cif', 'missing.cif  #!')
    file = write(tmp_path, text)
    error = refused(file)
    assert str(error).startswith(f'{file}:{marked_line(text)}: material.structures[1]: missing.cif: no such file')


@pytest.mark.parametrize('content, message', [
    ('not a structure\n', 'not readable by ASE'),
    (None, 'must be periodic in 3 dimensions'),
])
def test_unreadable_or_molecular_structure(tmp_path, content, message):
    if content is None:
        ase.io.write(tmp_path / 'bad.xyz', Atoms('H2', positions=[[0, 0, 0], [0, 0, 0.74]]))
    else:
        (tmp_path / 'bad.xyz').write_text(content)
    text = _structures_config('bad.xyz  #!')
    error = refused(write(tmp_path, text))
    (problem,) = error.problems
    assert problem.path == 'material.structures[0]' and message in problem.message
    assert problem.line == marked_line(text)


def test_structure_with_close_atoms_or_several_images(tmp_path):
    atoms = _cu3ps4()
    atoms.positions[1] = atoms.positions[0] + [0.2, 0, 0]
    ase.io.write(tmp_path / 'close.cif', atoms)
    error = refused(write(tmp_path, _structures_config('close.cif')))
    assert 'apart' in error.problems[0].message and 'dft.min_distance' in error.problems[0].message
    ase.io.write(tmp_path / 'two.xyz', [_cu3ps4(), _cu3ps4(5.4)])
    error = refused(write(tmp_path, _structures_config('two.xyz')))
    assert 'holds 2 structures' in error.problems[0].message


def test_species_follow_the_structures_whatever_the_elements(tmp_path):
    ase.io.write(tmp_path / 'nacl.cif', bulk('NaCl', 'rocksalt', a=5.64, cubic=True))
    text = _structures_config('nacl.cif').replace('      level: 6', '      level: 4')
    text = text.replace('      count: 4', '      count: 4\n      per_species: {Na: 2.0}')
    config = load_config(write(tmp_path, text))
    assert config.species() == ['Cl', 'Na']
    assert config.stages.seed.rattle.per_species == {'Na': 2.0}


def test_argyrodite_builder_other_elements(tmp_path):
    text = mutate(('  builder:\n    kind: zincblende\n    a: 5.35\n    fcc: [Cu, Cu, Cu, P]\n'
                   '    tetrahedral: [S, S, S, S]\n',
                   '  builder:\n    kind: argyrodite\n    lattice_parameter: 10.9\n    mobile: Ag\n    center: P\n'
                   '    anion: Se\n  species: [Ag, P, Se]\n'))
    config = load_config(write(tmp_path, text))
    assert config.species() == ['Ag', 'P', 'Se']
    assert config.material.builder.lattice_parameter == 10.9


def test_warnings_do_not_refuse(tmp_path):
    text = mutate(('    code: pw@localhost', '    code: pw@localhost\n    gpus: 1'),
                  ('  md:\n    code: mlcampaign-md@localhost\n',
                   '  md:\n    code: mlcampaign-md@localhost\n  gpumd:\n    code: gpumd@localhost\n'))
    config = load_config(write(tmp_path, text))
    paths = {problem.path for problem in config.warnings}
    assert paths == {'computers.dft.gpus', 'computers.gpumd'}
    assert all(problem.severity == 'warning' for problem in config.warnings)
    assert 'warning: computers.gpumd: not used' in '\n'.join(p.format(config.source) for p in config.warnings)


def test_budget_caps_the_learning_labels(tmp_path):
    text = mutate(('      max_iterations: 1\n      label_budget: 2', '      max_iterations: 5\n      label_budget: 4'),
                  ('computers:', 'budgets:\n  dft_labels: 10\ncomputers:'))
    config = load_config(write(tmp_path, text))
    assert config.seed_label_count() == 4
    assert config.expected_dft_calls() == 10
    label_rows = [row for row in config.plan_rows() if row.what.startswith('label')]
    assert label_rows[0].dft_calls == 6 and 'capped' in label_rows[0].what


def test_relax_and_aimd_counts(tmp_path):
    text = mutate(('      count: 4\n', '      count: 4\n' + AIMD.replace('[600]', '[600, 900]')
                   .replace('equilibration_steps: 5', 'equilibration_steps: 5\n      every: 4')),
                  ('  seed:\n', '  relax:\n    max_steps: 10\n  seed:\n'))
    config = load_config(write(tmp_path, text))
    # per temperature the steps 5, 9, 13, 17 are kept
    assert config.seed_label_count() == 4 + 2 * 4
    assert config.expected_dft_calls() == 1 + 12 + 2
    assert config.plan_rows()[0].stage == 'relax'


def test_parse_config_without_lines():
    data = {'campaign': {'name': 'x'}, 'material': {'builder': {'kind': 'zincblende', 'a': 5.35,
                                                               'fcc': ['Cu'] * 4, 'tetrahedral': ['S'] * 4}},
            'stages': {'seed': {'rattle': {'count': 0}}}, 'computers': {'dft': {'code': 'pw@localhost'}}}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value) == '<dict>: stages.seed.rattle.count: must be >= 1, got 0'
    data['stages']['seed']['rattle']['count'] = 3
    config = parse_config(data, source='inline')
    assert config.source == 'inline' and config.species() == ['Cu', 'S'] and config.line_of('stages') is None


def test_problem_format_and_paths():
    assert Problem('a.b[2]', 14, 'bad').format('c.yaml') == 'c.yaml:14: a.b[2]: bad'
    assert Problem('', None, 'bad').format('c.yaml') == 'c.yaml: bad'
    assert Problem('x', 3, 'hm', 'warning').format('c.yaml') == 'c.yaml:3: warning: x: hm'
    assert dotted(('stages', 'md', 'temperatures', 1)) == 'stages.md.temperatures[1]'
    assert split_dotted('stages.md.temperatures[1]') == ('stages', 'md', 'temperatures', 1)
    assert issubclass(ConfigError, ValueError)


def test_several_problems_are_reported_together(tmp_path):
    text = mutate(('      level: 6', '      level: 7'), ('  protocol: fast', '  protocol: quick'))
    error = refused(write(tmp_path, text))
    assert [problem.path for problem in error.problems] == ['dft.protocol', 'stages.active_learning.mtp.level']
    assert len(str(error).splitlines()) == 2


def test_no_aiida_needed():
    import subprocess
    import sys

    code = ('import sys; from aiida_mlcampaign.campaign import load_config\n'
            f'c = load_config({str(EXAMPLES / "cu7ps6-paper.yaml")!r}); c.plan_rows()\n'
            'print(sorted(m for m in sys.modules if m == "aiida" or m.startswith("aiida.")))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'


DOCS = EXAMPLES.parent / 'docs' / 'campaign.md'


def test_the_annotated_example_of_the_docs_is_valid(tmp_path):
    import re

    example = re.findall(r'```yaml\n(.*?)```', DOCS.read_text(), re.S)[-1]
    config = load_config(write(tmp_path, example))
    assert config.seed_label_count() == 40


def test_every_field_is_documented():
    import re

    from pydantic import BaseModel

    from aiida_mlcampaign.campaign import config as module

    text = DOCS.read_text()
    models = [value for value in vars(module).values()
              if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == module.__name__]
    missing = sorted(f'{model.__name__}.{name}' for model in models for name in model.model_fields
                     if not re.search(rf'[`.]{name}\b', text))
    assert missing == []
