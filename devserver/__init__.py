"""Docker-free local emulator of an AWS SAM stack (HTTP API, WebSocket API, Lambda, schedules).

Generic: it only knows SAM templates and AWS wire formats; product code is loaded solely
through the handlers and layers that the template names.
"""

from .server import Emulator, Handle, Options, start

__all__ = ["Emulator", "Handle", "Options", "start"]
