// Package lnsbridge owns everything that talks to the gateway itself: the local
// MQTT broker where the embedded LoRaWAN network server publishes its events
// (subscribed at QoS 1 with a persistent session, each message acknowledged
// by the consumer), downlink and clear publishing, the mPower REST API,
// lora-query, and the mts-io sysfs identity.
//
// It knows nothing about remote applications: it hands typed events to its
// consumer and acknowledges each one only when the consumer says it is stored.
//
// The local broker client is its own MQTT 3.1.1 client (local.go, with the
// packet codec and the connection in mqttconn.go), not paho's: one reader
// goroutine per connection calls the consumer's handler inline for every
// PUBLISH, and a PUBACK is written by whoever acknowledges, on the connection
// the message came on. paho's path crossed four goroutines and built a token
// per message: under qemu-arm (the stand-in for the gateways' one 400 MHz
// core) a relay on paho and net/http took 2.41 CPU ms per uplink, the same
// relay with its own packet loop 2.20 (and 1.08 writing its HTTP requests
// itself too, forward/h1.go). Its connection acknowledges every TCP read at
// once (conn.go, internal/tcpopt): the
// consumer's acknowledgements may wait for a shared sync, and Mosquitto would
// otherwise hold its next message back for the kernel's delayed TCP
// acknowledgement.
package lnsbridge
