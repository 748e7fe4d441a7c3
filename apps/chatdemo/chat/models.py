from django.db import models

# Messages a client receives on connect: the room's most recent ones.
HISTORY_LENGTH = 50


class Message(models.Model):
    """A chat message, stored before it is broadcast: what the sender sees acknowledged."""

    room = models.CharField(max_length=80)
    text = models.TextField()
    sent_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["room", "-id"], name="chat_message_room_recent"),
            # For the retention by age (chat.history.prune), across all rooms.
            models.Index(fields=["sent_at"], name="chat_message_sent_at"),
        ]

    def __str__(self):
        return f"#{self.room} {self.sent_at:%Y-%m-%d %H:%M:%S}: {self.text[:40]}"
