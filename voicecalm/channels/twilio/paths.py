"""Where Twilio reaches this server: the webhook and websocket paths a number is pointed at."""

CHANNEL_NAME = "twilio_media_streams"
PREFIX = f"/webhooks/{CHANNEL_NAME}"
WEBHOOK_PATH = f"{PREFIX}/webhook"
WEBSOCKET_PATH = f"{PREFIX}/websocket"
AFTER_STREAM_PATH = f"{PREFIX}/after_stream"
HANDOFF_RESULT_PATH = f"{PREFIX}/handoff_result"
STATUS_PATH = f"{PREFIX}/status"
