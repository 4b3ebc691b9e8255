package settings

import (
	"reflect"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
)

func TestChangedNamesEverySettingByItsYAMLName(t *testing.T) {
	a := config.Default()
	b := config.Default()
	if got := Changed(a, b); len(got) != 0 {
		t.Fatalf("identical: %v", got)
	}
	b.Log.Level = "debug"
	b.Delivery.RetryMin = 7 * time.Second
	b.LNS.Password = "secret"
	b.Storage.OutboxMaxRows++
	b.DefaultAppOverride = &config.DefaultApp{URL: "https://example.com"}
	want := []string{"default_app", "delivery.retry_min", "lns.password", "storage.outbox_max_rows"}
	if got := Changed(a, b, "log.level"); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if got := Changed(a, b); len(got) != 5 || got[3] != "log.level" {
		t.Fatalf("without except: %v", got)
	}
}
