// Package joins is join forwarding as app-connect runs it: the joinclient
// proxy started from the configuration and stopped in the shutdown order,
// every attempt recorded in the cache (never a key) and counted for /status
// and /metrics, the NetID the proxy uses (app-connect.yml's join.net_id or
// mPower's loraNetwork) and check-config's part for join forwarding.
//
// It is the adapter between joinclient, which must not know the cache, and
// the cache, which holds no business rule: joinclient declares the Recorder
// it calls, this package implements it over the small Store it declares
// (cache.DB). It knows nothing of uplink forwarding.
package joins
