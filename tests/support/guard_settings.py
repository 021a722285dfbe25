"""config.settings with django-q2's guard looping every 30 s, for a cluster's own scheduler.

django-q2's guard calls its scheduler once the seconds it counted in guard cycles
reach 30: on the default cycle of 0.5 s that is 30 s after start. With a cycle of
30 s it is the guard's first loop, right after "running.", and the guard's loop
runs at least once, so a cluster stopped after "running." has made one scheduler
pass. A worker started with DJANGO_SETTINGS_MODULE set to this module does that.
"""

from config.settings import *  # noqa: F403

Q_CLUSTER = {**Q_CLUSTER, "guard_cycle": 30}  # noqa: F405
