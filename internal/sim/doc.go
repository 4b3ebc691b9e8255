// Package sim is a MultiTech Conduit in a process, for tests, benchmarks and the demo.
//
// It owns the peers app-connect talks to on a gateway and in the cloud:
//
//   - Fleet: simulated devices producing the LNS event stream (joined, up, moved) shaped like
//     the embedded network server's messages (conduit.md §1.2);
//   - Publisher: a paho MQTT client publishing those events with QoS 1, many in flight;
//   - Broker: an embedded MQTT broker (mochi-mqtt, pure Go) when no Mosquitto is at hand;
//   - MPower: the mPower REST API in its {"code","result","status"} envelope (conduit.md §3);
//   - WriteMtsIO: the mts-io identity files (conduit.md §4);
//   - Sink: the remote cloud HTTP API (conduit.md §6), recording and counting what it receives,
//     with fault injection.
//
// Everything is built by constructors and passed around; the package holds no mutable global
// state, so several simulated gateways can run in one test binary.
package sim
