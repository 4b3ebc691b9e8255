package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
)

// CheckFaults verifies what the sink saw besides the uplinks: it refused
// nothing by itself (a malformed body, a joined event inside a batch), every
// batch it received held 2…10 uplinks only, and — when the test injected no
// fault — no request failed at all (a refused batch resent row by row would
// otherwise pass every count). nil when all holds.
func (s *Sink) CheckFaults(faultsInjected bool) error {
	st := s.Stats()
	var errs []error
	if st.Refused != 0 {
		errs = append(errs, fmt.Errorf("refused %d requests: %+v", st.Refused, st))
	}
	if !faultsInjected && st.Failed != 0 {
		errs = append(errs, fmt.Errorf("%d failed requests although no fault was injected: %+v", st.Failed, st))
	}
	bad, first := 0, ""
	for i, b := range s.Batches() {
		ok := b.Err == "" && len(b.Elements) >= 2 && len(b.Elements) <= 10
		for _, e := range b.Elements {
			var up struct {
				DevEUI *string `json:"deveui"`
				FCnt   *uint32 `json:"fcnt"`
			}
			if json.Unmarshal(e, &up) != nil || up.DevEUI == nil || up.FCnt == nil {
				ok = false
			}
		}
		if !ok {
			if bad++; first == "" {
				first = fmt.Sprintf("batch %d (status %d, %q): %s", i, b.Status, b.Err, b.Elements)
			}
		}
	}
	if bad > 0 {
		errs = append(errs, fmt.Errorf("%d batches not 2…10 uplinks, first %s", bad, first))
	}
	return errors.Join(errs...)
}

// CheckOrder verifies that each of the fleet's devices' uplinks arrived in
// FCnt order without gaps (duplicates of already-delivered ones allowed when
// allowDuplicates, as after a crash). nil when all holds.
func (s *Sink) CheckOrder(f *Fleet, allowDuplicates bool) error {
	for _, d := range f.Devices() {
		got := s.Received(d.DevEUI)
		last := int64(-1)
		for _, fc := range got {
			if int64(fc) <= last {
				if !allowDuplicates {
					return fmt.Errorf("device %s: fcnt %d after %d", d.DevEUI, fc, last)
				}
				continue
			}
			if int64(fc) != last+1 {
				return fmt.Errorf("device %s: fcnt %d after %d (gap: order broken)", d.DevEUI, fc, last)
			}
			last = int64(fc)
		}
	}
	if st := s.Stats(); st.OutOfOrder != 0 {
		return fmt.Errorf("sink saw %d out-of-order uplinks", st.OutOfOrder)
	}
	return nil
}

// DefaultAppWith is DefaultApp(url) enabled with the given API version and
// EUI, extra fields replacing the defaults.
func DefaultAppWith(url, apiVersion, eui string, extra map[string]any) json.RawMessage {
	var m map[string]any
	if err := json.Unmarshal(DefaultApp(url), &m); err != nil {
		panic(err) // DefaultApp's own output
	}
	m["apiVersion"], m["eui"], m["enabled"] = apiVersion, eui, true
	maps.Copy(m, extra)
	return mustJSON(m)
}

// Appnet is one Lens appnet record of lora-query's appnet list.
func Appnet(eui, id, url string) json.RawMessage {
	return mustJSON(map[string]any{"eui": eui, "app_net_id": id, "app_net_uuid": "uuid-" + id, "url": url,
		"options": map[string]any{"server_cert": "", "client_cert": "", "apikey": "", "check_hostname": true}})
}
