package queue

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/wire"
)

func TestRequestsBucket(t *testing.T) {
	def := Setup{}.RequestsBucket()
	if def.Bucket != "recoverpasscode_requests" || def.TTL != 24*time.Hour || def.History != 1 || def.Replicas != 1 || def.Storage != jetstream.FileStorage {
		t.Fatalf("default requests bucket %+v", def)
	}
	c := Setup{Names: wire.Names{Prefix: "rp"}, Replicas: 3, RequestsTTL: time.Hour}.RequestsBucket()
	if c.Bucket != "rp_requests" || c.TTL != time.Hour || c.Replicas != 3 {
		t.Fatalf("requests bucket %+v", c)
	}
}
