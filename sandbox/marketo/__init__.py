"""A local stand-in for Adobe Marketo Engage REST (Identity, Leads, Companies), per Adobe's REST
documentation (https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/rest-api).

``MarketoService().app`` is the ASGI app; ``MarketoAdmin`` (``sandbox.marketo.admin``) drives its
``/_sandbox/`` admin API over HTTP.
"""

from sandbox.marketo.service import MarketoService
from sandbox.marketo.settings import MarketoSettings

__all__ = ["MarketoService", "MarketoSettings"]
