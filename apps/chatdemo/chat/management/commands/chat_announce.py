"""python manage.py chat_announce [--room ROOM] [--every SECONDS] [--count N]

Posts an announcement naming the serving release to a chat room at a fixed interval, until
stopped: the demo's use of the background services (django_app_background_services).
"""

import asyncio
import re

from django.core.management.base import BaseCommand, CommandError

from chat.announcer import run
from chat.routing import ROOM_NAME_PATTERN


class Command(BaseCommand):
    help = "Post an announcement naming the serving release to a chat room at a fixed interval."

    def add_arguments(self, parser):
        parser.add_argument("--room", default="announcements", help="default: announcements")
        parser.add_argument(
            "--every", type=float, default=60.0, help="seconds between announcements; default 60"
        )
        parser.add_argument(
            "--count", type=int, default=0, help="stop after this many; default 0, never"
        )

    def handle(self, *args, room, every, count, **options):
        if not re.fullmatch(ROOM_NAME_PATTERN, room):
            raise CommandError(f"--room {room!r}: 1 to 80 of letters, digits, _ . -")
        if every <= 0 or count < 0:
            raise CommandError("--every must be above 0 and --count 0 or more")
        self.stdout.write(f"announcing to room {room} every {every:g} s")
        self.stdout.flush()
        sent = asyncio.run(run(room, every, count))
        self.stdout.write(f"{sent} announcements sent")
