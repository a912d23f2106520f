"""Regenerate the pslibrary 1.0.0 ultrasoft PBE pseudopotentials with ``ld1.x`` and install them in AiiDA.

The generation and transferability-test inputs ship with the package (``setup/ld1/``, see its README). For each
element this module

1. runs ``ld1.x`` on the generation input and checks that the UPF was written and that the output carries no
   ``Error in routine``/``Errors in ...``/warning/ghost messages,
2. runs the ``.test.in`` input (``iswitch=2``) and parses, for every test configuration, ld1.x's
   ``dEtot_ae``/``dEtot_ps ... Delta E`` lines; the largest |Delta E| (AE minus PS total-energy difference, Ry)
   must not exceed a threshold (default 5 mRy, :data:`DEFAULT_THRESHOLD_RY`),
3. parses the UPF header (``z_valence``, suggested cutoffs) and the md5 of the file.

Results are cached by content under :func:`default_cache_dir` (``$XDG_CACHE_HOME/aiida-mlcampaign/pseudos`` or
``~/.cache/aiida-mlcampaign/pseudos``)::

    <cache_dir>/ld1-versions.json                      ld1.x version per executable (path, size, mtime)
    <cache_dir>/elements/<El>-<variant>-<key>/         one generated PP: UPF, *.in, *.out, result.json
    <cache_dir>/sets/<key>/generation-report.json      test results of the set
    <cache_dir>/sets/<key>/upf/<original UPF names>    flat, exactly one UPF per element

An element key hashes the generation and test input contents and the ``ld1.x`` version string; a set key hashes
the element keys, the version string and the package's cutoff JSON. The UPFs sit in their own ``upf/`` folder and
the report next to it, because aiida-pseudo (``create_from_folder`` and ``aiida-pseudo install family``) rejects a
folder that holds anything but pseudopotential files.

Only :func:`install_pseudo_family` needs AiiDA; everything else is plain Python plus the ``ld1.x`` executable.

The pieces live in three modules: :mod:`aiida_mlcampaign.formats.ld1` (reading ld1.x output and UPF headers),
:mod:`aiida_mlcampaign.setup.pseudo_cache` (running ld1.x, the content-addressed cache) and this one (installing
the family in AiiDA), which also re-exports the other two so that ``setup.pseudos`` stays the one entry point.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from aiida_mlcampaign.setup.pseudo_cache import (  # noqa: F401 (re-exported)
    _VERSION_MEMO,
    CUTOFFS_FILENAME,
    DEFAULT_FAMILY_LABEL,
    DEFAULT_MAX_WORKERS,
    DEFAULT_STRINGENCY,
    DEFAULT_THRESHOLD_RY,
    DEFAULT_TIMEOUT_S,
    PREFERRED_VARIANT,
    REPORT_FILENAME,
    STRINGENCIES,
    Ld1Inputs,
    Ld1NotFoundError,
    PseudopotentialResult,
    PseudopotentialSet,
    UnsupportedElementError,
    available_elements,
    available_variants,
    build_pseudopotential_set,
    default_cache_dir,
    family_cutoffs,
    generate_pseudopotential,
    get_ld1_version,
    ld1_inputs_for,
    load_cutoffs,
)

from aiida_mlcampaign.formats.ld1 import (  # noqa: F401 (re-exported)
    Ld1RunError,
    PseudopotentialGenerationError,
    PseudopotentialTestError,
    TransferabilityTest,
    _check_output,
    _upf_fingerprint,
    parse_transferability,
    parse_upf_header,
)

__all__ = (
    'DEFAULT_FAMILY_LABEL',
    'DEFAULT_THRESHOLD_RY',
    'Ld1Inputs',
    'Ld1NotFoundError',
    'Ld1RunError',
    'PseudoFamilyConflictError',
    'PseudopotentialGenerationError',
    'PseudopotentialResult',
    'PseudopotentialSet',
    'PseudopotentialTestError',
    'UnsupportedElementError',
    'available_elements',
    'available_variants',
    'build_pseudopotential_set',
    'default_cache_dir',
    'family_cutoffs',
    'generate_pseudopotential',
    'get_ld1_version',
    'install_pseudo_family',
    'ld1_inputs_for',
    'load_cutoffs',
    'parse_transferability',
    'parse_upf_header',
)


class PseudoFamilyConflictError(ValueError):
    """A group with the requested label exists but holds other pseudopotentials."""


def install_pseudo_family(
    label: str = DEFAULT_FAMILY_LABEL,
    elements: Iterable[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    variants: Mapping[str, str] | None = None,
    ld1_executable: str | os.PathLike = 'ld1.x',
    threshold_ry: float = DEFAULT_THRESHOLD_RY,
):
    """Install the generated pseudopotentials as an aiida-pseudo ``pseudo.family.cutoffs`` family (idempotent).

    Requires a loaded AiiDA profile. If a group ``label`` exists and holds the same elements with the same files (md5,
    or the same content apart from ld1.x's generation-date stamp), it is returned unchanged, except that missing
    cutoff stringencies are added (existing ones are never overwritten, so cutoffs raised after a convergence test
    survive). Otherwise the family is created with ``CutoffsPseudoPotentialFamily.create_from_folder`` and gets the
    ``low``/``normal``/``high`` cutoffs of :func:`family_cutoffs` in Ry, ``normal`` being the default stringency.

    :param elements: default all of :func:`available_elements`, or the elements of the existing family ``label``;
        pass a subset for a smaller family (use another label: a label holds one set of elements).
    :raises PseudoFamilyConflictError: if ``label`` exists with other content or is not a cutoffs family.
    :return: the ``CutoffsPseudoPotentialFamily``.
    """
    from aiida import orm
    from aiida.common.exceptions import NotExistent
    from aiida.plugins import DataFactory, GroupFactory

    cutoffs_family_cls = GroupFactory('pseudo.family.cutoffs')
    upf_cls = DataFactory('pseudo.upf')

    try:
        family = orm.Group.collection.get(label=label)
    except NotExistent:
        family = None
    if family is not None and elements is None and isinstance(family, cutoffs_family_cls):
        # No elements asked for: the family as it is (a campaign made it with its own elements) is reused and
        # checked, rather than refused for lacking the elements of the full default set.
        elements = sorted(pseudo.element for pseudo in family.nodes)

    pseudo_set = build_pseudopotential_set(
        elements, cache_dir, variants=variants, ld1_executable=ld1_executable, threshold_ry=threshold_ry
    )
    stringencies = family_cutoffs(pseudo_set.cutoffs)

    if family is not None:
        if not isinstance(family, cutoffs_family_cls):
            raise PseudoFamilyConflictError(
                f'group {label!r} exists but is a {family.type_string!r}, not a pseudo.family.cutoffs family'
            )
        _check_same_content(family, pseudo_set, label)
        defined = family.get_cutoff_stringencies()
        for stringency in STRINGENCIES:
            if stringency not in defined:
                family.set_cutoffs(stringencies[stringency], stringency, unit='Ry')
        try:
            family.get_default_stringency()
        except ValueError:
            family.set_default_stringency(DEFAULT_STRINGENCY)
        return family

    variants_text = ', '.join(f'{el} {pseudo_set.pseudos[el].variant}' for el in pseudo_set.elements)
    description = (
        f'pslibrary 1.0.0 ultrasoft PBE pseudopotentials (A. Dal Corso, github.com/dalcorso/pslibrary), regenerated '
        f'with Quantum ESPRESSO ld1.x ({pseudo_set.ld1_version}) by aiida-mlcampaign from the pslibrary input '
        f'parameters and checked with the pslibrary transferability tests (max |dE(AE-PS)| '
        f'{max(r.max_delta_e_ry for r in pseudo_set.pseudos.values()) * 1000:.1f} mRy). Variants: {variants_text}. '
        f'Cutoffs in Ry: normal = pslibrary suggestion rounded up to 5 Ry, ecutrho 8x; '
        f'low = max(20, 0.6 x normal); high = normal + 10.'
    )
    family = cutoffs_family_cls.create_from_folder(
        pseudo_set.folder, label, description=description, pseudo_type=upf_cls
    )
    for stringency in (DEFAULT_STRINGENCY, *(s for s in STRINGENCIES if s != DEFAULT_STRINGENCY)):
        family.set_cutoffs(stringencies[stringency], stringency, unit='Ry')
    family.set_default_stringency(DEFAULT_STRINGENCY)
    family.base.extras.set('mlcampaign_generation', {
        'ld1_version': pseudo_set.ld1_version,
        'cache_key': pseudo_set.cache_key,
        'threshold_ry': threshold_ry,
        'elements': {
            element: {
                'variant': result.variant,
                'filename': result.filename,
                'md5': result.md5,
                'max_delta_e_ry': result.max_delta_e_ry,
                'suggested_ecutwfc_ry': result.suggested_ecutwfc_ry,
                'suggested_ecutrho_ry': result.suggested_ecutrho_ry,
            }
            for element, result in pseudo_set.pseudos.items()
        },
    })
    return family


def _check_same_content(family, pseudo_set: PseudopotentialSet, label: str) -> None:
    stored = {pseudo.element: pseudo for pseudo in family.nodes}
    if set(stored) != set(pseudo_set.pseudos):
        raise PseudoFamilyConflictError(
            f'family {label!r} exists with elements {", ".join(sorted(stored))}, not '
            f'{", ".join(pseudo_set.elements)}: choose another label'
        )
    differing = []
    for element, result in pseudo_set.pseudos.items():
        node = stored[element]
        if node.md5 == result.md5:
            continue
        if _upf_fingerprint(node.get_content(mode='rb')) != _upf_fingerprint(result.path.read_bytes()):
            differing.append(element)
    if differing:
        raise PseudoFamilyConflictError(
            f'family {label!r} exists but its pseudopotentials for {", ".join(sorted(differing))} differ from the '
            f'generated ones in {pseudo_set.folder}: choose another label'
        )
