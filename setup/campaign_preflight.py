"""Preflight of a campaign file against an AiiDA profile: what ``campaign validate -p PROFILE`` checks before
anything is submitted.

For every role of ``computers`` (dft, mtp_train, ...):

1. the code ``label@computer`` exists (``orm.load_code``) and its default plugin suits the role;
2. its computer is configured for the default user and its transport opens within ``transport_timeout``
   seconds (once per computer), and an installed code's executable exists there;
3. the resources are accepted by the computer's scheduler (its ``JobResource`` class), and on ``core.direct``
   computers ``max_concurrent`` jobs fit the computer's default MPI processes per machine (a warning).

Then the pseudopotential family ``dft.pseudo_family`` exists, is an aiida-pseudo family with recommended cutoffs
at the stringency of ``dft.protocol``, and holds every species; and ``mlcampaign.dft.label`` accepts
``dft.overrides`` (a builder is made, nothing stored or submitted).

Problems are :class:`aiida_mlcampaign.campaign.Problem` with the path and line of the campaign file, printed like
schema errors (``campaign.yaml:40: computers.dft.code: code 'pw@nowhere' not found``).
"""

from __future__ import annotations

import threading

from aiida_mlcampaign.campaign import CampaignConfig, Problem

__all__ = ('ROLE_PLUGINS', 'preflight')

#: The CalcJob plugins each role's code may default to (a code without a default plugin is accepted).
ROLE_PLUGINS = {
    'dft': ('quantumespresso.pw',),
    'mtp_train': ('mlcampaign.motep.train', 'mlcampaign.mlp.train'),
    'nep_train': ('mlcampaign.nep.train',),
    'explore': ('mlcampaign.mtp.explore', 'mlcampaign.nep.explore'),
    'md': ('mlcampaign.md.cpu',),
    'gpumd': ('mlcampaign.gpumd.md',),
}


def preflight(config: CampaignConfig, profile=None, *, transport_timeout: float = 30.0) -> list[Problem]:
    """Everything the campaign needs from ``profile`` (a name or a Profile; None: the loaded one), as problems
    (``severity`` 'error' or 'warning'); an empty list means ready to launch."""
    from aiida import load_profile

    if profile is not None:
        load_profile(getattr(profile, 'name', profile), allow_switch=True)
    problems: list[Problem] = []
    codes = {}
    for role, settings in config.computers.roles().items():
        code = _check_code(config, role, settings, problems)
        if code is not None:
            codes[role] = code
    _check_computers(config, codes, problems, transport_timeout)
    family = _check_pseudo_family(config, problems)
    if family is not None and 'dft' in codes:
        _check_dft_overrides(config, codes['dft'], problems)
    return problems


def _check_code(config: CampaignConfig, role: str, settings, problems: list[Problem]):
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    path = f'computers.{role}.code'
    try:
        code = orm.load_code(settings.code)
    except NotExistent:
        problems.append(config.problem(path, f'code {settings.code!r} not found (verdi code list; '
                                             '`aiida-mlcampaign setup` creates the localhost codes)'))
        return None
    except MultipleObjectsError:
        problems.append(config.problem(path, f'{settings.code!r} names several codes; use a unique label'))
        return None
    plugin = code.default_calc_job_plugin
    expected = ROLE_PLUGINS.get(role)
    if plugin and expected and plugin not in expected:
        problems.append(config.problem(path, f'code {settings.code!r} runs the plugin {plugin!r}; the {role} role '
                                             f'needs {" or ".join(repr(e) for e in expected)}'))
    return code


def _check_computers(config: CampaignConfig, codes: dict, problems: list[Problem], timeout: float) -> None:
    from aiida import orm

    user = orm.User.collection.get_default()
    by_computer: dict = {}
    for role, code in codes.items():
        computer = code.computer
        if computer is None:
            continue
        by_computer.setdefault(computer.pk, (computer, []))[1].append(role)
    for computer, roles in by_computer.values():
        first = f'computers.{roles[0]}.code'
        for role in roles:
            _check_resources(config, role, computer, problems)
        if not computer.is_user_configured(user):
            problems.append(config.problem(first, f'computer {computer.label!r} is not configured for {user.email} '
                                                  f'(verdi computer configure {computer.transport_type} '
                                                  f'{computer.label})'))
            continue
        executables = {role: str(codes[role].filepath_executable) for role in roles
                       if hasattr(codes[role], 'filepath_executable')}
        error, missing = _open_transport(computer.get_authinfo(user).get_transport(), executables, timeout)
        if error:
            problems.append(config.problem(first, f'computer {computer.label!r}: the transport '
                                                  f'({computer.transport_type}) does not open: {error}'))
            continue
        for role, executable in missing.items():
            problems.append(config.problem(f'computers.{role}.code',
                                           f'code {codes[role].full_label!r} runs {executable}, which does not exist '
                                           f'on {computer.label}'))


def _open_transport(transport, executables: dict, timeout: float) -> tuple[str | None, dict]:
    """Open and close ``transport`` in a thread, at most ``timeout`` s; (error or None, {role: missing file})."""
    outcome: dict = {}

    def attempt():
        try:
            with transport:
                outcome['missing'] = {role: path for role, path in executables.items() if not transport.isfile(path)}
        except Exception as exception:  # noqa: BLE001 - transports raise anything from socket errors to auth
            outcome['error'] = f'{type(exception).__name__}: {exception}'

    worker = threading.Thread(target=attempt, daemon=True, name='campaign-preflight-transport')
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return f'no answer within {timeout:g} s', {}
    return outcome.get('error'), outcome.get('missing', {})


def _check_resources(config: CampaignConfig, role: str, computer, problems: list[Problem]) -> None:
    settings = getattr(config.computers, role)
    path = f'computers.{role}'
    try:
        scheduler = computer.get_scheduler()
    except Exception as exception:  # noqa: BLE001 - a missing scheduler plugin
        problems.append(config.problem(f'{path}.code', f'computer {computer.label!r}: scheduler '
                                                       f'{computer.scheduler_type!r} cannot be loaded ({exception})'))
        return
    resources = settings.resources()
    try:
        scheduler.create_job_resource(**resources)
    except (ValueError, TypeError) as exception:
        problems.append(config.problem(f'{path}.num_mpiprocs_per_machine',
                                       f'the {computer.scheduler_type} scheduler of {computer.label!r} refuses '
                                       f'{resources}: {exception}'))
        return
    if computer.scheduler_type == 'core.direct':
        cores = computer.get_default_mpiprocs_per_machine()
        if settings.num_machines > 1:
            problems.append(config.problem(f'{path}.num_machines', f'{settings.num_machines}: {computer.label!r} '
                                                                   'runs jobs directly, on one machine'))
        if cores and settings.max_concurrent * settings.num_mpiprocs_per_machine > cores:
            problems.append(config.problem(
                f'{path}.max_concurrent', f'{settings.max_concurrent} jobs x {settings.num_mpiprocs_per_machine} '
                                          f'process(es) exceed the {cores} of {computer.label!r} (default MPI '
                                          'processes per machine): the jobs will share cores', 'warning'))
        for key in ('queue_name', 'account'):
            if getattr(settings, key) is not None:
                problems.append(config.problem(f'{path}.{key}', f'ignored: {computer.label!r} has no queue '
                                                                '(core.direct scheduler)', 'warning'))


def _stringency(protocol: str) -> str | None:
    from aiida_mlcampaign.workchains.dft_label import DftLabelWorkChain

    return DftLabelWorkChain.get_protocol_inputs(protocol).get('cutoff_stringency')


def _check_pseudo_family(config: CampaignConfig, problems: list[Problem]):
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    label = config.dft.pseudo_family
    path = 'dft.pseudo_family'
    species = config.species()
    try:
        family = orm.load_group(label)
    except NotExistent:
        problems.append(config.problem(path, f'no pseudopotential family {label!r} (aiida-mlcampaign setup '
                                             f'--pseudo-family {label} --elements {",".join(species)})'))
        return None
    if not hasattr(family, 'elements') or not hasattr(family, 'get_recommended_cutoffs'):
        problems.append(config.problem(path, f'{label!r} is a {family.type_string} group, not a pseudopotential '
                                             'family with recommended cutoffs'))
        return None
    missing = sorted(set(species) - set(family.elements))
    if missing:
        problems.append(config.problem(path, f'family {label!r} has no pseudopotential for {", ".join(missing)} '
                                             f'(it has {", ".join(sorted(family.elements)) or "none"})'))
        return None
    stringency = _stringency(config.dft.protocol)
    try:
        family.get_recommended_cutoffs(elements=tuple(species), stringency=stringency, unit='Ry')
    except ValueError as exception:
        problems.append(config.problem(path, f'family {label!r}: no recommended cutoffs at stringency '
                                             f'{stringency!r} (dft.protocol {config.dft.protocol}): {exception}'))
        return None
    return family


def _check_dft_overrides(config: CampaignConfig, code, problems: list[Problem]) -> None:
    """``mlcampaign.dft.label`` builds with ``dft.overrides`` on the first start structure (nothing stored)."""
    from aiida import orm

    from aiida_mlcampaign.workchains.dft_label import DftLabelWorkChain

    try:
        structure = orm.StructureData(ase=config.start_structures()[0])
        DftLabelWorkChain.get_builder_from_protocol(
            code, [structure], protocol=config.dft.protocol, pseudo_family=config.dft.pseudo_family,
            overrides={'dft': config.dft.overrides}, options=config.computers.dft.options())
    except Exception as exception:  # noqa: BLE001 - builders raise ValueError, AttributeError, KeyError...
        problems.append(config.problem('dft.overrides', f'mlcampaign.dft.label refuses them: '
                                                        f'{type(exception).__name__}: {exception}'))
