package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/recoverpasscode/recoverpasscode/internal/testsystem"
	"github.com/recoverpasscode/recoverpasscode/service"
	"github.com/recoverpasscode/recoverpasscode/wire"
)

// TestDevFollowSeesDone: under --dev, the job the banner suggests (the dev
// device by its serial number, followed) ends with a done confirmation
// within seconds, as a newcomer trying it expects.
func TestDevFollowSeesDone(t *testing.T) {
	c, _ := startDevStack(t)
	testsystem.RunWorker(t, c.Config, 15*time.Second)
	nc, err := nats.Connect(c.NATS.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	names := wire.Names{}
	sub, err := nc.SubscribeSync(names.Confirmation("cli", "dev-follow"))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(wire.Job{ID: "dev-follow", SerialNumber: service.DevSerial, Follow: true})
	m := nats.NewMsg(names.Jobs("cli"))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, "dev-follow")
	if !testsystem.Eventually(20*time.Second, func() bool {
		_, err := js.PublishMsg(t.Context(), m)
		return err == nil
	}) {
		t.Fatal("the dev worker set up no jobs stream")
	}
	msg, err := sub.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("no confirmation: %v", err)
	}
	var conf wire.Confirmation
	if err := json.Unmarshal(msg.Data, &conf); err != nil || conf.State != wire.StateDone || conf.ManagedDeviceID != service.DevDevice || conf.SerialNumber != service.DevSerial {
		t.Errorf("confirmation %s (%v); want done on %s", msg.Data, err, service.DevDevice)
	}
	if took := conf.ConfirmedAt.Sub(conf.CalledAt); took > 15*time.Second {
		t.Errorf("the dev device was confirmed %s after the call; want a few seconds", took)
	}
}
