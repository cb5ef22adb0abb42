"""Results out of the daemon: the JSON payload, the durable SQLite outbox, and the MQTT publisher.

Data goes one way: the pipeline builds a message (payload.py), writes it to the outbox (outbox.py) before
anything else, and the publisher (mqtt_client.py) deletes the row only after the broker's successful PUBACK.
Rows that can never be delivered move to the outbox's dead-letter table (outbox_cli.py lists and replays them).
Outputs are sinks (daemon/publish/sinks/: MQTT, OPC UA, Sparkplug B, Home Assistant); the outbox keeps one delivery
line per (sink, row), so each sink delivers its own rows and a dead one holds back no other.
Health for /healthz and the watchdog: Publisher.delivery_health() -> DeliveryHealth, or Outbox.health() ->
OutboxHealth when MQTT is off. paho-mqtt is imported by mqtt_client.py only, so importing this package stays cheap.
"""
