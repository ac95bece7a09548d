"""Curricula over image guidance; the implementations live in :mod:`discl.curricula`."""

from .curricula import *  # noqa: F401,F403
from .curricula import CURRICULA, create_curriculum, split_epochs  # noqa: F401
