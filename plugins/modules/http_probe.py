#!/usr/bin/python
"""Ask a URL once, connecting to a given address but naming the URL's host."""

from __future__ import annotations

DOCUMENTATION = r"""
module: http_probe
short_description: One HTTP(S) request to a site by its name, at an address of your choice
description:
  - Sends one GET (or HEAD) to O(url). The TCP connection goes to O(connect_to) when given,
    while the request and the TLS handshake name the URL's host (Host header, SNI and the
    certificate check), so a site can be checked on its server before its name resolves there.
  - Reads only; never changes anything, so it runs in check mode too.
options:
  url:
    description: The URL, http:// or https://.
    type: str
    required: true
  connect_to:
    description: Address to connect to instead of the URL's host; the port stays the URL's.
    type: str
  ca_path:
    description:
      - PEM file of the certificates to trust instead of the system's; any certificate in it is
        a trust anchor (the site's own certificate or chain will do).
    type: path
  ca_data:
    description:
      - PEM text of the certificates to trust instead of the system's, for a check that must
        not write a file first; used with O(ca_path) the two are trusted together.
    type: str
  headers:
    description: More request headers.
    type: dict
    default: {}
  timeout:
    description: Seconds for the connection and the answer.
    type: float
    default: 10
  method:
    description: The request method.
    type: str
    default: GET
    choices: [GET, HEAD]
"""

RETURN = r"""
status:
  description: HTTP status, or -1 when no answer came.
  type: int
  returned: always
content:
  description: The body, decoded as UTF-8 (up to 64 KiB).
  type: str
  returned: always
json:
  description: The body parsed as JSON, when it is JSON.
  type: raw
  returned: when the body is JSON
error:
  description: Why no answer came.
  type: str
  returned: when status is -1
"""

import contextlib
import http.client
import json
import socket
import ssl
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule

MAX_BODY = 65536


class _Connection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int | None, connect_to: str | None, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._connect_to = connect_to

    def connect(self) -> None:
        self.sock = socket.create_connection(
            (self._connect_to or self.host, self.port), self.timeout
        )


class _TLSConnection(http.client.HTTPSConnection):
    def __init__(
        self,
        host: str,
        port: int | None,
        connect_to: str | None,
        timeout: float,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._connect_to = connect_to

    def connect(self) -> None:
        sock = socket.create_connection((self._connect_to or self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def probe(
    url: str,
    connect_to: str | None = None,
    ca_path: str | None = None,
    ca_data: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
    method: str = "GET",
) -> dict:
    """The answer of one request, as the module returns it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url: {url!r} is not an http:// or https:// URL")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        try:
            context = ssl.create_default_context(cafile=ca_path, cadata=ca_data or None)
        except ssl.SSLError as exc:
            raise ValueError(f"ca_data: no PEM certificate could be read ({exc})") from exc
        if ca_path or ca_data:
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        conn: http.client.HTTPConnection = _TLSConnection(
            parts.hostname, parts.port, connect_to, timeout, context
        )
    else:
        conn = _Connection(parts.hostname, parts.port, connect_to, timeout)
    try:
        conn.request(method, path, headers={"Host": parts.netloc, **(headers or {})})
        resp = conn.getresponse()
        content = resp.read(MAX_BODY).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        return {"status": -1, "content": "", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()
    result: dict = {"status": resp.status, "content": content}
    with contextlib.suppress(ValueError):
        result["json"] = json.loads(content)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "connect_to": {"type": "str"},
            "ca_path": {"type": "path"},
            "ca_data": {"type": "str"},
            "headers": {"type": "dict", "default": {}},
            "timeout": {"type": "float", "default": 10},
            "method": {"type": "str", "default": "GET", "choices": ["GET", "HEAD"]},
        },
        supports_check_mode=True,
    )
    try:
        result = probe(**module.params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
