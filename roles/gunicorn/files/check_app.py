"""Check that the project can be served in a mode, before the service switches to it.

Run by the gunicorn role with the service's user, working directory and environment:
    python -c "$(cat check_app.py)" MODE MODULE:ATTRIBUTE
Prints one line saying what is wrong and exits 1, or prints "ok".
"""

import importlib
import inspect
import sys


def is_asgi(app: object) -> bool:
    call = app if inspect.isfunction(app) else type(app).__call__
    return inspect.iscoroutinefunction(call)


def check(mode: str, target: str) -> str | None:
    module_name, _, attribute = target.partition(":")
    attribute = attribute or "application"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        return f"importing {module_name} failed: {type(exc).__name__}: {exc}"
    app = getattr(module, attribute, None)
    if app is None:
        return f"{module_name} has no attribute {attribute!r}"
    if mode == "wsgi":
        if not callable(app) or is_asgi(app):
            return f"{target} is not a WSGI application"
        return None
    if not is_asgi(app):
        return f"{target} is not an ASGI application (no async __call__)"
    if mode != "channels":
        return None
    try:
        from channels.layers import get_channel_layer
        from channels.routing import ProtocolTypeRouter
    except ImportError:
        return "channels is not installed in the app's virtualenv (add it to the requirements)"
    mapping = getattr(app, "application_mapping", {}) if isinstance(app, ProtocolTypeRouter) else {}
    if "websocket" not in mapping:
        return f"{target} routes no websockets (a ProtocolTypeRouter with a 'websocket' key)"
    try:
        layer = get_channel_layer()
    except Exception as exc:
        return f"the channel layer cannot be set up: {type(exc).__name__}: {exc}"
    if layer is None:
        return "CHANNEL_LAYERS has no default layer"
    return None


def main() -> int:
    mode, target = sys.argv[1], sys.argv[2]
    problem = check(mode, target)
    print(problem or "ok")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
