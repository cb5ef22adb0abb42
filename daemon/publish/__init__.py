"""Results out of the daemon: the JSON payload, the durable SQLite outbox, and the MQTT publisher.

Data goes one way: the pipeline builds a message (payload.py), writes it to the outbox (outbox.py) before
anything else, and the publisher (mqtt_client.py) deletes the row only after the broker's successful PUBACK.
paho-mqtt is imported by mqtt_client.py only, so importing this package stays cheap.
"""
