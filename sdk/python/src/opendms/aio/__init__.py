"""The asyncio API of the DMS client: :class:`Client` with the same methods
as :class:`opendms.Client` as coroutines, and the asyncio
:class:`Producer`, :class:`Consumer` and :class:`Subscription`.

Types, errors and enums are shared with the sync API: import them from
``opendms``.
"""

from opendms.aio._client import Client
from opendms.aio._consumer import Consumer
from opendms.aio._producer import Producer
from opendms.aio._subscription import Subscription

__all__ = ["Client", "Consumer", "Producer", "Subscription"]
