package joinclient_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/lorawan-gateway/app-connect/internal/jstest"
	jc "github.com/lorawan-gateway/app-connect/joinclient"
)

// An answer over the size limit is refused for its size, even when what fits
// in the limit would parse (a short answer padded with whitespace).
func TestAnswerOverTheLimitRefusedForItsSize(t *testing.T) {
	padded := []byte(`{"Result":{"ResultCode":"Success"},"PHYPayload":"20A33CF11372C2B08D68A6B41FF9127299"}` + strings.Repeat(" ", jc.MaxAnswerSize))
	_, peer := startStrict(t, jstest.StrictConfig{Body: padded})
	repo := testRepo(t, jc.RepositoryOptions{NSID: nsid}, jsSpec{name: "js", url: peer.URL, protocol: "BI1.1", prefixes: []string{"0011223300000000/32"}})
	c := jc.NewClient(repo.JoinServers[0], clientOpts())
	_, err := c.JoinReq(context.Background(), jc.EUI64(katJoinEUI), joinReq(t, katDevice, 1))
	if !errors.Is(err, jc.ErrMalformedAnswer) || !strings.Contains(err.Error(), "larger than") || jc.ResultOf(err) != "malformed_answer" {
		t.Fatalf("err = %v (recorded %s), want the answer refused for its size", err, jc.ResultOf(err))
	}
}
