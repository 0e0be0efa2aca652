"""Usage events on NATS JetStream: subjects, the USAGE stream and the publisher."""

from tokenrt_usage.events import new_event_id
from tokenrt_usage.publisher import Delivery, Publisher, default_outbox_path
from tokenrt_usage.stream import StreamSpec, ensure_streams
from tokenrt_usage.subjects import escape_token, unescape_token, usage_filter, usage_subject

__all__ = ["Delivery", "Publisher", "StreamSpec", "default_outbox_path", "ensure_streams",
           "escape_token", "new_event_id", "unescape_token", "usage_filter", "usage_subject"]
