"""Options shared by the command groups."""

import click


def _load_profile(ctx, param, value):
    if value:
        from aiida.manage.configuration import load_profile

        load_profile(value, allow_switch=True)
    return value


#: ``-p/--profile`` that loads the profile at once, like ``verdi -p``; without it the default profile is used.
PROFILE = click.option('-p', '--profile', 'profile_name', default=None, expose_value=False, callback=_load_profile,
                       is_eager=True, help='AiiDA profile (default: the default profile).')
