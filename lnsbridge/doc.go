// Package lnsbridge owns everything that talks to the gateway itself: the local
// MQTT broker where the embedded LoRaWAN network server publishes its events
// (subscribed with manual acknowledgement), downlink and clear publishing, the
// mPower REST API, lora-query, and the mts-io sysfs identity.
//
// It knows nothing about remote applications: it hands typed events to its
// consumer and acknowledges each one only when the consumer says it is stored.
// Its connection to the local broker acknowledges every TCP read at once
// (conn.go): the consumer's acknowledgements may wait for a shared sync, and
// Mosquitto would otherwise hold its next message back for the kernel's
// delayed TCP acknowledgement.
package lnsbridge
