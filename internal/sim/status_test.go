package sim

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/statusreport"
)

// TestSinkCountsStatusReports: the HTTP and MQTT remote roles count status
// reports (never as uplinks) and keep the last one.
func TestSinkCountsStatusReports(t *testing.T) {
	s := NewSink("/tenant")
	srv := httptest.NewServer(s)
	defer srv.Close()
	uuid, body := GatewayStatus(1, time.Now(), 1)
	if _, err := statusreport.Decode(body); err != nil {
		t.Fatalf("the simulated report is invalid: %v", err)
	}
	resp, err := http.Post(srv.URL+"/tenant/api/v1/lorawan/ff-ff-ff-ff-ff-ff-ff-ff/"+uuid+"/status", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status POST answered %d", resp.StatusCode)
	}
	_, last := GatewayStatus(2, time.Now(), 2)
	for _, topic := range []string{
		"lorawan/" + uuid + "/status",
		"lorawan/ff-ff-ff-ff-ff-ff-ff-ff/00000000000040008000000000000001/status",
		"devices/gw-1/messages/events/type=status&$.ct=application%2Fjson&$.ce=utf-8",
	} {
		s.RecordMQTT(topic, last, true)
	}
	st := s.Stats()
	if st.Status != 4 || st.Uplinks != 0 || st.Failed != 0 {
		t.Fatalf("stats %+v, want 4 status reports and no uplink", st)
	}
	if !bytes.Equal(s.LastStatus(), last) {
		t.Fatal("last status report not kept")
	}
}
