package sim

import (
	"context"
	"testing"
	"time"
)

func TestMQTTRemoteCountsAndSends(t *testing.T) {
	b, err := StartBroker("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	remote, err := NewMQTTRemote(ctx, b.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	p, err := NewPublisher(ctx, b.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	f := NewFleet(2, "16-ea-76-f6-ab-66-3d-80", "00-80-00-00-d0-00-01-ff", 1)
	time.Sleep(200 * time.Millisecond) // the remote's subscription
	for i := 0; i < 2; i++ {
		_, payload, _ := f.Uplink(i)
		d := f.Devices()[i]
		if err := p.Publish(ctx, "lorawan/"+d.AppEUI+"/"+d.DevEUI+"/up", payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Publish(ctx, "lorawan/gw/init", []byte(`{"gateways_euis":[]}`)); err != nil {
		t.Fatal(err)
	}
	if err := remote.Sink.Wait(ctx, f.Expected()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for remote.Sink.Stats().Inits != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := remote.Sink.Stats(); s.Unique != 2 || s.Inits != 1 {
		t.Fatalf("stats %+v", s)
	}
	// Its own downlink comes back through "#" but is not an uplink.
	if err := remote.Publish(ctx, "lorawan/x/00-11-00-11-00-11-00-11/down", []byte(`{"data":"AQ=="}`), false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if s := remote.Sink.Stats(); s.Unique != 2 {
		t.Fatalf("a downlink counted as an uplink: %+v", s)
	}
}
