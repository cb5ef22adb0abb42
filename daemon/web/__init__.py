"""The daemon's local page: what each camera sees, with what was read on it, and the evidence.

live.py     what the work loop hands over per camera (latest frame, readings, rejects); no drawing there
draw.py     the picture: boxes, texts, confidences, codes and the ROI on a scaled copy of a frame (pure)
state.py    the JSON the page polls, an allow-list of the service's snapshot (pure; nothing secret in it)
saved.py    the "save frame" button's PNGs, bounded
app.py      the Flask routes and the access check (token off loopback, Host check on it)
server.py   the app on web.host:web.port, served by daemon/http_server.py (as /metrics is)

Flask is imported only when the page is enabled and started.
"""
