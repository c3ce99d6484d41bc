package main

import (
	"crypto/rand"

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
)

// devConsole registers the console's app, its redirect URI and the test
// users with the double, and returns the console for the gateway at
// baseURL.
func devConsole(gs *graphsim.Server, js jetstream.JetStream, prefix, baseURL string, readOnly bool, history console.DeviceHistory, log *zerolog.Logger) (*console.Server, error) {
	secret := rand.Text()
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
