"""What the job fork server loads once, so that every job forked from it starts warm.

Only the fork server of :mod:`service.jobs.isolation` imports this module. Besides the
pipeline's modules it reads highdicom's standard tables, which highdicom otherwise parses on
the first SEG of every job process (1.6 s of JSON on the 2-core test machine). Should a
highdicom release move them, the import fails and the fork server, which ignores failed
preloads, simply starts jobs cold.
"""

from __future__ import annotations

from highdicom._standard_utils import (
    get_iod_module_map,
    get_module_attribute_map,
    get_sop_class_iod_map,
)

import service.inference.session
import service.jobs.runner

#: The modules this preload brings in (named so the imports are used).
MODULES = (service.inference.session, service.jobs.runner)

for _table in (get_sop_class_iod_map, get_iod_module_map, get_module_attribute_map):
    _table()
