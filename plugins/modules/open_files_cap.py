#!/usr/bin/python
"""The open-file limit a service may have on this host: what it wants, at most the host's."""

from __future__ import annotations

DOCUMENTATION = r"""
module: open_files_cap
short_description: Cap a service's open-file limit at the host's hard limit
description:
  - Reads the hard open-file limit of PID 1 (/proc/1/limits), which no service on the host may
    exceed (containers often cap it), and returns the smaller of it and O(wanted). Reads only.
options:
  wanted:
    type: int
    required: true
    description: The limit the service asks for.
"""

RETURN = r"""
value:
  description: O(wanted), or the host's hard limit when that is lower.
  type: int
  returned: always
host_limit:
  description: The hard limit of PID 1; null when unlimited.
  type: int
  returned: always
"""

import re

from ansible.module_utils.basic import AnsibleModule


def hard_limit(limits: str) -> int | None:
    """The hard 'Max open files' of a /proc/<pid>/limits text; None when unlimited."""
    match = re.search(r"^Max open files\s+\S+\s+(\S+)", limits, re.M)
    if not match:
        raise ValueError("no 'Max open files' line in /proc/1/limits")
    return None if match.group(1) == "unlimited" else int(match.group(1))


def main() -> None:
    module = AnsibleModule(
        argument_spec={"wanted": {"type": "int", "required": True}}, supports_check_mode=True
    )
    with open("/proc/1/limits") as limits:
        host = hard_limit(limits.read())
    wanted = module.params["wanted"]
    module.exit_json(
        changed=False, value=wanted if host is None else min(wanted, host), host_limit=host
    )


if __name__ == "__main__":
    main()
