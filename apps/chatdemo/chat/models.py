from django.db import models


class Message(models.Model):
    """One chat message, kept so that new clients get the room's recent history."""

    room = models.CharField(max_length=80)
    message = models.TextField()
    sent_at = models.CharField(max_length=32)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["room", "-id"])]
