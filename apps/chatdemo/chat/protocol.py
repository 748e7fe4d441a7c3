"""What a chat client may send: one JSON object per text frame, {"message": "<text>"}.

message_from_frame() returns the text of a valid frame and raises FrameError, whose text is
the reason sent back to the client, for anything else. It never lets another exception out,
whatever the frame holds.
"""

import json

MAX_MESSAGE_LENGTH = 4096
# Longest text frame that is parsed at all, in characters. A valid message needs at most
# about 12 characters of JSON per character of text (an escaped surrogate pair,
# "\ud83d\ude00"): 4096 * 12 = 49,152, plus the braces and the key.
MAX_FRAME_LENGTH = 65536


class FrameError(ValueError):
    """A frame the server refuses; str() is the reason for the client."""


def message_from_frame(text_data: str | None, bytes_data: bytes | None = None) -> str:
    if text_data is None:
        raise FrameError("binary frames are not supported, send JSON text")
    if len(text_data) > MAX_FRAME_LENGTH:
        raise FrameError(f"frame too large: at most {MAX_FRAME_LENGTH} characters")
    try:
        payload = json.loads(text_data)
    except RecursionError:
        raise FrameError("JSON nested too deeply") from None
    except ValueError:  # also a number with more digits than int() takes
        raise FrameError("malformed JSON") from None
    if not isinstance(payload, dict):
        raise FrameError("expected a JSON object")
    message = payload.get("message")
    if not isinstance(message, str):
        raise FrameError('expected a string "message"')
    if not 1 <= len(message) <= MAX_MESSAGE_LENGTH:
        raise FrameError(f"message must be 1 to {MAX_MESSAGE_LENGTH} characters")
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, sent as a JSON escape ("\ud800")
        raise FrameError("message is not valid Unicode (lone surrogate)") from None
    if "\x00" in message:  # PostgreSQL cannot store it in a text column
        raise FrameError("message must not contain NUL characters")
    return message
