"""Base class of connectors."""
from typing import Optional

from mmengine.model import BaseModule


class BaseConnector(BaseModule):
    """Transforms one record before a loss sees it.

    A connector is configured in a distiller by the record it reads
    (``input='student.feat'``) and, optionally, the record whose shape it
    should produce (``like='teacher.feat'``). A connector whose ``__init__``
    takes ``in_channels`` / ``out_channels`` gets them from those records'
    shapes in the distiller's dry run when the config leaves them out.
    Connectors are trained with the student and are not part of the
    exported student.
    """

    def __init__(self, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
