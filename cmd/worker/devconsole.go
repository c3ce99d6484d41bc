package main

import (
	"crypto/rand"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/recoverpasscode/recoverpasscode/console"
	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
	"github.com/recoverpasscode/recoverpasscode/service"
)

// The --dev console's app registration and test users in the Entra ID
// double: each signs in with one click on the double's sign-in page.
const (
	devConsoleApp      = "c0c0c0c0-0000-4000-8000-00000000c0de"
	devConsoleOperator = "operator@dev.recoverpasscode.test"
	devConsoleReader   = "reader@dev.recoverpasscode.test"
	// devLateDevice is a device Intune does not know at the first call
	// (enrolled moments ago): that call answers 404, so its first job fails
	// and is dead-lettered; replaying it with a new key (from the console,
	// or enqueue dlq replay --new-key) succeeds.
	devLateDevice = "2d6a3d0e-8f5c-4d7a-9b1e-0000000fa11e"
)

// devConsole registers the console's app, its redirect URI and the test
// users with the double, and returns the console for the gateway at
// baseURL.
func devConsole(gs *graphsim.Server, js jetstream.JetStream, prefix, baseURL string, readOnly bool, history console.DeviceHistory, log *zerolog.Logger) (*console.Server, error) {
	secret := rand.Text()
	gs.SetFaultFunc(firstCallNotFound(devLateDevice))
	gs.AddApp(devConsoleApp, secret)
	gs.AddRedirectURI(devConsoleApp, baseURL+console.CallbackPath)
	gs.AddUser(devConsoleOperator, "")
	gs.AssignUserAppRole(devConsoleOperator, devConsoleApp, console.RoleOperate)
	gs.AddUser(devConsoleReader, "")
	gs.AssignUserAppRole(devConsoleReader, devConsoleApp, console.RoleRead)
	return console.New(console.Config{
		JetStream:     js,
		Prefix:        prefix,
		TenantID:      service.DevTenant,
		ClientID:      devConsoleApp,
		ClientSecret:  secret,
		AuthorityHost: gs.AuthorityHost(),
		BaseURL:       baseURL,
		ReadOnly:      readOnly,
		HTTPClient:    gs.Client(),
		History:       history,
		Name:          "console (worker --dev)",
		Log:           log,
	})
}

// firstCallNotFound answers the first Graph call for device with 404
// ResourceNotFound, as Graph does for a device it does not know yet.
func firstCallNotFound(device string) func(graphsim.Call) *graphsim.Fault {
	var once sync.Once
	return func(c graphsim.Call) *graphsim.Fault {
		if !strings.EqualFold(c.DeviceID, device) {
			return nil
		}
		var f *graphsim.Fault
		once.Do(func() { f = &graphsim.Fault{Status: 404, Code: "ResourceNotFound"} })
		return f
	}
}
